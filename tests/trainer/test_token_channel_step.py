"""The trainer side of the per-token channel: start-up checks and the loss installation (token_channel_step)."""
import pytest


def _config(**over):
    import os

    import verl
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=os.path.join(os.path.dirname(verl.__file__), "trainer/config"),
                               version_base=None):
        cfg = compose("ppo_trainer", overrides=["actor_rollout_ref.rollout.name=vllm",
                                                "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
                                                *[f"{k}={v}" for k, v in over.items()]])
    return cfg


def test_check_config_names_each_problem():
    from verl_ext.trainer.token_channel_step import check_config

    assert check_config(_config()) == []
    problems = check_config(_config(**{"+ditpo.weighting": "gradient",
                                       "actor_rollout_ref.actor.policy_loss.loss_mode": "inserted_luffy",
                                       "+inserted_tokens.gamma": 0}))
    text = "\n".join(problems)
    assert "reward.reward_manager.name=radiology" in text and "trainer.v1.trainer_mode=editgrpo" in text
    assert "gamma" in text


def test_install_loss_gives_the_actor_the_channel_wrapper():
    from verl_ext.trainer.token_channel_step import channel_ppo_loss, install_loss

    class WorkerGroup:
        def set_loss_fn(self, fn):
            self.fn = fn

    trainer = type("T", (), {})()
    trainer.actor_rollout_wg = WorkerGroup()
    trainer.config = _config()
    assert install_loss(trainer) is False and not hasattr(trainer.actor_rollout_wg, "fn")
    trainer.config = _config(**{"actor_rollout_ref.actor.policy_loss.loss_mode": "inserted_masked",
                                "+inserted_tokens.gamma": 0.2})
    assert install_loss(trainer) is True
    fn = trainer.actor_rollout_wg.fn
    assert fn.func is channel_ppo_loss and fn.keywords["gamma"] == 0.2
    assert fn.keywords["config"].policy_loss.loss_mode == "inserted_masked"


def test_wrapper_refuses_a_micro_batch_without_the_mask():
    import torch
    from tensordict import TensorDict

    from verl_ext.trainer.token_channel_step import channel_ppo_loss

    with pytest.raises(KeyError, match="verl_ext_inserted"):
        channel_ppo_loss(None, {}, TensorDict({"response_mask": torch.ones(1, 2)}, batch_size=1))


def test_after_advantage_hands_its_fields_to_the_actor(monkeypatch):
    """verl's workers fetch only the batch meta's ``fields`` from TransferQueue: the step must list what it wrote
    (the inserted mask reached no actor micro-batch before; found by tests/integration/test_token_channel_cpu.py)."""
    import numpy as np
    import torch
    import transfer_queue as tq
    from tensordict import NonTensorStack, TensorDict
    from transfer_queue import KVBatchMeta

    from verl_ext import token_channel
    from verl_ext.trainer.token_channel_step import INSERTED_FIELD, after_advantage

    def nested(rows):
        return torch.nested.as_nested_tensor([torch.tensor(r, dtype=torch.float32) for r in rows],
                                             layout=torch.jagged)

    weights = [np.array([1.5, 1.0, 2.0], np.float32), np.array([1.0, 3.0], np.float32)]
    extra = [{"reward_extra_info": token_channel.put_reward_info({}, token_channel.Channel().put_array(
        token_channel.DITPO_WEIGHT, w))} for w in weights]
    extra[1].update(is_edited=True, edit_kept_runs=[[0, 1, 0]])  # token 0 kept, token 1 inserted
    puts = []

    def kv_batch_get(keys, partition_id, select_fields):
        store = {"response_mask": nested([[1, 1, 1], [1, 1]]), "advantages": nested([[2, 2, 2], [-1, -1]])}
        td = TensorDict({k: store[k] for k in select_fields if k in store}, batch_size=len(keys))
        td["extra_fields"] = NonTensorStack(*extra)
        return td

    monkeypatch.setattr(tq, "kv_batch_get", kv_batch_get)
    monkeypatch.setattr(tq, "kv_batch_put", lambda keys, partition_id, fields: puts.append(fields))
    batch = KVBatchMeta(keys=["a_0_0", "a_1_0"], tags=[{}, {}], partition_id="train",
                        fields=["responses", "response_mask", "advantages", "returns"])
    config = _config(**{"+ditpo.weighting": "gradient",
                        "actor_rollout_ref.actor.policy_loss.loss_mode": "inserted_luffy"})
    out, metrics = after_advantage(batch, config)
    assert out.fields == ["responses", "response_mask", "advantages", "returns", INSERTED_FIELD]
    assert out.keys == batch.keys and out.tags == batch.tags
    stored = puts[0].to_padded_tensor()
    torch.testing.assert_close(stored["advantages"], torch.tensor([[3.0, 2.0, 4.0], [-1.0, -3.0, 0.0]]))
    assert stored[INSERTED_FIELD].tolist() == [[0, 0, 0], [0, 1, 0]]
    assert metrics["ditpo/weighted_share"] == 1.0 and metrics["edit/inserted_token_share"] == pytest.approx(0.2)
    off = _config()
    assert after_advantage(batch, off) == (batch, {})
