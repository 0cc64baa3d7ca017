"""A model path is checked with the rule its loader uses, before anything loads, naming the setting to change: the
dry run, the trainer's start-up (evaluate: tests/eval/test_evaluate_cli.py). The case users met: the tiny scorer
fixtures build RadGraph model type ``radgraph`` while the reward defaults to ``radgraph-xl``; the dry run said
``[ok]`` and a ``--cpu`` run died minutes later in a Ray worker."""
import pytest

from verl_ext.clinical.models import ModelPaths, model_path_problems

TYPE_FIX = "set reward.reward_kwargs.models.radgraph_model_type=radgraph"


@pytest.fixture
def model_dirs(tmp_path):
    """Model paths in their loaders' layouts (file existence is all the checks read); RadGraph as type ``radgraph``."""
    for name in ("rate_ner", "biolord", "bert", "radgraph/radgraph"):
        (tmp_path / name).mkdir(parents=True)
    for name in ("chexbert.pth", "radgraph/radgraph/config.json", "radgraph/radgraph/weights.th"):
        (tmp_path / name).write_bytes(b"")
    models = {"rate_ner": tmp_path / "rate_ner", "biolord": tmp_path / "biolord", "chexbert_bert": tmp_path / "bert",
              "chexbert_checkpoint": tmp_path / "chexbert.pth", "radgraph_cache": tmp_path / "radgraph"}
    return {k: str(v) for k, v in models.items()}


def _overrides(models: dict) -> list[str]:
    out = ["data.train_files=/nonexistent/train.parquet", "data.val_files=/nonexistent/val.parquet",
           "actor_rollout_ref.model.path=/nonexistent/model"]
    out += [f"reward.reward_kwargs.models.{k}={v}" for k, v in models.items()]
    out += [f"editgrpo.models.{k}={models[k]}" for k in ("rate_ner", "biolord", "radgraph_cache")]
    return out


def test_the_rule_names_the_setting_and_the_types_the_cache_holds(model_dirs):
    paths = ModelPaths.from_dict(model_dirs)
    problems = model_path_problems(paths, {"radgraph", "rate", "chexbert"}, "reward.reward_kwargs.models")
    assert len(problems) == 1 and TYPE_FIX in problems[0] and "has no radgraph-xl/ model folder" in problems[0]
    paths.radgraph_model_type = "radgraph"
    assert model_path_problems(paths, {"radgraph"}, "x") == []
    paths.chexbert_checkpoint = model_dirs["chexbert_bert"]  # a directory where the loader reads a file
    assert "no such file" in model_path_problems(paths, {"chexbert"}, "m")[0]


def test_dry_run_fails_on_a_radgraph_model_type_the_cache_lacks(model_dirs, capsys, monkeypatch):
    from verl_ext.config import dry_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    argv = ["--config-name=editgrpo_trainer", *_overrides(model_dirs)]
    assert dry_run.main(argv) == 1
    out = capsys.readouterr().out
    fails = [line for line in out.splitlines() if line.startswith("[FAIL]")]
    assert len(fails) == 1 and fails[0].startswith("[FAIL] reward.reward_kwargs.models: ") and TYPE_FIX in fails[0]
    assert dry_run.main([*argv, "reward.reward_kwargs.models.radgraph_model_type=radgraph"]) == 0
    assert "radgraph_model_type=radgraph" in capsys.readouterr().out


def test_trainer_start_up_refuses_a_radgraph_model_type_the_cache_lacks(model_dirs, monkeypatch):
    from hydra import compose, initialize_config_dir

    from verl_ext.config import CONFIG_DIR
    from verl_ext.trainer.editgrpo_trainer import EditGRPOTrainer

    monkeypatch.setenv("WANDB_MODE", "offline")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="editgrpo_trainer", overrides=_overrides(model_dirs))
    with pytest.raises(ValueError, match="start-up check failed") as info:
        EditGRPOTrainer(cfg)  # before verl's __init__ builds resource pools, datasets and workers
    assert TYPE_FIX in str(info.value)
