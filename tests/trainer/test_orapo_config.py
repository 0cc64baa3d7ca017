"""The orapo key and the start-up check of an OraPO training config."""
import pytest
from omegaconf import OmegaConf

from verl_ext.trainer.orapo_config import MANAGER_CLASS, OraPOConfig, validate_orapo_setup


def _config(**over):
    cfg = {
        "trainer": {"v1": {"trainer_mode": "orapo"}},
        "actor_rollout_ref": {
            "rollout": {"n": 9, "calculate_log_probs": False, "agent": {"agent_loop_manager_class": MANAGER_CLASS}},
            "actor": {"loss_agg_mode": "seq-mean-token-sum-norm", "use_kl_loss": True},
        },
        "algorithm": {"use_kl_in_reward": False},
        "orapo": {"negatives": "zero_reward"},
    }
    conf = OmegaConf.create(cfg)
    for key, value in over.items():
        OmegaConf.update(conf, key, value, force_add=True)
    return conf


def test_defaults_are_the_papers():
    c = OraPOConfig()
    assert (c.alpha, c.w_min, c.w_max, c.gamma) == (0.5, 0.05, 0.15, 2.0)
    assert c.negatives == "zero_reward" and c.beta == 0.1
    assert validate_orapo_setup(_config()).negatives == "zero_reward"


def test_every_problem_is_named():
    bad = _config(**{"trainer.v1.trainer_mode": "editgrpo", "actor_rollout_ref.rollout.n": 1,
                     "actor_rollout_ref.actor.loss_agg_mode": "token-mean",
                     "actor_rollout_ref.actor.use_kl_loss": False,
                     "actor_rollout_ref.rollout.calculate_log_probs": True,
                     "actor_rollout_ref.rollout.agent.agent_loop_manager_class": None})
    with pytest.raises(ValueError) as err:
        validate_orapo_setup(bad)
    for needle in ("trainer_mode", "agent_loop_manager_class", "rollout.n=1", "loss_agg_mode", "use_kl_loss",
                   "calculate_log_probs"):
        assert needle in str(err.value)


@pytest.mark.parametrize("orapo,needle", [({"negatives": "worst"}, "negatives"), ({"w_min": 0.3}, "w_min"),
                                          ({"alpha": 1.0}, "alpha"), ({"beta": 0}, "beta"), ({"gama": 2}, "gama")])
def test_bad_orapo_values(orapo, needle):
    with pytest.raises(ValueError, match=needle):
        validate_orapo_setup(_config(orapo=orapo))
