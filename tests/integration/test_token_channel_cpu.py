"""On CPU, verl's V1 rollout path end to end into the loss, with DEER's gradient DiTPO and LUFFY-shaped edits.

The harness of ``test_edit_rollout_cpu.py`` (local Ray, TransferQueue, RLHFDataset, ``EditAgentLoopManagerTQ``, the
tiny Qwen2.5-VL generating, verl's RewardLoopManager), with the project's **radiology** reward manager (tiny CheXbert,
``chexbert_micro_f1_14 + bleu2``) computing the gradient-based token weights in the reward path
(``ditpo.weighting=gradient``), then the V1 trainer's advantage step, the channel step
(`verl_ext.trainer.token_channel_step.after_advantage`) and verl's ``ppo_loss`` run through the channel's loss
wrapper with ``policy_loss.loss_mode=inserted_luffy``. Asserted: weights differ from 1 exactly on tokens CheXbert
reads and are 1 where it has no gradient (the end-of-turn token, whitespace-only tokens, references without a
positive condition); the stored advantages are ``A_i * w``; the loss gradient of each token is proportional to
``A_i * w`` on sampled tokens and LUFFY-shaped on inserted ones.
"""
import importlib.util
import os
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("edit_rollout_harness", HERE / "test_edit_rollout_cpu.py")
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)
G, RESPONSE_LENGTH, REFERENCES = harness.G, harness.RESPONSE_LENGTH, harness.REFERENCES
GAMMA = 0.1


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import ray
    import transfer_queue as tq
    from omegaconf import OmegaConf

    from verl_ext.testing.scorer_models import build_chexbert
    from verl_ext.testing.tiny_qwen import build_tiny_qwen25_vl

    tmp = tmp_path_factory.mktemp("token_channel")
    model_dir = build_tiny_qwen25_vl(tmp / "qwen", eos_probability=0.1)
    chexbert = build_chexbert(tmp / "chexbert")
    harness._write_parquet(tmp / "train.parquet")
    config = harness._compose(model_dir, tmp / "train.parquet")
    OmegaConf.set_struct(config, False)
    config.reward.reward_manager.name = "radiology"
    config.reward.reward_manager.source = "register"
    config.reward.reward_kwargs = {
        "components": {"chexbert_micro_f1_14": 1.0, "bleu2": 1.0}, "device": "cpu", "service": "local",
        "models": {"chexbert_checkpoint": str(chexbert / "chexbert.pth"), "chexbert_bert": str(chexbert / "bert")},
    }
    config.ditpo = {"weighting": "gradient", "beta": 1.0}
    config.inserted_tokens = {"gamma": GAMMA}
    config.actor_rollout_ref.actor.policy_loss.loss_mode = "inserted_luffy"
    config.trainer.v1.trainer_mode = "editgrpo"

    env = {k: os.environ[k] for k in ("HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
                                      "TOKENIZERS_PARALLELISM", "WANDB_MODE", "PYTHONPATH") if k in os.environ}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "VERL_USE_EXTERNAL_MODULES": "verl_ext.register"})
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
        manager_cls = load_class_from_fqn(config.actor_rollout_ref.rollout.agent.agent_loop_manager_class,
                                          "AgentLoopManager")
        manager = manager_cls.create(config=config, llm_client=make_llm_client(config, servers), teacher_client=None,
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
        yield {"config": config, "keys": list(meta.keys), "tokenizer": tokenizer, "chexbert": chexbert}
    finally:
        tq.close()
        ray.shutdown()


def _reference_targets(chexbert_dir):
    from verl_ext.clinical.chexbert import CheXbertLabeler

    labeler = CheXbertLabeler(str(chexbert_dir / "chexbert.pth"), str(chexbert_dir / "bert"), device="cpu")
    return {ref: bool(labeler.labels([ref])[0].any()) for ref in REFERENCES}


def test_gradient_weights_and_inserted_tokens_reach_the_loss(run):
    import transfer_queue as tq
    from tensordict import TensorDict
    from verl.protocol import DataProto
    from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories
    from verl.utils import tensordict_utils as tu
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.utils.padding import response_to_nested

    from verl_ext import token_channel
    from verl_ext.trainer.token_channel_step import INSERTED_FIELD, after_advantage, channel_ppo_loss

    config, keys, tok = run["config"], run["keys"], run["tokenizer"]
    tq.init()
    data = tq.kv_batch_get(keys=keys, partition_id="train")
    extra = list(data["extra_fields"])
    has_positive = _reference_targets(run["chexbert"])
    refs = [r["ground_truth"] for r in data["reward_model"]]
    edited = 0
    from transformers import AutoTokenizer

    bert = AutoTokenizer.from_pretrained(str(run["chexbert"] / "bert"))

    # 1) the reward path put Eq. 12's weights in every non-empty trajectory's channel
    weights = []
    for i, ex in enumerate(extra):
        ids = data["responses"][i].tolist()
        ch = token_channel.read(ex, len(ids))
        w = ch.arrays[token_channel.DITPO_WEIGHT]
        weights.append(w)
        assert ex["reward_extra_info"]["ditpo_weighted"] == 1
        assert w[-1] == 1.0 and ids[-1] == tok.eos_token_id  # end of turn: no characters, no gradient
        for k in range(len(ids) - 1):
            text = tok.decode(ids[k : k + 1], skip_special_tokens=True)
            if has_positive[refs[i]] and bert.tokenize(text):  # a token CheXbert reads: its gradient is not 0
                assert w[k] > 1.0, (k, text)
            elif not text.strip():  # whitespace: CheXbert has no token there
                assert w[k] == 1.0
        if not has_positive[refs[i]]:
            assert np.all(w == 1.0)
        if ex["is_edited"]:
            edited += 1
            assert token_channel.INSERTED in ch.arrays and ch.arrays[token_channel.INSERTED].sum() > 0
    assert edited and any(has_positive.values())

    # 2) Dr. GRPO advantages as the V1 trainer computes them, then the channel step
    fields = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["uid", "response_mask", "rm_scores"])
    response_mask = fields["response_mask"]
    proto = DataProto(batch=fields.to_padded_tensor())
    proto.batch["token_level_rewards"] = proto.batch["rm_scores"]
    proto.non_tensor_batch["uid"] = np.array(proto.batch.pop("uid").tolist(), dtype=object)
    proto = compute_advantage_for_multi_trajectories(
        proto, batch_keys=keys, adv_estimator="grpo", num_repeat=G, norm_adv_by_std_in_grpo=False,
        config=config.algorithm,
    )
    seq_adv = proto.batch["advantages"][:, 0].clone()
    assert float(seq_adv.abs().sum()) > 0
    tq.kv_batch_put(keys=keys, partition_id="train", fields=TensorDict(
        {"advantages": response_to_nested(proto.batch["advantages"], response_mask)}, batch_size=len(keys)))
    metrics = after_advantage(keys, "train", config)
    assert metrics["ditpo/weighted_share"] == 1.0 and metrics["timing_s/token_channel"] >= 0
    stored = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages", INSERTED_FIELD])
    for i in range(len(keys)):
        torch.testing.assert_close(stored["advantages"][i], seq_adv[i] * torch.from_numpy(weights[i]))
        expected_ins = token_channel.inserted_token_mask(extra[i], len(weights[i]))
        expected_ins = np.zeros(len(weights[i])) if expected_ins is None else expected_ins
        assert stored[INSERTED_FIELD][i].tolist() == expected_ins.tolist()

    # 3) verl's ppo_loss through the channel's loss wrapper, on the real TQ micro-batch, at ratio 1
    names = ["prompts", "responses", "response_mask", "advantages", INSERTED_FIELD]
    td = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=names)
    p = 0.5
    full, leaves = [], []
    for i in range(len(keys)):
        n_prompt, n_resp = len(td["prompts"][i]), len(td["responses"][i])
        leaf = torch.full((n_prompt + n_resp,), float(np.log(p)), requires_grad=True)
        leaves.append(leaf)
        full.append(leaf)
    old = [torch.full((len(td["responses"][i]),), float(np.log(p))) for i in range(len(keys))]
    batch = TensorDict({k: td[k] for k in names} | {"old_log_probs": torch.nested.as_nested_tensor(
        old, layout=torch.jagged)}, batch_size=len(keys))
    tu.assign_non_tensor(batch, dp_size=1, batch_num_tokens=int(sum(len(r) for r in td["responses"])),
                         global_batch_size=len(keys))
    actor_config = omega_conf_to_dataclass(config.actor_rollout_ref.actor)
    loss, loss_metrics = channel_ppo_loss(actor_config, {"log_probs": torch.nested.as_nested_tensor(
        full, layout=torch.jagged)}, batch, gamma=GAMMA)
    loss.backward()
    shaped = GAMMA * p / (p + GAMMA) ** 2  # d f(p)/d log p for f(p) = p / (p + gamma); the ratio's slope is 1
    for i in range(len(keys)):
        n_prompt, n_resp = len(td["prompts"][i]), len(td["responses"][i])
        grad = leaves[i].grad[n_prompt - 1 : n_prompt - 1 + n_resp]
        ins = td[INSERTED_FIELD][i].numpy()
        slope = np.where(ins > 0, shaped, 1.0)
        # seq-mean-token-sum-norm: sum over tokens / loss_scale_factor, mean over the global batch
        expected = -seq_adv[i].item() * weights[i] * slope / (RESPONSE_LENGTH * len(keys))
        np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-4, atol=1e-9)
    assert "actor/inserted_token_share" in loss_metrics
