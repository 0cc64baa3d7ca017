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
