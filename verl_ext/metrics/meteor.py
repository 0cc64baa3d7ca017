"""METEOR 1.5 as the R2Gen line of work computes it: pycocoevalcap's ``Meteor`` (the Java jar it bundles), with the
Java process's lifetime and a time limit managed here.

Why a shim (each point is tested in ``tests/metrics/test_meteor.py``):

* pycocoevalcap 1.2 starts ``java -jar meteor-1.5.jar`` in ``Meteor()`` and stops it only in ``__del__``, so the JVM
  (about 1.5 GB resident with the paraphrase table) lives until garbage collection; here it is stopped when the
  score is read;
* a missing ``java`` surfaces as a bare ``FileNotFoundError: 'java'``; here it is a ``RuntimeError`` saying METEOR
  needs a Java runtime;
* the wrapper reads the jar's answers with blocking ``readline`` and no time limit, and after an error its lock
  stays held, so its ``__del__`` would block forever; here a timer kills the JVM after ``timeout_s`` (the read
  then ends), the lock is released and the error names the setting.

The scores are the jar's own: no formula is re-implemented.
"""
from __future__ import annotations

import shutil
import subprocess
import threading
from typing import Mapping

DEFAULT_TIMEOUT_S = 600.0
"""Wall-clock limit of one corpus scoring: 3,900 synthetic reports of 30-70 words (MIMIC-CXR's test split size) took
17 s on 2 shared CPU cores, JVM start included."""


def require_java() -> str:
    """The ``java`` that pycocoevalcap will run (it calls ``java`` from PATH); ``RuntimeError`` when there is none."""
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("METEOR (pycocoevalcap's meteor-1.5.jar) needs a Java runtime: no `java` on PATH. "
                           "Install one (e.g. apt-get install openjdk-17-jre-headless)")
    return java


def meteor_scores(gts: Mapping, res: Mapping, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[float, list[float]]:
    """Corpus METEOR and the per-segment scores, pycocoevalcap's ``Meteor().compute_score(gts, res)``.

    ``gts``: id -> list of reference strings; ``res``: id -> [hypothesis string] (the COCO layout). Texts must be
    single lines (the jar reads one segment per line).
    """
    if not gts:
        raise ValueError("METEOR of an empty corpus is undefined")
    if any("\n" in t or "\r" in t for texts in (*gts.values(), *res.values()) for t in texts):
        raise ValueError("METEOR texts must be single lines (the jar reads one segment per line)")
    require_java()
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()
    proc = scorer.meteor_p
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout_s, kill)
    timer.daemon = True
    timer.start()
    try:
        score, per_segment = scorer.compute_score(dict(gts), dict(res))
    except (ValueError, OSError) as exc:  # an empty read (the JVM died or was killed) or a closed pipe
        if expired.is_set():
            raise TimeoutError(f"METEOR did not finish within timeout_s={timeout_s:g} s; the Java process was "
                               "stopped") from exc
        proc.kill()
        proc.wait()
        err = proc.stderr.read().decode(errors="replace").strip()[-2000:]
        raise RuntimeError(f"METEOR's Java process failed (exit {proc.returncode}): {err or exc}") from exc
    finally:
        timer.cancel()
        if scorer.lock.locked():
            scorer.lock.release()
        _stop(proc)
    return float(score), [float(s) for s in per_segment]


def _stop(proc: subprocess.Popen) -> None:
    """End the JVM now (closing stdin ends the jar's -stdio loop) instead of at garbage collection."""
    try:
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        stream.close()

