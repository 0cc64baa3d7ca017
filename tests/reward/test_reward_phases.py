"""DEER's two-phase reward (Sec. 3.1 / 4): the BLEU-2 phase must happen for any data size, and a schedule whose
phase the run never reaches is refused before anything loads (issue 21: step 500 of a ~460-step run)."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from verl_ext.reward.config import RadiologyRewardConfig

DEER = {"components": {"chexbert_example_f1": 1.0, "bleu2": 0.0}}


def test_share_switch_splits_any_run_in_two_phases():
    cfg = RadiologyRewardConfig(**DEER, component_schedules={"bleu2": [[0, 0.0], [0.5, 0.25]]},
                                schedule_unit="share", total_training_steps=460)
    assert cfg.schedule_steps("bleu2") == [(0, 0.0), (231, 0.25)]
    assert [cfg.weight_at("bleu2", s) for s in (1, 230, 231, 460)] == [0.0, 0.0, 0.25, 0.25]
    for total in (1, 2, 3, 7, 460, 4231):  # both phases (steps 1..total) whenever the run has two steps
        run = RadiologyRewardConfig(**DEER, component_schedules={"bleu2": [[0, 0.0], [0.5, 0.25]]},
                                    schedule_unit="share", total_training_steps=total)
        steps = [run.weight_at("bleu2", s) for s in range(1, total + 1)]
        assert run.schedule_problems(total) == []
        assert steps[-1] == 0.25 and (total == 1 or steps[0] == 0.0)


def test_share_schedule_needs_the_run_length_and_a_reachable_share():
    cfg = RadiologyRewardConfig(**DEER, component_schedules={"bleu2": [[0, 0.0], [0.5, 0.25]]},
                                schedule_unit="share")
    with pytest.raises(ValueError, match="trainer.total_training_steps"):
        cfg.weight_at("bleu2", 3)
    with pytest.raises(ValueError, match=r"component_schedules.bleu2.*\[0, 1\)"):
        RadiologyRewardConfig(**DEER, component_schedules={"bleu2": [[1.0, 0.25]]}, schedule_unit="share")
    with pytest.raises(ValueError, match="schedule_unit"):
        RadiologyRewardConfig(**DEER, schedule_unit="epoch")
    with pytest.raises(ValueError, match="schedule_unit=share"):  # a share given in steps used to become step 0
        RadiologyRewardConfig(**DEER, component_schedules={"bleu2": [[0, 0.0], [0.5, 0.25]]})


def test_trainer_config_gives_the_run_length():
    trainer = OmegaConf.create({"trainer": {"total_training_steps": 10}, "reward": {"reward_kwargs": {
        **DEER, "component_schedules": {"bleu2": [[0, 0.0], [0.5, 0.25]]}, "schedule_unit": "share"}}})
    cfg = RadiologyRewardConfig.from_trainer_config(trainer)
    assert cfg.total_training_steps == 10 and cfg.schedule_steps("bleu2")[-1] == (6, 0.25)


def _config(tmp_path, rows: int, schedule, unit: str = "step", total=None):
    path = tmp_path / "train-00000.parquet"
    pq.write_table(pa.table({"x": list(range(rows))}), path)
    return OmegaConf.create({
        "data": {"train_files": [str(path)], "train_batch_size": 64, "val_batch_size": 8},
        "trainer": {"total_epochs": 1, "total_training_steps": total, "logger": ["console"]},
        "reward": {"reward_manager": {"name": "radiology"}, "reward_kwargs": {
            **DEER, "component_schedules": {"bleu2": schedule}, "schedule_unit": unit}},
    })


def test_startup_refuses_a_phase_past_the_end_of_the_run(tmp_path):
    from verl_ext.config.startup import check_before_loading, planned_training_steps, startup_problems

    late = _config(tmp_path, 460 * 64 + 5, [[0, 0.0], [500, 0.25]])  # the old mimic_deer.sh: 460 steps, switch 500
    assert planned_training_steps(late) == 460
    with pytest.raises(ValueError, match=r"component_schedules.bleu2 starts .* at step 500, but the run has at most 460 steps"):
        check_before_loading(late)
    assert startup_problems(_config(tmp_path, 460 * 64, [[0, 0.0], [460, 0.25]]), check_models=False) == []
    assert startup_problems(_config(tmp_path, 460 * 64, [[0, 0.0], [0.5, 0.25]], "share"), check_models=False) == []
    given = _config(tmp_path, 10, [[0, 0.0], [500, 0.25]], total=1000)  # an explicit step count wins over the data
    assert planned_training_steps(given) == 1000 and startup_problems(given, check_models=False) == []


def test_editgrpo_trainer_publishes_the_run_length(monkeypatch):
    """The reward loop is built after the data loader; the trainer writes verl's step count where it reads it."""
    from verl.trainer.ppo.v1 import PPOTrainerSync

    from verl_ext.trainer import editgrpo_trainer

    editgrpo_trainer._register()

    def fake_init_dataloader(self):
        self.total_training_steps = 460

    monkeypatch.setattr(PPOTrainerSync, "_init_dataloader", fake_init_dataloader)
    trainer = object.__new__(editgrpo_trainer._trainer_cls)  # no __init__: only the data-loader hook runs
    trainer.config = OmegaConf.create({"trainer": {"total_training_steps": None}})
    OmegaConf.set_struct(trainer.config, True)
    trainer._init_dataloader()
    assert trainer.config.trainer.total_training_steps == 460
