"""The orapo trainer mode: registration and the EMA state across checkpoint save / resume."""
import pytest
from omegaconf import OmegaConf


@pytest.fixture()
def trainer_cls():
    from verl_ext.trainer.orapo_trainer import OraPOTrainer

    return OraPOTrainer


def test_registered_as_orapo_on_top_of_editgrpo(trainer_cls):
    from verl.trainer.ppo.v1 import get_trainer_cls

    from verl_ext.trainer import editgrpo_trainer

    assert get_trainer_cls("orapo") is trainer_cls
    assert issubclass(trainer_cls, editgrpo_trainer._trainer_cls)


def test_ema_survives_save_and_resume(trainer_cls, tmp_path, monkeypatch):
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    from verl_ext.algorithms.orapo import ZeroRewardEMA

    config = OmegaConf.create({"trainer": {"default_local_dir": str(tmp_path), "resume_mode": "auto",
                                           "resume_from_path": None}})
    monkeypatch.setattr(PPOTrainer, "_save_checkpoint", lambda self: None)
    saver = object.__new__(trainer_cls)
    saver.config, saver.global_steps = config, 7
    saver.orapo_ema = ZeroRewardEMA()
    saver.orapo_ema.update(3, 1.0)
    saver.orapo_ema.update("study-9", 0.5)
    saver._save_checkpoint()
    assert (tmp_path / "global_step_7" / "orapo_ema.json").is_file()

    def fake_load(self):
        self.global_steps = 7

    monkeypatch.setattr(PPOTrainer, "_load_checkpoint", fake_load)
    loader = object.__new__(trainer_cls)
    loader.config = config
    loader.orapo_ema = ZeroRewardEMA()
    loader._load_checkpoint()
    assert loader.orapo_ema.get(3) == 1.0 and loader.orapo_ema.get("study-9") == 0.5
    assert loader.orapo_ema.update(3, 0.0) == pytest.approx(0.5)  # the history continues


def test_inserted_token_loss_fails_at_construction(trainer_cls):
    """OraPO's on_init_end installs its loss, then the editgrpo base's would install the inserted-token loss over
    it: the trainer refuses the combination in its constructor, before verl builds workers or loads models."""
    from verl_ext.trainer.orapo_config import MANAGER_CLASS

    config = OmegaConf.create({
        "trainer": {"v1": {"trainer_mode": "orapo"}},
        "actor_rollout_ref": {"rollout": {"n": 9, "agent": {"agent_loop_manager_class": MANAGER_CLASS}},
                              "actor": {"loss_agg_mode": "seq-mean-token-sum-norm", "use_kl_loss": True,
                                        "policy_loss": {"loss_mode": "inserted_luffy"}}},
    })
    with pytest.raises(ValueError, match="loss_mode=inserted_luffy: .*OraPO has no edited responses"):
        trainer_cls(config)


def test_advantage_step_hands_the_actor_every_stored_field(trainer_cls, monkeypatch):
    """verl's actor workers fetch only the fields the batch meta names (``verl/utils/transferqueue_utils.py``); the
    meta verl's loop passes in predates ref_log_prob, the advantages and the orapo_* fields, so the advantage step must
    return a meta naming them (main_ppo failed with 'the micro-batch lacks ...' before), keeping keys and extra_info."""
    from transfer_queue import KVBatchMeta

    from verl_ext.algorithms.orapo import BatchRow, ZeroRewardEMA
    from verl_ext.trainer import editgrpo_trainer, orapo_trainer
    from verl_ext.trainer.orapo_config import OraPOConfig

    keys = ["u_0_0", "u_1_0", "u_2_0"]
    rows = [BatchRow("u", 0, 0.0, 0.0), BatchRow("u", 0, 0.0, 0.0), BatchRow("u", 0, 1.0, 0.0, oracle=True)]
    stored = KVBatchMeta(keys=keys, tags=[{}] * 3, partition_id="train",
                         fields=["responses", "ref_log_prob", "advantages", "orapo_grpo_weight"])
    estimated = []
    monkeypatch.setattr(orapo_trainer, "read_batch_rows", lambda k, pid, tags: rows)
    monkeypatch.setattr(orapo_trainer, "zero_advantages", lambda k, pid: None)
    monkeypatch.setattr(orapo_trainer, "write_row_fields", lambda k, pid, plan: stored)
    monkeypatch.setattr(editgrpo_trainer._trainer_cls, "_compute_advantage",
                        lambda self, batch, metrics: estimated.append(batch.keys) or batch)
    trainer = object.__new__(trainer_cls)
    trainer.config = OmegaConf.create({"actor_rollout_ref": {"rollout": {"n": 3}}})
    trainer.timing_raw, trainer.orapo_cfg, trainer.orapo_ema = {}, OraPOConfig(), ZeroRewardEMA()
    batch = KVBatchMeta(keys=keys, tags=[{}] * 3, partition_id="train", fields=["responses"],
                        extra_info={"temperature": 1.0})
    metrics = {}
    out = trainer._compute_advantage(batch, metrics)
    assert out.fields == stored.fields and out.keys == keys and out.extra_info == {"temperature": 1.0}
    assert estimated == [keys[:2]]  # verl's estimator on the K rollouts only
    assert metrics["orapo/dpo_share"] == 1.0


def test_reward_invalid_flag_marks_a_rollout_unscorable():
    import numpy as np

    from verl_ext.trainer.orapo_trainer import _invalid

    assert _invalid({"reward_extra_info": {"invalid": 1, "invalid_reason": "reference_without_present_labels"}})
    assert _invalid({"reward_extra_info": {"invalid": np.int64(1)}})
    assert not _invalid({"reward_extra_info": {"invalid": 0}}) and not _invalid({})
