"""The ``editgrpo`` V1 trainer: lazy registration, sync behaviour, and its TransferQueue glue."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

_PROBE = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
import verl
import verl_ext.algorithms.advantages, verl_ext.trainer.editgrpo_trainer
light = {m: m in sys.modules for m in ("verl.trainer.ppo.core_algos", "verl.trainer.ppo.v1")}

from hydra import compose, initialize_config_dir
from verl.trainer.ppo.v1 import PPOTrainerSync, get_trainer_cls, register_trainer
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
from verl_ext.config import CONFIG_DIR

cls = get_trainer_cls("editgrpo")
with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
    cfg = compose(config_name="editgrpo_trainer",
                  overrides=["data.train_files=a", "data.val_files=b", "actor_rollout_ref.model.path=/x",
                             # no model paths here: the trainer's start-up check would (rightly) refuse them
                             "editgrpo.scheme=none", "reward.reward_manager.name=naive"])
trainer = cls(cfg)

# Without the pin, a subclass of the sync trainer registered under another name takes verl's async paths.
@register_trainer("unpinned_probe")
class Unpinned(PPOTrainerSync):
    pass

cfg.trainer.v1.trainer_mode = "unpinned_probe"
unpinned = Unpinned(cfg)
print(json.dumps({
    "light": light,
    "module": cls.__module__, "name": cls.__qualname__, "is_sync_subclass": issubclass(cls, PPOTrainerSync),
    "same_as_attr": cls is verl_ext.trainer.editgrpo_trainer.EditGRPOTrainer,
    "mode": trainer.trainer_mode, "buffer": type(trainer.replay_buffer).__name__,
    "buffer_mode": trainer.replay_buffer.trainer_mode, "parameter_sync_step": trainer.parameter_sync_step,
    "unpinned_buffer": type(unpinned.replay_buffer).__name__,
}))
"""


@pytest.fixture(scope="module")
def probe() -> dict:
    """One fresh interpreter (about 40 s on 2 cores): import-light registration, then a trainer built on CPU."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL")}
    env["VERL_USE_EXTERNAL_PLUGINS"] = "none"  # this module alone, whatever else the plugin list holds
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_plugin_import_does_not_import_verl_registries(probe):
    assert probe["light"] == {"verl.trainer.ppo.core_algos": False, "verl.trainer.ppo.v1": False}


@pytest.mark.slow
def test_registered_when_v1_is_imported(probe):
    assert probe["module"] == "verl_ext.trainer.editgrpo_trainer" and probe["name"] == "EditGRPOTrainer"
    assert probe["is_sync_subclass"] and probe["same_as_attr"]


@pytest.mark.slow
def test_behaves_as_verl_sync_mode(probe):
    assert probe["mode"] == "sync" and probe["buffer"] == "ReplayBuffer" and probe["buffer_mode"] == "sync"
    assert probe["parameter_sync_step"] == 1
    # the reason for the pin: verl compares trainer_mode == "sync" to pick its synchronous code paths
    assert probe["unpinned_buffer"] == "ReplayBufferAsync"


@pytest.mark.slow
def test_transfer_queue_glue():
    """fetch_edit_records and apply_ditpo_weights against a real local TransferQueue (Ray, SimpleStorage)."""
    ray = pytest.importorskip("ray")
    torch = pytest.importorskip("torch")
    import transfer_queue as tq
    from omegaconf import OmegaConf
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    from verl_ext.trainer.edit_metrics import compute_edit_metrics
    from verl_ext.trainer.editgrpo_trainer import apply_ditpo_weights, fetch_edit_records

    ray_dir = tempfile.mkdtemp(prefix="vxr")  # short: Ray's AF_UNIX socket paths are limited to 107 bytes
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=ray_dir)
    try:
        tq.init(OmegaConf.create({"backend": {"storage_backend": "SimpleStorage",
                                              "SimpleStorage": {"total_storage_size": 1000,
                                                                "num_data_storage_units": 1}}}))
        rows, keys = [], []
        for g, uid in enumerate(["u1", "u2"]):
            for s in range(2):  # session 0 sampled, session 1 its edited copy (one extra, distinctive token)
                length = 3 + s
                tokens = torch.tensor([7, 8, 9] + ([40 + g] if s else []))
                rows.append({
                    "uid": uid,
                    "responses": tokens,
                    "response_mask": torch.ones(length, dtype=torch.int64),
                    "rm_scores": torch.cat([torch.zeros(length - 1), torch.tensor([1.0 + s + g])]),
                    "advantages": torch.full((length,), s - 0.5),
                    "returns": torch.full((length,), s - 0.5),
                    "extra_fields": {"is_edited": bool(s), "edit_ops": ["fn_append"] if s else [],
                                     "edit_tokens_inserted": s, "reward_extra_info": {"ratescore": 0.25 + s / 2}},
                })
                keys.append(f"{uid}_{s}_0")
        pad_key = "pad_0_0"  # a padding row added by _balance_batch: excluded from the metrics
        rows.append(dict(rows[0], uid="pad"))
        keys.append(pad_key)
        tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(rows),
                        tags=[{"status": "success"}] * len(keys))
        tags = [{}] * 4 + [{"is_padding": True}]

        records, advantages = fetch_edit_records(keys, "train", tags)
        assert [r["uid"] for r in records] == ["u1", "u1", "u2", "u2"]
        assert [r["reward"] for r in records] == [1.0, 2.0, 2.0, 3.0]
        assert advantages == [-0.5, 0.5, -0.5, 0.5]
        metrics = compute_edit_metrics(records, advantages)
        assert metrics["edit/groups_edited_share"] == 1.0 and metrics["edit/ops/fn_append"] == 2.0
        assert metrics["edited/reward/mean"] == 2.5 and metrics["sampled/ratescore/mean"] == 0.25

        out = apply_ditpo_weights(keys[:4], "train", "tfidf", alpha=4.0)
        stored = tq.kv_batch_get(keys=keys[:4], partition_id="train", select_fields=["advantages", "returns"])
        adv = stored["advantages"].to_padded_tensor(0.0)
        # only the edited copy's extra token is distinctive in its group: TF 1/4, IDF ln 2
        boost = 1 + 4.0 * 0.25 * torch.log(torch.tensor(2.0))
        torch.testing.assert_close(adv[1], torch.tensor([0.5, 0.5, 0.5, 0.5 * boost.item()]))
        torch.testing.assert_close(adv[0, :3], torch.tensor([-0.5, -0.5, -0.5]))
        torch.testing.assert_close(stored["returns"].to_padded_tensor(0.0), adv)
        assert out["ditpo/weight/max"] == pytest.approx(boost.item())
        assert apply_ditpo_weights(keys[:4], "train", "none", alpha=4.0) == {}
        with pytest.raises(ValueError):
            apply_ditpo_weights(keys[:4], "train", "chexbert", alpha=4.0)
    finally:
        try:
            tq.close()
        finally:
            ray.shutdown()
            shutil.rmtree(ray_dir, ignore_errors=True)
