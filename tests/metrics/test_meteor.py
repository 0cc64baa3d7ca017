"""pycocoevalcap's Java METEOR 1.5 through verl_ext.metrics.meteor: known answers, and the reasons the shim exists
(the JVM is stopped when the score is read, a missing Java or a hung JVM gives a clear error, never a hang)."""
import gc
import os
import stat
import subprocess
import threading

import pytest

from verl_ext.metrics.meteor import meteor_scores


@pytest.fixture()
def popens(monkeypatch):
    """Every process pycocoevalcap starts, to check none outlives the call."""
    started = []
    real = subprocess.Popen

    class Recording(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    return started


def _meteor_15(p: float, r: float, chunks: int, matches: float) -> float:
    """METEOR 1.5's score (Denkowski & Lavie 2014, Sec. 2.3) with its English defaults alpha 0.85, beta 0.2,
    gamma 0.6: Fmean = P R / (alpha P + (1 - alpha) R), Pen = gamma (chunks / matches)^beta."""
    fmean = p * r / (0.85 * p + 0.15 * r)
    return fmean * (1 - 0.6 * (chunks / matches) ** 0.2)


def test_known_answers_and_the_jvm_is_stopped(popens):
    gts = {0: ["the heart size is normal and the lungs are clear"], 1: ["the cat sat on a mat"], 2: ["a b c"],
           3: ["small left pleural effusion"]}
    res = {0: ["the heart size is normal and the lungs are clear"], 1: ["the cat sat on the mat"], 2: ["x y z"],
           3: [""]}
    corpus, per = meteor_scores(gts, res)
    assert per[0] == pytest.approx(1.0)  # identical texts: METEOR 1.5 scores an exact match as 1
    # Handworked: 5 exact matches (the cat sat on | mat) in 2 chunks; "the", "on", "a" are function words
    # (weight 1 - delta = 0.25, content words delta = 0.75), so P = R = (3 * 0.75 + 2 * 0.25) / (3 * 0.75 + 3 * 0.25)
    assert per[1] == pytest.approx(_meteor_15(2.75 / 3, 2.75 / 3, chunks=2, matches=5), abs=1e-6)
    assert per[2] == 0.0 and per[3] == 0.0  # nothing in common; empty hypothesis
    assert 0 < corpus < 1  # the jar aggregates the segments' statistics (not the mean of their scores)
    assert len(popens) == 1 and popens[0].returncode is not None  # the JVM ended with the call


def test_missing_java_is_a_clear_error(monkeypatch, tmp_path, popens):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="needs a Java runtime"):
        meteor_scores({0: ["a b"]}, {0: ["a b"]})
    assert not popens


def test_a_hung_jvm_is_stopped_at_the_timeout(monkeypatch, tmp_path, popens):
    fake = tmp_path / "java"  # a `java` that never answers
    fake.write_text("#!/bin/sh\nexec sleep 120\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(TimeoutError, match="timeout_s=1"):
        meteor_scores({0: ["a b"]}, {0: ["a b"]}, timeout_s=1)
    assert len(popens) == 1 and popens[0].returncode is not None
    # pycocoevalcap's __del__ takes the wrapper's lock: it must have been released, or collection would block
    collector = threading.Thread(target=gc.collect, daemon=True)
    collector.start()
    collector.join(10)
    assert not collector.is_alive()


def test_a_jvm_that_dies_is_reported(monkeypatch, tmp_path):
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'Error: Unable to access jarfile' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(RuntimeError, match="Unable to access jarfile"):
        meteor_scores({0: ["a b"]}, {0: ["a b"]}, timeout_s=30)


def test_bad_input():
    with pytest.raises(ValueError, match="single lines"):
        meteor_scores({0: ["a\nb"]}, {0: ["a b"]})
    with pytest.raises(ValueError, match="empty corpus"):
        meteor_scores({}, {})
