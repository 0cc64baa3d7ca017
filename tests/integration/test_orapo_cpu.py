"""OraPO end to end on verl's own trainer: ``python -m verl.trainer.main_ppo`` in the CPU debug profile
(``verl_ext.cpu``), one launch of two steps over one batch of two prompts (two epochs) and a validation, with the
recipes' OraPO settings (``recipes/orapo_settings.bash``): ``trainer.v1.trainer_mode=orapo``, the
``OraPOAgentLoopManagerTQ`` oracle worker, Dr. GRPO on the K rollouts, OraPO's actor loss installed by the trainer
through ``set_loss_fn`` into verl's FSDP engine workers, and verl's reference-policy worker for the LN-DPO term's
reference log-probs.

The reward (``_orapo_reward_fn.py``) fails every response to one prompt (``hard``: an all-zero group) and gives 1 to
every response to the other (``easy``), so every group's rewards are constant and Dr. GRPO's advantages are 0; the KL
coefficient and weight decay are 0. Only the DPO branch can then move the parameters, and the test asserts from the
run's own outputs (console, offline W&B, verl's rollout dump, the checkpoint exported by ``verl_ext.eval.export``)
that the hard prompt enters it at both steps, that after the first update the reference report is more likely under
the policy than under the reference policy, and that the parameters change.
"""
import dataclasses
import json
import math
import subprocess
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
K = 3  # sampled rollouts per prompt; the group is K + 1 with the oracle (reference report)
PROMPTS = 2
STEPS = 2
RESPONSE_LENGTH = 72  # the synthetic references are <= 68 tokens with the end-of-turn token: none is truncated


def _orapo_overrides(hard_index: int, out: Path) -> list[str]:
    """The OraPO recipe settings (recipes/orapo_settings.bash) and the test's reward and attribution settings."""
    return [
        "actor_rollout_ref.rollout.agent.agent_loop_manager_class="
        "verl_ext.rollout.oracle_worker.OraPOAgentLoopManagerTQ",
        "trainer.v1.trainer_mode=orapo",
        "editgrpo.scheme=none",
        "algorithm.adv_estimator=dr_grpo",
        "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm",
        "+orapo.negatives=zero_reward",
        f"trainer.validation_data_dir={out / 'val'}",
        "data.shuffle=False",
        f"trainer.total_epochs={STEPS}",
        "reward.reward_manager.name=naive",
        f"reward.custom_reward_function.path={HERE / '_orapo_reward_fn.py'}",
        "reward.custom_reward_function.name=compute_score",
        f"+reward.custom_reward_function.reward_kwargs.hard_index={hard_index}",
        # no gradient but the DPO term's: constant rewards per group (advantages 0), no KL, no weight decay
        "actor_rollout_ref.actor.use_kl_loss=True",
        "actor_rollout_ref.actor.kl_loss_coef=0",
        "actor_rollout_ref.actor.optim.weight_decay=0",
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import pandas as pd

    from verl_ext.testing.cpu_run import main_ppo_command, prepare_inputs, run_env

    out = tmp_path_factory.mktemp("orapo_cpu")
    inputs = prepare_inputs(out)
    # one batch of PROMPTS studies, seen at both steps (two epochs): step 2 revisits the hard prompt after the update
    rows = pd.read_parquet(inputs.train_files[0]).head(PROMPTS)
    rows.to_parquet(out / "train_batch.parquet")
    inputs = dataclasses.replace(inputs, train_files=[str(out / "train_batch.parquet")])
    indices = [int(e["index"]) for e in rows["extra_info"]]
    references = {int(e["index"]): r["ground_truth"] for e, r in zip(rows["extra_info"], rows["reward_model"])}
    hard = indices[0]
    env = run_env(out)
    env["PYTHONPATH"] = str(HERE.parents[1])
    cmd = main_ppo_command(inputs, out, steps=STEPS, prompts=PROMPTS, group=K + 1, response_length=RESPONSE_LENGTH,
                           save_freq=STEPS, test_freq=STEPS, experiment="orapo",
                           extra=tuple(_orapo_overrides(hard, out)))
    start = time.time()
    proc = subprocess.run(cmd, env=env, cwd=out, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    (out / "orapo.log").write_text(log)
    assert proc.returncode == 0, f"main_ppo failed after {time.time() - start:.0f} s:\n{log[-6000:]}"
    print(f"orapo main_ppo: {time.time() - start:.0f} s")
    metrics = {row["step"]: row["data"] for row in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    val_prompts = sum(len(pd.read_parquet(f)) for f in inputs.val_files)
    return {"out": out, "inputs": inputs, "log": log, "metrics": metrics, "hard": hard, "references": references,
            "val_prompts": val_prompts}


def test_groups_hold_k_rollouts_and_the_oracle(run):
    """verl's rollout dumps: per prompt K sampled rollouts + the reference report as session K, scored by the reward
    loop; the hard prompt's rollouts all score 0, the easy prompt's 1."""
    by_reference = {ref: index for index, ref in run["references"].items()}
    for step in range(1, STEPS + 1):
        groups = {}
        for row in map(json.loads, (run["out"] / "rollouts" / f"{step}.jsonl").read_text().splitlines()):
            uid, session, _ = row["uid"].rsplit("_", 2)
            groups.setdefault(uid, {})[int(session)] = row
        assert len(groups) == PROMPTS
        seen = []
        for sessions in groups.values():
            assert sorted(sessions) == list(range(K + 1))
            reference = sessions[K]["gts"]
            assert sessions[K]["output"].strip() == reference.strip()  # the oracle's response is the reference
            seen.append(by_reference[reference])
            is_hard = seen[-1] == run["hard"]
            assert [sessions[s]["score"] for s in range(K)] == [0.0 if is_hard else 1.0] * K
        assert sorted(seen) == sorted(run["references"])


def test_all_zero_group_enters_the_dpo_branch(run):
    for step in range(1, STEPS + 1):
        m = run["metrics"][step]
        assert m["orapo/prompts"] == PROMPTS
        assert m["orapo/all_zero_share"] == pytest.approx(1 / PROMPTS)  # the hard prompt
        assert m["orapo/zrr/mean"] == pytest.approx(1 / PROMPTS)
        assert m["orapo/z_ema/mean"] == pytest.approx(1 / PROMPTS)  # EMA of 1, 1 (hard) and 0, 0 (easy)
        assert m["orapo/dpo_share"] == pytest.approx(1 / PROMPTS)  # the easy prompt has no zero-reward rollout
        assert m["orapo/dpo/pairs"] == K  # (reference, rejected) pairs of the hard prompt
        # z_ema = 1, so w = w_max = 0.15 for the hard prompt; the easy prompt has no rejected response, hence no DPO
        # pair and w = 0 (verl_ext.algorithms.orapo.plan_prompt)
        assert m["orapo/w/mean_in_dpo"] == pytest.approx(0.15)
        assert m["orapo/w/mean"] == pytest.approx(0.15 / PROMPTS)
        assert m["orapo/oracle_truncated"] == 0
        assert m["orapo/rollout_reward/mean"] == pytest.approx(0.5)
        # verl's metrics are over the K rollouts only (the oracle rows are left out of them)
        assert m["critic/score/mean"] == pytest.approx(0.5)
        # the loss verl's actor ran is OraPO's: Dr. GRPO's term is 0 here, the DPO surrogate is not, with a gradient
        assert m["actor/pg_loss"] == pytest.approx(0.0, abs=1e-7)
        assert m["actor/orapo_dpo_surrogate"] != 0.0 and m["actor/grad_norm"] > 0
    first, second = run["metrics"][1], run["metrics"][STEPS]
    # validation (the recipes validate too) runs through the oracle worker as plain sampling, with no oracle rows
    assert any(k.startswith("val-") and k.endswith("/iu_xray/reward/mean@1") for k in second)
    assert not any(k.startswith("val-") for k in first)
    val = [json.loads(line) for line in (run["out"] / "val" / f"{STEPS}.jsonl").read_text().splitlines()]
    assert len(val) == run["val_prompts"]  # one sample per test prompt (val_kwargs.n = 1), no oracle trajectory
    # step 1: the policy is the reference, so every margin (from the old log-probs) is 0 and the LN-DPO loss ln 2
    assert first["orapo/dpo/margin/mean"] == pytest.approx(0.0, abs=1e-5)
    assert first["orapo/dpo/loss"] == pytest.approx(math.log(2), abs=1e-5)
    # ... and the actor's DPO surrogate is twice sum_i w_i L_DPO,i / prompts (each pair enters on both of its rows,
    # the partner frozen; verl_ext.algorithms.orapo): 2 * 0.15 * ln 2 / 2, through verl's global-batch normaliser,
    # which counts the oracle rows
    assert first["actor/orapo_dpo_surrogate"] == pytest.approx(2 * 0.15 * math.log(2) / PROMPTS, rel=1e-3)
    assert first["orapo/dpo/chosen_log_ratio/mean"] == pytest.approx(0.0, abs=1e-5)
    # step 2: after one DPO update the reference report is more likely under the policy than under the reference
    # policy (the step-2 rejected responses are fresh samples of the updated policy, so the margin is reported, not
    # asserted)
    assert second["orapo/dpo/chosen_log_ratio/mean"] > 0
    # the console lines and the offline W&B run carry the orapo/* metrics
    console = [line for line in run["log"].splitlines() if " step:" in line or line.startswith("step:")]
    assert len(console) == STEPS
    for key in ("orapo/zrr/mean", "orapo/w/mean", "orapo/dpo_share", "orapo/dpo/margin/mean", "orapo/dpo/accuracy"):
        assert all(f"{key}:" in line for line in console), key
    wandb_runs = sorted((run["out"] / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1
    record = next(wandb_runs[0].glob("run-*.wandb")).read_bytes()
    for key in (b"orapo/zrr/mean", b"orapo/w/mean", b"orapo/dpo_share", b"orapo/dpo/margin/mean",
                b"orapo/dpo/accuracy", b"actor/orapo_dpo_surrogate"):
        assert key in record, key


def test_dpo_branch_changes_the_parameters_and_the_ema_is_checkpointed(run, tmp_path):
    from safetensors.torch import load_file

    from verl_ext.eval.export import export_checkpoint
    from verl_ext.trainer.orapo_trainer import EMA_FILE

    step = run["out"] / "checkpoints" / f"global_step_{STEPS}"
    ema = dict(json.loads((step / EMA_FILE).read_text())["values"])
    assert {int(k): v for k, v in ema.items()} == {i: float(i == run["hard"]) for i in run["references"]}
    exported = export_checkpoint(step, tmp_path / "hf", base_model=run["inputs"].model)
    assert exported["global_step"] == STEPS
    trained = load_file(str(tmp_path / "hf" / "model.safetensors"))
    initial = load_file(str(run["inputs"].model / "model.safetensors"))
    changed = [k for k in trained if k in initial and not torch.equal(trained[k].float(), initial[k].float())]
    assert len(changed) > len(trained) // 2, f"only {len(changed)}/{len(trained)} tensors changed"
