"""A recipe turns the scheduler's SIGTERM (or SIGUSR1) into the trainer's stop request (``recipes/common.sh``
``_launch_stoppable``), run as a user runs it: ``bash recipes/iu_xray_grpo.sh``. The trainer is replaced by a stand-in
that behaves as `verl_ext.trainer.resume` does (waits for its ``preemption.stop_file``, removes it, exits 1); the real
trainer's side is ``tests/integration/test_resume_cpu.py``."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

STAND_IN = f"""#!/bin/bash
# python for everything but verl's trainer, which is played by the loop below
if [[ "$1 $2" != "-m verl.trainer.main_ppo" ]]; then exec {sys.executable} "$@"; fi
for arg in "$@"; do [[ "$arg" == preemption.stop_file=* ]] && stop="${{arg#preemption.stop_file=}}"; done
[[ -n "${{EXIT_AT_ONCE:-}}" ]] && exit "$EXIT_AT_ONCE"
echo started > "$STARTED"
while [[ ! -e "$stop" ]]; do sleep 0.1; done
rm -f "$stop"
echo "RunStopped: stopped on request" >&2
exit 1
"""


@pytest.fixture
def recipe_env(tmp_path):
    python = tmp_path / "python"
    python.write_text(STAND_IN)
    python.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERL_USE_EXTERNAL", "VERL_EXT_"))}
    env.update(PYTHON=str(python), MODEL_PATH=str(tmp_path / "model"), DATA_DIR=str(tmp_path / "data"),
               CKPT_DIR=str(tmp_path / "ckpt"), STARTED=str(tmp_path / "started"), ATTN_IMPL="sdpa")
    return env


def _start(env: dict) -> subprocess.Popen:
    return subprocess.Popen(["bash", str(REPO / "recipes" / "iu_xray_grpo.sh")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_becomes_a_stop_request(recipe_env, signum):
    stop = Path(recipe_env["CKPT_DIR"]) / "editgrpo" / "iu_xray_grpo" / "STOP"
    stop.parent.mkdir(parents=True)
    stop.touch()  # left by an earlier run that was killed before it saw the request: removed at the start
    proc = _start(recipe_env)
    deadline = time.time() + 60
    while not Path(recipe_env["STARTED"]).exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.1)
    assert not stop.exists()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stop requested" in err and "run the same command again to resume" in err
    assert f"preemption.stop_file={stop}" in out  # the command line the recipe printed


def test_exit_status_of_a_run_without_a_stop_request(recipe_env):
    for status in (0, 3):
        proc = _start(dict(recipe_env, EXIT_AT_ONCE=str(status)))
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == status and "resume" not in err
