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


@pytest.mark.parametrize("loss_mode", ["inserted_masked", "inserted_luffy"])
def test_inserted_token_losses_are_refused(loss_mode):
    """Their loss (token_channel_step.install_loss, run by the editgrpo base's on_init_end) would replace OraPO's."""
    with pytest.raises(ValueError, match=f"policy_loss.loss_mode={loss_mode}: .*OraPO has no edited responses"):
        validate_orapo_setup(_config(**{"actor_rollout_ref.actor.policy_loss.loss_mode": loss_mode}))
    validate_orapo_setup(_config(**{"actor_rollout_ref.actor.policy_loss.loss_mode": "vanilla"}))


def _facts_llm(facts_model, components=None):
    return _config(**{"reward.reward_manager.name": "radiology",
                      "reward.reward_kwargs.components": components or {"facts_llm": 1.0},
                      "reward.reward_kwargs.facts_model": facts_model})


def test_facts_model_must_be_a_directory(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "weights.bin").write_bytes(b"")
    assert validate_orapo_setup(_facts_llm(str(tmp_path / "model")))
    for value, needle in ((None, "reward.reward_kwargs.facts_model is not set"),
                          ("", "reward.reward_kwargs.facts_model is not set"),
                          (str(tmp_path / "weights.bin"), "facts_model=.*weights.bin.*no such directory"),
                          (str(tmp_path / "absent"), "facts_model=.*absent.*no such directory")):
        with pytest.raises(ValueError, match=needle):
            validate_orapo_setup(_facts_llm(value))
    # the dry run reports the path with the other model paths instead; other FactS backends need no model
    assert validate_orapo_setup(_facts_llm(str(tmp_path / "absent")), check_paths=False)
    assert validate_orapo_setup(_facts_llm(None, components={"facts": 1.0}))


def test_dry_run_reports_the_facts_model(tmp_path):
    from verl_ext.config.dry_run import Report, _check_facts_model
    from verl_ext.reward.config import RadiologyRewardConfig

    (tmp_path / "weights.bin").write_bytes(b"")
    (tmp_path / "model").mkdir()
    outcomes = {}
    for name, value, strict in (("unset", None, False), ("file", str(tmp_path / "weights.bin"), False),
                                ("absent", str(tmp_path / "absent"), False),
                                ("absent strict", str(tmp_path / "absent"), True),
                                ("dir", str(tmp_path / "model"), True)):
        cfg = _facts_llm(value)
        report = Report(config_name=name)
        _check_facts_model(report, cfg, RadiologyRewardConfig.from_trainer_config(cfg), strict)
        outcomes[name] = ([n for n, _ in report.errors], [n for n, _ in report.warnings])
    key = "reward.reward_kwargs.facts_model"
    assert outcomes == {"unset": ([key], []), "file": ([key], []), "absent": ([], [key]),
                        "absent strict": ([key], []), "dir": ([], [])}
