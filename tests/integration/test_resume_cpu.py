"""A run killed at any moment resumes and loses nothing: verl's own trainer (``python -m verl.trainer.main_ppo``, CPU
profile, tiny Qwen2.5-VL policy, the OraPO trainer with its per-prompt EMA) launched three times with the same command
into the same directories (`verl_ext.trainer.resume`):

1. SIGKILL while the checkpoint of step 4 is being written (the actor's files are written, ``data.pt`` and the tracker
   are not; ``_fault_hook.py`` holds the trainer there). The checkpoint of step 2 was written by the same launch, so
   verl's own retention (``max_actor_ckpt_to_keep=1``, the project's setting) has already deleted its actor folder
   without the fix, and the tracker still names step 2: resuming then fails.
2. The same command resumes from step 2 (removing the incomplete step-4 folder, with a line saying so), writes the
   checkpoint of step 4 and is killed with SIGKILL during step 5 (after rollouts, rewards and the EMA update, before
   the actor update).
3. The same command resumes from step 4; during step 5 a stop is requested (the file the recipes create on SIGTERM):
   step 5 finishes, its checkpoint is written although ``save_freq`` does not call for one, and the run exits non-zero
   saying how to resume.

The known answers: prompts are read in file order (``data.shuffle=False``; the shuffled order's restore is
``test_shuffled_order_resumes_exactly``), so step k trains rows 2(k-1) mod 6 and the next one; the reward fails every
response to one prompt and passes every other (``_orapo_reward_fn.py``), so OraPO's EMA table after each step follows
from the prompt order alone (a run whose EMA were lost or replayed would hold other values). Rollouts are sampled, and
a resumed rollout server draws other samples than the uninterrupted one would, so responses and losses are not
compared; everything asserted is deterministic. Every assertion reads what the runs wrote.
"""
import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
K = 3  # rollouts per prompt (+ the oracle row)
PROMPTS = 2
ROWS = 6  # training rows: 3 steps per epoch
STEPS = 6
SAVE_FREQ = 2
ALPHA = 0.5  # OraPO's EMA coefficient (default), with ema_init=zero: the hard prompt's value counts its visits


def _session(sid: int) -> list[int]:
    """Processes of session `sid`: the run's driver was started in a session of its own, and Ray's processes and
    workers inherit it (they are children of the driver or of its raylet)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == sid:  # fields after the command: state, ppid, pgrp, session
                pids.append(int(entry.name))
    return pids


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the run: the driver and every process it started (Ray's, the workers)."""
    for _ in range(10):
        pids = _session(proc.pid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    proc.wait(timeout=60)


class Launcher:
    def __init__(self, out: Path, cmd: list[str], env: dict):
        self.out, self.cmd, self.env, self.logs = out, cmd, env, {}

    def run(self, name: str, fault: str, on_marker=None, timeout: int = 900) -> subprocess.Popen:
        """Launch the command; when the fault point is reached, call `on_marker(proc)` (default: SIGKILL)."""
        marker = self.out / f"fault_{name}"
        env = dict(self.env, VERL_EXT_TEST_FAULT=fault, VERL_EXT_TEST_FAULT_MARKER=str(marker))
        log_path = self.out / f"{name}.log"
        start = time.time()
        with open(log_path, "w") as log:
            proc = subprocess.Popen(self.cmd, env=env, cwd=self.out, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                while not marker.exists():
                    if proc.poll() is not None:
                        break
                    assert time.time() - start < timeout, f"{name}: fault point {fault} not reached"
                    time.sleep(0.2)
                if marker.exists():
                    (on_marker or _kill)(proc)
                proc.wait(timeout=max(60, timeout - (time.time() - start)))
            finally:
                if proc.poll() is None:
                    _kill(proc)
        self.logs[name] = log_path.read_text()
        print(f"{name}: {time.time() - start:.0f} s, exit {proc.returncode}, fault reached: {marker.exists()}")
        return proc


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _ema(folder: Path) -> dict[int, float]:
    return {int(k): v for k, v in json.loads((folder / "orapo_ema.json").read_text())["values"]}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    import pandas as pd

    from verl_ext.testing.cpu_run import main_ppo_command, prepare_inputs, run_env

    out = tmp_path_factory.mktemp("resume_cpu")
    inputs = prepare_inputs(out)
    rows = pd.read_parquet(inputs.train_files[0]).head(ROWS)
    assert len(rows) == ROWS
    rows.to_parquet(out / "train.parquet")
    inputs = dataclasses.replace(inputs, train_files=[str(out / "train.parquet")])
    order = [int(e["index"]) for e in rows["extra_info"]]
    references = {r["ground_truth"]: int(e["index"]) for e, r in zip(rows["extra_info"], rows["reward_model"])}
    hard = order[0]
    extra = (
        "actor_rollout_ref.rollout.agent.agent_loop_manager_class="
        "verl_ext.rollout.oracle_worker.OraPOAgentLoopManagerTQ",
        "trainer.v1.trainer_mode=orapo", "editgrpo.scheme=none", "algorithm.adv_estimator=dr_grpo",
        "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm", "+orapo.negatives=zero_reward",
        "+orapo.ema_init=zero", f"+orapo.alpha={ALPHA}",
        "data.shuffle=False", f"trainer.total_epochs={STEPS * PROMPTS // ROWS}",
        "reward.reward_manager.name=naive", f"reward.custom_reward_function.path={HERE / '_orapo_reward_fn.py'}",
        "reward.custom_reward_function.name=compute_score",
        f"+reward.custom_reward_function.reward_kwargs.hard_index={hard}",
    )
    cmd = main_ppo_command(inputs, out, steps=STEPS, prompts=PROMPTS, group=K + 1, response_length=24,
                           save_freq=SAVE_FREQ, test_freq=-1, experiment="resume", extra=extra)
    env = run_env(out)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parents[1]), str(HERE)])
    env["VERL_USE_EXTERNAL_MODULES"] = "_fault_hook"
    launcher = Launcher(out, cmd, env)
    ckpt = out / "checkpoints"
    states = {}

    first = launcher.run("first", "checkpoint:4")
    states["first"] = {p.name: sorted(q.name for q in p.iterdir()) for p in ckpt.iterdir() if p.is_dir()}
    states["first_tracker"] = (ckpt / "latest_checkpointed_iteration.txt").read_text().strip()
    second = launcher.run("second", "step:5")

    def request_stop(proc):
        (ckpt / "STOP").touch()  # what the recipes do on SIGTERM
        (out / "fault_third.go").touch()

    third = launcher.run("third", "pause:5", on_marker=request_stop)
    return {"out": out, "launcher": launcher, "procs": (first, second, third), "states": states, "order": order,
            "references": references, "hard": hard}


def _expected_prompts(order: list[int], step: int) -> set[int]:
    start = (step - 1) * PROMPTS % ROWS
    return set(order[start:start + PROMPTS])


def _expected_ema(order: list[int], hard: int, step: int) -> dict[int, float]:
    from verl_ext.algorithms.orapo import ZeroRewardEMA

    ema = ZeroRewardEMA(ALPHA, "zero")
    for s in range(1, step + 1):
        for index in sorted(_expected_prompts(order, s)):
            ema.update(index, 1.0 if index == hard else 0.0)
    return ema.state_dict()["values"]


def test_kill_while_a_checkpoint_is_written_falls_back_to_the_last_complete_one(chain):
    from verl_ext.trainer.resume import COMMIT_FILE

    first, second, _ = chain["procs"]
    assert first.returncode == -signal.SIGKILL
    state = chain["states"]["first"]
    # killed inside the step-4 checkpoint: its actor files are there, data.pt and the commit file are not
    assert "actor" in state["global_step_4"] and "data.pt" not in state["global_step_4"]
    assert COMMIT_FILE not in state["global_step_4"]
    # the step-2 checkpoint of the same launch is whole: verl's retention did not delete its actor folder
    assert {"actor", "data.pt", "orapo_ema.json", COMMIT_FILE} <= set(state["global_step_2"])
    assert chain["states"]["first_tracker"] == "2"
    log = chain["launcher"].logs["second"]
    assert "removing incomplete checkpoint global_step_4" in log
    assert f"Resuming from {chain['out'] / 'checkpoints' / 'global_step_2'}" in log


def test_kill_during_a_step_resumes_at_that_step(chain):
    _, second, third = chain["procs"]
    assert second.returncode == -signal.SIGKILL
    log = chain["launcher"].logs["third"]
    assert f"Resuming from {chain['out'] / 'checkpoints' / 'global_step_4'}" in log
    assert "continuing W&B run" in log


def test_stop_request_checkpoints_the_step_and_exits_non_zero(chain):
    _, _, third = chain["procs"]
    ckpt = chain["out"] / "checkpoints"
    log = chain["launcher"].logs["third"]
    assert third.returncode != 0
    assert "stopped on request" in log and "Resume: run the same command again" in log
    assert "checkpoint global_step_5 is complete" in log  # save_freq=2 alone would not have saved step 5
    assert not (ckpt / "STOP").exists()
    # verl's tracker and the retention (max_actor_ckpt_to_keep=1): only the last checkpoint is left
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "5"
    assert sorted(p.name for p in ckpt.iterdir() if p.is_dir()) == ["global_step_5"]


def test_each_step_once_with_the_uninterrupted_prompts_and_ema(chain):
    out, order, hard = chain["out"], chain["order"], chain["hard"]
    done = 5  # steps finished over the three launches
    # metrics.jsonl (verl's file logger, shared by the launches): each step once, in order
    rows = _jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, done + 1))
    for row in rows:
        step, m = row["step"], row["data"]
        assert m["training/global_step"] == step
        expected = _expected_ema(order, hard, step)
        prompts = _expected_prompts(order, step)
        assert m["orapo/z_ema/mean"] == pytest.approx(sum(expected[i] for i in prompts) / PROMPTS)
        assert m["orapo/zrr/mean"] == pytest.approx(sum(i == hard for i in prompts) / PROMPTS)
    # rollout dumps and edit records: one file per step, each with the step's prompts
    rollouts = out / "rollouts"
    assert sorted(p.name for p in rollouts.iterdir()) == sorted(
        [f"{s}.jsonl" for s in range(1, done + 1)] + [f"edits_{s}.jsonl" for s in range(1, done + 1)])
    for step in range(1, done + 1):
        dump = _jsonl(rollouts / f"{step}.jsonl")
        assert len(dump) == PROMPTS * (K + 1) and {r["step"] for r in dump} == {step}
        assert {chain["references"][r["gts"]] for r in dump} == _expected_prompts(order, step)
        assert len(_jsonl(rollouts / f"edits_{step}.jsonl")) == PROMPTS * (K + 1)
    # the EMA table the last checkpoint holds is the uninterrupted run's
    # (the hard prompt, seen at steps 1 and 4: 0.5 then 0.75; an EMA lost on resume would hold 0.5)
    assert _ema(out / "checkpoints" / f"global_step_{done}") == pytest.approx(_expected_ema(order, hard, done))
    assert _expected_ema(order, hard, done)[hard] == pytest.approx(0.75)


def test_wandb_run_continues_under_one_id(chain):
    out = chain["out"]
    run_id = (out / "checkpoints" / "wandb_run_id").read_text().strip()
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 3 and all(r.name.endswith(f"-{run_id}") for r in runs), runs
