"""Launches of verl's trainer shared between test modules (each costs ~90 s of start-up on 2 cores).

``editgrpo_runs``: the EditGRPO recipe on the CPU profile (``verl_ext.testing.cpu_run``), two steps with a validation
and a checkpoint, then a second launch that resumes from that checkpoint for a third step. The resumed step also
switches on DEER's token channel (``ditpo.weighting=gradient``, CheXbert saliency computed in the ``radiology``
reward) and the LUFFY-shaped inserted-token loss, so one launch serves ``test_main_ppo_cpu.py`` (resume, export) and
``test_token_channel_cpu.py`` (step 3's records and metrics); verl reads the algorithm's settings from the command
line, not from the checkpoint.
"""
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

G = 4
PROMPTS = 2
STEPS = 2
#: LUFFY's shaping coefficient for the inserted tokens in the resumed step (test_token_channel_cpu.py).
GAMMA = 0.1
TOKEN_CHANNEL = ("ditpo.weighting=gradient", "ditpo.beta=1.0", f"inserted_tokens.gamma={GAMMA}",
                 "actor_rollout_ref.actor.policy_loss.loss_mode=inserted_luffy")


def _launch(cmd: list[str], out: Path, env: dict, name: str, timeout: int = 900) -> str:
    """Run verl's trainer; its file logger writes ``out/<name>.jsonl``, its console ``out/<name>.log``."""
    env = dict(env, VERL_FILE_LOGGER_PATH=str(out / f"{name}.jsonl"))
    start = time.time()
    proc = subprocess.run(cmd, env=env, cwd=out, capture_output=True, text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    (out / f"{name}.log").write_text(log)
    assert proc.returncode == 0, f"{name} failed after {time.time() - start:.0f} s:\n{log[-6000:]}"
    print(f"{name}: {time.time() - start:.0f} s")
    return log


@pytest.fixture(scope="session")
def launch():
    return _launch


@dataclass(frozen=True)
class EditGRPORuns:
    out: Path
    inputs: object  # verl_ext.testing.cpu_run.RunInputs
    first: str  # console of the first launch (steps 1-STEPS)
    resumed: str  # console of the resumed launch (step STEPS + 1, with TOKEN_CHANNEL)


@pytest.fixture(scope="session")
def editgrpo_runs(tmp_path_factory) -> EditGRPORuns:
    from verl_ext.testing.cpu_run import main_ppo_command, prepare_inputs, run_env

    out = tmp_path_factory.mktemp("main_ppo_cpu")
    inputs = prepare_inputs(out)
    env = run_env(out)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    first = _launch(main_ppo_command(inputs, out, steps=STEPS, prompts=PROMPTS, group=G, save_freq=STEPS,
                                     test_freq=STEPS, experiment="run"), out, env, "first")
    # two checkpoints kept: the step-STEPS one is exported after the resumed run wrote its own
    resumed = _launch(main_ppo_command(inputs, out, steps=STEPS + 1, prompts=PROMPTS, group=G, save_freq=STEPS + 1,
                                       test_freq=-1, experiment="run",
                                       extra=("trainer.max_actor_ckpt_to_keep=2", *TOKEN_CHANNEL)),
                      out, env, "resumed")
    return EditGRPORuns(out, inputs, first, resumed)
