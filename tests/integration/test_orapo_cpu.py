"""End-to-end on CPU: one OraPO step through verl's V1 rollout path, verl's advantage step and OraPO's actor loss.

Real pieces (as in test_edit_rollout_cpu.py): local Ray, TransferQueue, verl's RLHFDataset on a multimodal parquet,
``OraPOAgentLoopManagerTQ`` loaded the way ``TaskRunnerV1`` loads it, verl's SingleTurnAgentLoop and LLM client in
front of ``HFGenerationServer`` (the tiny Qwen2.5-VL generating), verl's RewardLoopManager with a custom reward,
verl's ReplayBuffer; then the ``orapo`` trainer's own ``on_init_end`` and ``_compute_advantage`` (which run verl's
``PPOTrainer._compute_advantage`` on the rollouts), and the loss it installs, on the HF forward with verl's
multimodal inputs and 4-row position ids. Not verl's: the actor (FSDP cannot run on CPU), the rollout server.

The ``hard`` prompt's rollouts all score 0: Dr. GRPO gives them no gradient, so any change of the parameters from
that group alone comes from the DPO branch (the KL gradient is 0 while the policy equals the reference).
"""
import io
import os
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
K = 3  # sampled rollouts per prompt
N = K + 1  # + the oracle trajectory
RESPONSE_LENGTH = 40
ROWS = [
    ("easy", "The lungs are clear. No pleural effusion."),
    ("hard", "Small left pleural effusion. Heart size is normal."),
]


def _png(seed: int, size=(64, 56)) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((*size, 3)) * 255).astype("uint8")).save(buf, format="PNG")
    return buf.getvalue()


def _write_parquet(path: Path) -> None:
    import pandas as pd

    rows = [
        {
            "data_source": source,
            "prompt": [{"role": "user", "content": "<image><image>Describe the findings of this chest X-ray."}],
            "images": [{"bytes": _png(2 * i), "path": None}, {"bytes": _png(2 * i + 1), "path": None}],
            "ability": "radiology_report_generation",
            "reward_model": {"style": "model", "ground_truth": ref},
            "extra_info": {"index": 10 + i, "split": "train"},
        }
        for i, (source, ref) in enumerate(ROWS)
    ]
    pd.DataFrame(rows).to_parquet(path)


def _compose(model_dir: Path, data: Path):
    import verl
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [
        f"actor_rollout_ref.model.path={model_dir}",
        "actor_rollout_ref.rollout.name=vllm",
        f"actor_rollout_ref.rollout.n={N}",
        "actor_rollout_ref.rollout.prompt_length=256",
        f"actor_rollout_ref.rollout.response_length={RESPONSE_LENGTH}",
        "actor_rollout_ref.rollout.calculate_log_probs=False",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
        "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm",
        f"actor_rollout_ref.actor.loss_scale_factor={RESPONSE_LENGTH}",
        "actor_rollout_ref.actor.optim.lr=1e-2",
        "actor_rollout_ref.actor.use_kl_loss=True",
        "actor_rollout_ref.actor.kl_loss_type=low_var_kl",
        "actor_rollout_ref.actor.kl_loss_coef=0.01",
        "algorithm.adv_estimator=dr_grpo",
        f"data.train_files={data}",
        f"data.val_files={data}",
        "data.image_key=images",
        "data.max_prompt_length=256",
        f"data.max_response_length={RESPONSE_LENGTH}",
        "data.train_batch_size=2",
        "reward.num_workers=1",
        f"reward.custom_reward_function.path={HERE / '_orapo_reward_fn.py'}",
        "reward.custom_reward_function.name=compute_score",
        "transfer_queue.enable=True",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        "trainer.v1.trainer_mode=orapo",
        "+actor_rollout_ref.rollout.agent.agent_loop_manager_class="
        "verl_ext.rollout.oracle_worker.OraPOAgentLoopManagerTQ",
        "+editgrpo.scheme=none",
        "+orapo.beta=1.0",
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=os.path.join(os.path.dirname(verl.__file__), "trainer/config"),
                               version_base=None):
        return compose("ppo_trainer", overrides=overrides)


@pytest.fixture(scope="module")
def rollout(tmp_path_factory):
    import ray
    import transfer_queue as tq

    from verl_ext.testing.tiny_qwen import build_tiny_qwen25_vl

    tmp = tmp_path_factory.mktemp("orapo")
    model_dir = build_tiny_qwen25_vl(tmp / "qwen", eos_probability=0.1)
    _write_parquet(tmp / "train.parquet")
    config = _compose(model_dir, tmp / "train.parquet")

    env = {k: os.environ[k] for k in ("HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
                                      "TOKENIZERS_PARALLELISM", "WANDB_MODE", "PYTHONPATH") if k in os.environ}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    try:
        tq.init(config.transfer_queue)
        from verl.experimental.reward_loop.reward_loop import RewardLoopManager
        from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
        from verl.utils import tensordict_utils as tu
        from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn
        from verl.utils.import_utils import load_class_from_fqn
        from verl.utils.tokenizer import hf_processor, hf_tokenizer

        from verl_ext.rollout.hf_server import launch_hf_servers, make_llm_client

        reward_manager = RewardLoopManager(config=config)
        servers = launch_hf_servers(str(model_dir), config.actor_rollout_ref.rollout, num_threads=1, seed=5)
        llm_client = make_llm_client(config, servers)
        manager_cls = load_class_from_fqn(config.actor_rollout_ref.rollout.agent.agent_loop_manager_class,
                                          "AgentLoopManager")
        manager = manager_cls.create(config=config, llm_client=llm_client, teacher_client=None,
                                     reward_loop_worker_handles=reward_manager.reward_loop_worker_handles)
        tokenizer, processor = hf_tokenizer(str(model_dir)), hf_processor(str(model_dir))
        dataset = RLHFDataset(str(tmp / "train.parquet"), tokenizer, config.data, processor)
        batch_dict = collate_fn([dataset[i] for i in range(len(dataset))])
        batch_dict["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(dataset))], dtype=object)
        batch = tu.get_tensordict(batch_dict)
        tu.assign_non_tensor_data(batch, "global_steps", 1)
        tq.kv_batch_put(keys=list(batch["uid"]), partition_id="train",
                        tags=[{"is_prompt": True, "status": "pending", "global_steps": 1}] * len(dataset))
        manager.generate_sequences(batch)
        buffer = ReplayBuffer("sync", {}, None, "drop", {}, poll_interval=0.2, refill_fn=lambda n: None,
                              train_batch_size=len(dataset), gen_batch_size=len(dataset))
        meta, _ = buffer.sample(global_steps=1, partition_id="train", batch_size=len(dataset))
        yield {"config": config, "model_dir": model_dir, "meta": meta, "keys": list(meta.keys),
               "tokenizer": tokenizer, "uids": dict(zip(batch_dict["uid"], (s for s, _ in ROWS)))}
    finally:
        tq.close()
        ray.shutdown()


def _fields(rollout, keys, fields=None):
    import transfer_queue as tq

    return tq.kv_batch_get(keys=keys, partition_id="train", select_fields=fields)


def test_each_group_has_k_rollouts_and_the_oracle(rollout):
    keys, tok = rollout["keys"], rollout["tokenizer"]
    data = _fields(rollout, keys, ["uid", "extra_fields", "prompts", "responses", "position_ids", "rm_scores",
                                   "response_mask"])
    assert len(keys) == N * len(ROWS)
    extra = list(data["extra_fields"])
    by_uid = {}
    for i, key in enumerate(keys):
        uid, session, _ = key.rsplit("_", 2)
        by_uid.setdefault(uid, {})[int(session)] = i
    references = dict(ROWS)
    for uid, sessions in by_uid.items():
        assert sorted(sessions) == list(range(N))
        oracle = sessions[K]
        assert extra[oracle]["orapo_oracle"] is True and not extra[oracle]["orapo_oracle_truncated"]
        assert all(extra[sessions[s]]["orapo_oracle"] is False for s in range(K))
        response = data["responses"][oracle].tolist()
        reference = references[rollout["uids"][uid]]
        assert response == tok.encode(reference, add_special_tokens=False) + [tok.eos_token_id]
        assert data["response_mask"][oracle].tolist() == [1] * len(response)
        for s in range(K):  # the oracle answers the very prompt tokens the rollouts were sampled from
            assert torch.equal(data["prompts"][sessions[s]], data["prompts"][oracle])
        assert data["position_ids"][oracle].shape == (4, len(data["prompts"][oracle]) + len(response))
        assert extra[oracle]["reward_extra_info"]["is_oracle"] == 1.0  # scored by the reward loop like the rest


def test_all_zero_group_enters_the_dpo_branch_and_changes_the_parameters(rollout, monkeypatch):
    import transfer_queue as tq
    from tensordict import TensorDict
    from transformers import AutoModelForImageTextToText

    from verl.utils import tensordict_utils as tu

    from verl_ext.algorithms.orapo import ZeroRewardEMA
    from verl_ext.rollout.hf_actor import HFActor, sequence_next_token_log_probs
    from verl_ext.trainer.orapo_config import validate_orapo_setup
    from verl_ext.trainer.orapo_loss import ROW_FIELDS
    from verl_ext.trainer.orapo_trainer import OraPOTrainer

    config, keys, meta = rollout["config"], rollout["keys"], rollout["meta"]
    tq.init()
    model = AutoModelForImageTextToText.from_pretrained(str(rollout["model_dir"]))
    ref_model = AutoModelForImageTextToText.from_pretrained(str(rollout["model_dir"]))
    model.eval()
    actor = HFActor(model, None, temperature=config.actor_rollout_ref.rollout.temperature)
    # 1) old log-probs (the actor) and reference log-probs (the reference policy) of every trajectory, oracle included
    actor.compute_old_log_probs(keys)
    ref = HFActor(ref_model, None).response_log_probs(_fields(rollout, keys, list(HFActor.FIELDS)))
    tq.kv_batch_put(keys=keys, partition_id="train", fields=TensorDict(
        {"ref_log_prob": torch.nested.as_nested_tensor(ref, layout=torch.jagged)}, batch_size=len(keys)))

    # 2) the orapo trainer's hooks on a trainer without workers: its loss goes to a stand-in worker group
    class WorkerGroup:
        loss_fn = None

        def set_loss_fn(self, fn):
            self.loss_fn = fn

    class CheckpointManager:
        def update_weights(self, step):
            pass

    trainer = object.__new__(OraPOTrainer)
    trainer.config, trainer.timing_raw, trainer.global_steps = config, {}, 1
    trainer.orapo_cfg = validate_orapo_setup(config)
    trainer.orapo_ema = ZeroRewardEMA(trainer.orapo_cfg.alpha, trainer.orapo_cfg.ema_init)
    trainer.actor_rollout_wg, trainer.checkpoint_manager = WorkerGroup(), CheckpointManager()
    trainer.on_init_end()
    assert trainer.actor_rollout_wg.loss_fn is not None
    metrics = {}
    trainer._compute_advantage(meta, metrics)

    data = _fields(rollout, keys, ["uid", "extra_fields", "rm_scores", "advantages", *ROW_FIELDS])
    uids = [str(u) for u in list(data["uid"])]
    extra = list(data["extra_fields"])
    scores = [float(s.sum()) for s in data["rm_scores"].unbind()]
    hard = [k for k, u in zip(keys, uids) if rollout["uids"][u] == "hard"]
    hard_rollouts = [i for i, (k, u) in enumerate(zip(keys, uids))
                     if rollout["uids"][u] == "hard" and not extra[i]["orapo_oracle"]]
    assert all(scores[i] == 0.0 for i in hard_rollouts)  # an all-zero group
    assert metrics["orapo/all_zero_share"] >= 0.5 and metrics["orapo/prompts"] == 2
    assert metrics["orapo/dpo_share"] >= 0.5 and metrics["orapo/dpo/pairs"] >= K
    w = float(data["orapo_grpo_weight"][hard_rollouts[0]])
    assert w == pytest.approx((1 - 0.15) * N / K)  # first visit: z_ema = 1, w = w_max
    for i, u in enumerate(uids):
        adv = data["advantages"][i]
        if extra[i]["orapo_oracle"]:
            assert float(adv.abs().sum()) == 0.0
            if rollout["uids"][u] == "hard":
                assert float(data["orapo_dpo_sign"][i]) == 1.0  # the chosen response of the hard prompt
            assert float(data["orapo_grpo_weight"][i]) == 0.0
            continue
        group = [j for j, v in enumerate(uids) if v == u and not extra[j]["orapo_oracle"]]
        expected = scores[i] - np.mean([scores[j] for j in group])  # Dr. GRPO over the K rollouts only
        assert torch.allclose(adv, torch.full_like(adv, expected), atol=1e-6)
    assert all(float(data["orapo_dpo_sign"][i]) == -1.0 for i in hard_rollouts)  # rejected: zero-reward rollouts
    # verl's step metrics are computed over the rollouts (the oracle rows have the orapo/* metrics)
    from verl_ext.trainer import editgrpo_trainer

    seen = []
    monkeypatch.setattr(editgrpo_trainer._trainer_cls, "_compute_metrics",
                        lambda self, batch, *args: seen.extend(batch.keys))
    trainer._compute_metrics(meta, {}, {}, 1, 0)
    assert sorted(seen) == sorted(k for i, k in enumerate(keys) if not extra[i]["orapo_oracle"])

    # 3) the installed loss on the hard group alone: Dr. GRPO gives nothing, the DPO branch moves the policy
    loss_fn = trainer.actor_rollout_wg.loss_fn

    def loss_on(batch_keys, zero_dpo=False):
        fields = list(HFActor.FIELDS) + ["old_log_probs", "advantages", "ref_log_prob", *ROW_FIELDS]
        td = _fields(rollout, batch_keys, fields)
        model.train()
        full = [sequence_next_token_log_probs(model, td["input_ids"][i], td["position_ids"][i],
                                              getattr(td["multi_modal_inputs"][i], "data", td["multi_modal_inputs"][i]))
                for i in range(len(batch_keys))]
        batch = TensorDict({k: td[k] for k in fields if k not in ("input_ids", "position_ids", "multi_modal_inputs")},
                           batch_size=len(batch_keys))
        if zero_dpo:
            batch["orapo_dpo_coef"] = torch.zeros_like(batch["orapo_dpo_coef"])
        tokens = int(sum(int(m.sum()) for m in td["response_mask"]))
        tu.assign_non_tensor(batch, dp_size=1, batch_num_tokens=tokens, global_batch_size=len(batch_keys))
        loss, out = loss_fn(model_output={"log_probs": torch.nested.as_nested_tensor(full, layout=torch.jagged)},
                            data=batch, dp_group=None)
        model.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        return loss, out, float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads))) if grads else 0.0

    _, _, no_dpo_norm = loss_on(hard, zero_dpo=True)
    assert no_dpo_norm == pytest.approx(0.0, abs=1e-9)  # all-zero group, policy == reference: no signal without DPO
    loss, out, grad_norm = loss_on(hard)
    assert grad_norm > 0 and torch.isfinite(loss)
    assert float(out["actor/orapo_dpo_surrogate"].aggregate()) > 0
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert changed and any("language_model" in n or "lm_head" in n for n in changed)
    # and the oracle's response became more likely relative to the reference policy than before the step
    oracle = [k for i, k in enumerate(keys) if k in hard and extra[keys.index(k)]["orapo_oracle"]]
    td = _fields(rollout, oracle, list(HFActor.FIELDS) + ["old_log_probs"])
    model.eval()
    new = actor.response_log_probs(td)[0].sum()
    assert float(new) > float(td["old_log_probs"][0].sum())
