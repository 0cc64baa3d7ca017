"""End-to-end on CPU: verl's V1 rollout path with the EditGRPO edit step, then a policy-gradient step.

Real pieces: local Ray, TransferQueue, verl's RLHFDataset on a multimodal parquet, ``EditAgentLoopManagerTQ``
loaded the way ``TaskRunnerV1`` loads it (``agent_loop_manager_class``), verl's SingleTurnAgentLoop, verl's
LLMServerClient and load balancer in front of ``HFGenerationServer`` (the tiny Qwen2.5-VL actually generating with
``model.generate``), verl's RewardLoopManager (one worker, ``naive`` manager + a custom reward function), the
project's lexicon analyzer and edit engine, verl's ReplayBuffer, ``compute_advantage_for_multi_trajectories`` (Dr.
GRPO), and verl's ``ppo_loss`` (vanilla policy loss, ``seq-mean-token-sum-norm``) on the HF forward with verl's
multimodal inputs and 4-row position ids. What is not verl's here: the actor (FSDP cannot run on CPU) and the
rollout server (vLLM needs a GPU).
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
G = 4
RESPONSE_LENGTH = 40
REFERENCES = [
    "The heart is enlarged. There is a small left pleural effusion. No pneumothorax.",
    "The lungs are clear. No pleural effusion. Heart size is normal.",
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
            "data_source": "synthetic_cxr",
            "prompt": [{"role": "user", "content": "<image><image>Describe the findings of this chest X-ray."}],
            "images": [{"bytes": _png(2 * i), "path": None}, {"bytes": _png(2 * i + 1), "path": None}],
            "ability": "radiology_report_generation",
            "reward_model": {"style": "model", "ground_truth": ref},
            "extra_info": {"index": i, "split": "train"},
        }
        for i, ref in enumerate(REFERENCES)
    ]
    pd.DataFrame(rows).to_parquet(path)


def _compose(model_dir: Path, data: Path):
    import verl
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [
        f"actor_rollout_ref.model.path={model_dir}",
        "actor_rollout_ref.rollout.name=vllm",
        f"actor_rollout_ref.rollout.n={G}",
        "actor_rollout_ref.rollout.prompt_length=256",
        f"actor_rollout_ref.rollout.response_length={RESPONSE_LENGTH}",
        "actor_rollout_ref.rollout.calculate_log_probs=False",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
        "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm",
        f"actor_rollout_ref.actor.loss_scale_factor={RESPONSE_LENGTH}",
        "actor_rollout_ref.actor.optim.lr=1e-2",
        "actor_rollout_ref.actor.use_kl_loss=False",
        "algorithm.adv_estimator=grpo",
        "algorithm.norm_adv_by_std_in_grpo=False",
        f"data.train_files={data}",
        f"data.val_files={data}",
        "data.image_key=images",
        "data.max_prompt_length=256",
        f"data.max_response_length={RESPONSE_LENGTH}",
        "data.train_batch_size=2",
        "reward.num_workers=1",
        f"reward.custom_reward_function.path={HERE / '_reward_fn.py'}",
        "reward.custom_reward_function.name=compute_score",
        "transfer_queue.enable=True",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        "+actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.rollout.EditAgentLoopManagerTQ",
        "+editgrpo.scheme=paper",
        "+editgrpo.analyzer=lexicon",
        "+editgrpo.device=cpu",
        "+editgrpo.analyzer_options.cpu_threads=1",
        "+editgrpo.seed=11",
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

    tmp = tmp_path_factory.mktemp("edit_rollout")
    model_dir = build_tiny_qwen25_vl(tmp / "qwen", eos_probability=0.1)  # responses end before the limit
    _write_parquet(tmp / "train.parquet")
    config = _compose(model_dir, tmp / "train.parquet")

    env = {k: os.environ[k] for k in ("HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
                                      "TOKENIZERS_PARALLELISM", "WANDB_MODE") if k in os.environ}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    try:
        tq.init(config.transfer_queue)
        from verl.experimental.reward_loop.reward_loop import RewardLoopManager
        from verl.utils import tensordict_utils as tu
        from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn
        from verl.utils.import_utils import load_class_from_fqn
        from verl.utils.tokenizer import hf_processor, hf_tokenizer

        from verl_ext.rollout.hf_server import launch_hf_servers, make_llm_client

        reward_manager = RewardLoopManager(config=config)
        servers = launch_hf_servers(str(model_dir), config.actor_rollout_ref.rollout, num_threads=1, seed=5)
        llm_client = make_llm_client(config, servers)
        # exactly how verl's TaskRunnerV1.init_agent_loop_manager resolves and builds the manager
        manager_cls = load_class_from_fqn(config.actor_rollout_ref.rollout.agent.agent_loop_manager_class,
                                          "AgentLoopManager")
        manager = manager_cls.create(
            config=config, llm_client=llm_client, teacher_client=None,
            reward_loop_worker_handles=reward_manager.reward_loop_worker_handles,
        )

        # the V1 trainer's _next_train_batch + _submit_batch_to_rollout
        tokenizer, processor = hf_tokenizer(str(model_dir)), hf_processor(str(model_dir))
        dataset = RLHFDataset(str(tmp / "train.parquet"), tokenizer, config.data, processor)
        batch_dict = collate_fn([dataset[i] for i in range(len(dataset))])
        batch_dict["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(dataset))], dtype=object)
        batch = tu.get_tensordict(batch_dict)
        tu.assign_non_tensor_data(batch, "global_steps", 1)
        tq.kv_batch_put(keys=list(batch["uid"]), partition_id="train",
                        tags=[{"is_prompt": True, "status": "pending", "global_steps": 1}] * len(dataset))
        manager.generate_sequences(batch)

        from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

        buffer = ReplayBuffer("sync", {}, None, "drop", {}, poll_interval=0.2, refill_fn=lambda n: None,
                              train_batch_size=len(dataset), gen_batch_size=len(dataset))
        meta, _ = buffer.sample(global_steps=1, partition_id="train", batch_size=len(dataset))
        data = tq.kv_batch_get(keys=meta.keys, partition_id="train")
        yield {
            "config": config, "model_dir": model_dir, "meta": meta, "data": data, "keys": list(meta.keys),
            "tokenizer": tokenizer, "uids": list(batch["uid"]),
        }
    finally:
        tq.close()
        ray.shutdown()


def _rows(rollout):
    data = rollout["data"]
    extra = list(data["extra_fields"])
    out = []
    for i, key in enumerate(rollout["keys"]):
        uid, session, index = key.rsplit("_", 2)
        out.append({"key": key, "uid": uid, "session": int(session), "index": int(index), "i": i,
                    "extra": extra[i], "responses": data["responses"][i].tolist()})
    return out


def test_groups_of_g_with_sampled_and_edited_copies(rollout):
    rows = _rows(rollout)
    assert len(rows) == G * len(REFERENCES)
    assert {r["uid"] for r in rows} == set(rollout["uids"])
    for uid in rollout["uids"]:
        group = sorted((r for r in rows if r["uid"] == uid), key=lambda r: r["session"])
        assert [r["session"] for r in group] == list(range(G)) and all(r["index"] == 0 for r in group)
        assert [r["extra"]["is_edited"] for r in group[: G // 2]] == [False] * (G // 2)
    edited = [r for r in rows if r["extra"]["is_edited"]]
    assert edited, "the edit step produced no edited copy"
    for r in edited:
        assert r["session"] >= G // 2 and r["extra"]["edit_ops"] and r["extra"]["edit_source_session"] < G // 2
        assert r["responses"][-1] == rollout["tokenizer"].eos_token_id  # the real end-of-turn token
        assert len(r["responses"]) <= RESPONSE_LENGTH


def test_edited_copies_were_scored_by_the_reward_loop(rollout):
    data = rollout["data"]
    rows = _rows(rollout)
    for r in rows:
        info = r["extra"]["reward_extra_info"]
        rm = data["rm_scores"][r["i"]]
        assert rm.shape[0] == len(r["responses"])
        assert float(rm[-1]) == pytest.approx(info["score"]) and float(rm[:-1].abs().sum()) == 0.0
        assert info["is_edited"] == float(r["extra"]["is_edited"])  # the reward saw the edit flag
        assert "edit_analysis" not in r["extra"]  # dropped after scoring (editgrpo.keep_analysis=False)
    sampled = [r for r in rows if not r["extra"]["is_edited"]]
    assert all(r["extra"]["reward_extra_info"]["saw_analysis"] == 1.0 for r in sampled if r["session"] < G // 2)
    # edits move toward the reference: an edited copy scores at least as well as its source on token-overlap F1
    for r in rows:
        if r["extra"]["is_edited"]:
            source = next(s for s in rows if s["uid"] == r["uid"] and s["session"] == r["extra"]["edit_source_session"])
            assert r["extra"]["reward_extra_info"]["score"] >= source["extra"]["reward_extra_info"]["score"]


def test_kept_tokens_are_the_sampled_ids(rollout):
    rows = _rows(rollout)
    checked = 0
    for r in rows:
        if not r["extra"]["is_edited"]:
            continue
        source = next(s for s in rows if s["uid"] == r["uid"] and s["session"] == r["extra"]["edit_source_session"])
        for s0, s1, d in r["extra"]["edit_kept_runs"]:
            assert r["responses"][d : d + s1 - s0] == source["responses"][s0:s1]
            checked += s1 - s0
        assert sum(s1 - s0 for s0, s1, _ in r["extra"]["edit_kept_runs"]) == r["extra"]["edit_tokens_kept"]
        tok = rollout["tokenizer"]
        assert len(r["responses"]) == r["extra"]["edit_tokens_kept"] + r["extra"]["edit_tokens_inserted"] + 1
        assert tok.decode(r["responses"], skip_special_tokens=True).strip()
    if any("fn_append" in r["extra"]["edit_ops"] for r in rows):
        assert checked > 0  # an appended sentence keeps the whole sampled report


def test_mrope_position_ids_and_multimodal_inputs(rollout):
    data = rollout["data"]
    rows = _rows(rollout)
    for r in rows:
        pos = data["position_ids"][r["i"]]
        ids = data["input_ids"][r["i"]]
        assert pos.shape == (4, ids.shape[0])  # verl's text row + 3 mrope rows
        prompt_len = data["prompts"][r["i"]].shape[0]
        # response positions continue contiguously after the prompt in every row
        resp = pos[:, prompt_len:]
        assert torch.equal(resp[:, 1:] - resp[:, :-1], torch.ones_like(resp[:, 1:]))
        assert torch.equal(pos[0, :], torch.arange(ids.shape[0]))
        mm = data["multi_modal_inputs"][r["i"]]
        mm = getattr(mm, "data", mm)
        assert mm["image_grid_thw"].shape == (2, 3)
        n_pad = int((ids == rollout["tokenizer"].convert_tokens_to_ids("<|image_pad|>")).sum())
        assert n_pad == int(mm["image_grid_thw"].prod(-1).sum()) // 4
    for uid in rollout["uids"]:
        group = [r for r in rows if r["uid"] == uid]
        first = data["prompts"][group[0]["i"]]
        for r in group[1:]:  # same prompt tokens and same prompt positions for sampled and edited copies
            assert torch.equal(data["prompts"][r["i"]], first)
            n = first.shape[0]
            assert torch.equal(data["position_ids"][r["i"]][:, :n], data["position_ids"][group[0]["i"]][:, :n])


def test_dr_grpo_advantages_and_policy_gradient_step(rollout):
    import transfer_queue as tq
    from tensordict import TensorDict
    from transformers import AutoModelForImageTextToText

    from verl.protocol import DataProto
    from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.utils.padding import response_to_nested

    from verl.utils.tokenizer import hf_processor

    from verl_ext.rollout.hf_actor import HFActor, sequence_next_token_log_probs
    from verl_ext.rollout.hf_server import mm_token_type_ids

    config, keys = rollout["config"], rollout["keys"]
    tq.init()
    model = AutoModelForImageTextToText.from_pretrained(str(rollout["model_dir"]))
    model.eval()
    actor = HFActor(model, omega_conf_to_dataclass(config.actor_rollout_ref.actor),
                    temperature=config.actor_rollout_ref.rollout.temperature)

    # 1) old log-probs for every trajectory, edited copies included (verl's actor recompute)
    old = actor.compute_old_log_probs(keys)
    assert all(torch.isfinite(x).all() for x in old)
    # verl's 4-row positions give the same log-probs as the model's own rope computation
    data = tq.kv_batch_get(keys=keys[:1], partition_id="train", select_fields=list(HFActor.FIELDS))
    mm = getattr(data["multi_modal_inputs"][0], "data", data["multi_modal_inputs"][0])
    processor = hf_processor(str(rollout["model_dir"]))
    with torch.no_grad():
        own = sequence_next_token_log_probs(model, data["input_ids"][0], None, mm,
                                            mm_token_type_ids=mm_token_type_ids(processor, data["input_ids"][0]))
        verl_pos = sequence_next_token_log_probs(model, data["input_ids"][0], data["position_ids"][0], mm)
    assert torch.allclose(own, verl_pos, atol=1e-5)

    # 2) Dr. GRPO advantages, as the V1 trainer computes them (_compute_advantage)
    fields = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["uid", "response_mask", "rm_scores"])
    response_mask = fields["response_mask"]
    proto = DataProto(batch=fields.to_padded_tensor())
    proto.batch["token_level_scores"] = proto.batch["rm_scores"]
    proto.batch["token_level_rewards"] = proto.batch["token_level_scores"]
    proto.non_tensor_batch["uid"] = np.array(proto.batch.pop("uid").tolist(), dtype=object)
    proto = compute_advantage_for_multi_trajectories(
        proto, batch_keys=keys, adv_estimator=config.algorithm.adv_estimator, num_repeat=G,
        norm_adv_by_std_in_grpo=config.algorithm.norm_adv_by_std_in_grpo, config=config.algorithm,
    )
    scores = proto.batch["rm_scores"].sum(-1)
    uids = proto.non_tensor_batch["uid"]
    for i in range(len(keys)):
        group = [j for j in range(len(keys)) if uids[j] == uids[i]]
        expected = scores[i] - scores[group].mean()  # mean-centred, no std (Dr. GRPO)
        mask = proto.batch["response_mask"][i].bool()
        assert torch.allclose(proto.batch["advantages"][i][mask], expected.expand(int(mask.sum())), atol=1e-6)
    tq.kv_batch_put(keys=keys, partition_id="train", fields=TensorDict(
        {"advantages": response_to_nested(proto.batch["advantages"], response_mask)}, batch_size=len(keys)))
    assert float(proto.batch["advantages"].abs().sum()) > 0, "all rewards equal: no learning signal to test"

    # 3) one policy-gradient step with verl's ppo_loss (vanilla, seq-mean-token-sum-norm)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    metrics = actor.update(keys)
    assert np.isfinite(metrics["actor/loss"]) and np.isfinite(metrics["actor/grad_norm"])
    assert metrics["actor/grad_norm"] > 0 and np.isfinite(metrics["actor/pg_loss"])
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert changed and any("lm_head" in n or "language_model" in n for n in changed)
    # the ratio started at 1: old log-probs were computed by the same policy
    assert metrics.get("actor/ppo_kl", 0.0) == pytest.approx(0.0, abs=1e-5)
