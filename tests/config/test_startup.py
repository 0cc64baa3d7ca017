"""Late-failing settings fail before anything loads (verl_ext.config.startup), in the trainer and the dry run."""
import pytest
from omegaconf import OmegaConf

from verl_ext.config.startup import check_before_loading, startup_problems, wandb_credentials


def _config(**over):
    cfg = {"data": {"val_batch_size": 64}, "trainer": {"logger": ["console", "wandb"]},
           "reward": {"reward_manager": {"name": "naive"}}}
    for key, value in over.items():
        OmegaConf.update(node := OmegaConf.create(cfg), key, value, force_add=True)
        cfg = OmegaConf.to_container(node)
    return OmegaConf.create(cfg)


def test_wandb_credentials_sources(tmp_path):
    assert wandb_credentials({"WANDB_MODE": "offline"}) == "WANDB_MODE=offline"
    assert wandb_credentials({"WANDB_API_KEY": "x" * 40}) == "WANDB_API_KEY"
    netrc = tmp_path / "netrc"
    assert wandb_credentials({"NETRC": str(netrc)}) is None  # no file
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    assert wandb_credentials({"NETRC": str(netrc)}) == f"{netrc} entry for api.wandb.ai"
    assert wandb_credentials({"NETRC": str(netrc), "WANDB_BASE_URL": "https://wandb.example.org"}) is None


def test_wandb_without_credentials_fails_before_loading(monkeypatch, tmp_path):
    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    with pytest.raises(ValueError, match="trainer.logger includes wandb.*WANDB_MODE=offline"):
        check_before_loading(_config())
    check_before_loading(_config(**{"trainer.logger": ["console", "file"]}))
    monkeypatch.setenv("WANDB_MODE", "offline")
    check_before_loading(_config())


def test_val_batch_size_null_is_named():
    problems = startup_problems(_config(**{"data.val_batch_size": None}), env={"WANDB_MODE": "offline"})
    assert len(problems) == 1 and problems[0].startswith("data.val_batch_size is not set")


def test_missing_model_paths_fail_with_the_key_and_path(tmp_path):
    cfg = _config(**{
        "reward.reward_manager.name": "radiology",
        "reward.reward_kwargs": {"components": {"ratescore": 1.0},
                                 "models": {"rate_ner": str(tmp_path / "nope"), "biolord": str(tmp_path)}},
        "editgrpo": {"analyzer": "rate", "models": {"rate_ner": str(tmp_path), "biolord": None}},
        "actor_rollout_ref.rollout.agent.agent_loop_manager_class": "verl_ext.rollout.EditAgentLoopManagerTQ",
    })
    problems = startup_problems(cfg, env={"WANDB_MODE": "offline"})
    assert any("editgrpo.models.biolord is not set" in p for p in problems)
    assert any(f"reward.reward_kwargs.models.rate_ner={str(tmp_path / 'nope')!r}" in p for p in problems)


def test_trainer_yaml_sets_a_val_batch_size():
    from pathlib import Path

    import verl_ext.config

    yaml = OmegaConf.load(Path(verl_ext.config.__file__).with_name("editgrpo_trainer.yaml"))
    assert yaml.data.val_batch_size == 64


def test_editgrpo_trainer_refuses_before_building_anything(monkeypatch):
    from hydra import compose, initialize_config_dir

    from verl_ext.config import CONFIG_DIR
    from verl_ext.trainer.editgrpo_trainer import EditGRPOTrainer

    monkeypatch.setenv("WANDB_MODE", "offline")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="editgrpo_trainer", overrides=[
            "data.train_files=/nonexistent/train.parquet", "data.val_files=/nonexistent/val.parquet",
            "actor_rollout_ref.model.path=/nonexistent/model", "data.val_batch_size=null"])
    with pytest.raises(ValueError, match="start-up check failed") as info:
        EditGRPOTrainer(cfg)  # verl's __init__ would first load the tokenizer from the (missing) model path
    message = str(info.value)
    assert "data.val_batch_size is not set" in message and "editgrpo.models.rate_ner is not set" in message
