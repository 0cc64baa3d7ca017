"""V1 trainer mode ``editgrpo``: verl's synchronous PPO trainer plus sampled-vs-edited training metrics and DiTPO.

Select it with ``trainer.v1.trainer_mode=editgrpo``. It behaves exactly like verl's ``sync`` mode and adds:

1. **Metrics** (`_compute_metrics`): after verl's own metrics, it reads ``uid``, ``extra_fields``, ``rm_scores``,
   ``advantages`` and ``response_mask`` of the step's trajectories from TransferQueue and adds
   `verl_ext.trainer.edit_metrics.compute_edit_metrics` (share of groups edited, edits by kind, tokens inserted,
   reward and each reward component for sampled vs edited, advantage of sampled vs edited, edit time). They reach
   every ``trainer.logger`` backend (W&B, console, file) with verl's own metrics.
2. **DiTPO token weights** (`_compute_advantage`), with ``ditpo.weighting=tfidf``: after the configured
   estimator, advantages are multiplied by DEER's rule-based token weights (`verl_ext.algorithms.ditpo`).
3. **The per-token channel** (`verl_ext.trainer.token_channel_step`): gradient-based DiTPO weights from the reward
   path (``ditpo.weighting=gradient``) and the inserted-token mask for the inserted-token policy losses
   (``actor.policy_loss.loss_mode=inserted_masked|inserted_luffy``, loss installed in ``on_init_end``).
4. **Crash-safe checkpoints, exact resume, stop requests** (`verl_ext.trainer.resume.ResumableTrainerMixin`).
5. **Edit records** (`_log_rollout_data`), only with ``trainer.rollout_data_dir`` set: beside verl's
   ``<step>.jsonl`` generation dump, ``edits_<step>.jsonl`` holds one line per trajectory (uid, session, response
   text, reward, ``is_edited``, the source session and the fired rules of an edited copy), so a run's edits can be
   read back after it (the CPU demo prints its sampled-vs-edited table from them).

Why ``trainer_mode`` is pinned to ``"sync"`` on the instance: verl's ``PPOTrainer`` compares
``self.trainer_mode == "sync"`` to choose the replay buffer (``ReplayBuffer`` vs ``ReplayBufferAsync``), the
dataloader refill, TransferQueue checkpointing and prompt persistence (``trainer_base.py:153, 731, 902, 912, 1004,
1499``). The config value is our registered name, so without the pin our subclass of the sync trainer would silently
take the asynchronous code paths. Per-mode settings are read from ``trainer.v1.sync`` for the same reason.

Import-light: the class is defined and registered (``verl.trainer.ppo.v1.register_trainer``) only when
``verl.trainer.ppo.v1`` is imported, which ``TaskRunnerV1.run`` does right before ``get_trainer_cls``; importing this
module at ``import verl`` costs nothing (see `verl_ext.post_import`). ``EditGRPOTrainer`` is importable
from this module (it imports verl's V1 trainer on first access).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Optional

from verl_ext.post_import import when_imported

logger = logging.getLogger(__name__)

TRAINER_MODE = "editgrpo"
_V1 = "verl.trainer.ppo.v1"
_METRIC_FIELDS = ["uid", "extra_fields", "rm_scores", "advantages", "response_mask"]
_trainer_cls: Optional[type] = None


def fetch_edit_records(keys: list, partition_id: str, tags: Optional[list] = None) -> tuple[list[dict], list[float]]:
    """Read the step's trajectories from TransferQueue as records for `compute_edit_metrics`.

    Returns (records, sequence advantages) for the non-padding trajectories; the sequence advantage is the mean
    token advantage over the response mask (for Dr. GRPO/GRPO every token carries the same value).
    """
    import transfer_queue as tq

    keep = [i for i in range(len(keys)) if not (tags and tags[i].get("is_padding", False))]
    if not keep:
        return [], []
    data = tq.kv_batch_get(keys=[keys[i] for i in keep], partition_id=partition_id, select_fields=_METRIC_FIELDS)
    extra_fields = data.pop("extra_fields").tolist()
    uids = data.pop("uid").tolist()
    padded = data.to_padded_tensor()
    mask = padded["response_mask"].float()
    scores = padded["rm_scores"].float().sum(dim=-1).tolist()
    seq_adv = ((padded["advantages"].float() * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)).tolist()
    records = []
    for uid, score, extra in zip(uids, scores, extra_fields):
        record = dict(extra) if isinstance(extra, dict) else {}
        record["uid"] = uid
        record["reward"] = score
        records.append(record)
    return records, seq_adv


_EDIT_RECORD_FIELDS = ("is_edited", "edit_source_session", "edit_ops", "edit_tokens_inserted", "edit_tokens_kept",
                       "edit_duplicate", "edit_truncated", "edit_error")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def dump_edit_records(keys: list, partition_id: str, tokenizer, path, tags: Optional[list] = None,
                      token_fields: tuple[str, ...] = ()) -> int:
    """Write one JSON line per trajectory of the step (sorted by uid, session) to `path`; returns the line count.
    Padding rows added by verl's batch balancing (tag ``is_padding``) are left out.

    `token_fields`: per-token TransferQueue fields (e.g. ``advantages`` as the loss reads them, after the token
    channel) written with the response's ``token_ids``, one value per response token, so a run's DiTPO weights and
    inserted-token mask can be checked against what reached the actor."""
    import json
    from pathlib import Path

    import transfer_queue as tq

    keys = [k for i, k in enumerate(keys) if not (tags and tags[i].get("is_padding", False))]
    data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=["responses", "rm_scores",
                                                                                 "extra_fields", *token_fields])
    extra_fields = data.pop("extra_fields").tolist()
    rows = []
    for i, key in enumerate(keys):
        uid, session, output = str(key).rsplit("_", 2)
        extra = extra_fields[i] if isinstance(extra_fields[i], dict) else {}
        row = {"key": str(key), "uid": uid, "session": int(session), "output": int(output),
               "response": tokenizer.decode(data["responses"][i].tolist(), skip_special_tokens=True),
               "reward": float(data["rm_scores"][i].float().sum())}
        row.update({f: _jsonable(extra[f]) for f in _EDIT_RECORD_FIELDS if f in extra})
        row["is_edited"] = bool(row.get("is_edited", False))
        row["reward_extra_info"] = _jsonable(extra.get("reward_extra_info") or {})
        if token_fields:
            row["token_ids"] = data["responses"][i].tolist()
            row.update({f: data[f][i].float().tolist() for f in token_fields})
        rows.append(row)
    rows.sort(key=lambda r: (r["uid"], r["session"], r["output"]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


def apply_ditpo_weights(keys: list, partition_id: str, weighting: str, alpha: float) -> dict[str, float]:
    """Multiply the advantages (and returns) stored in TransferQueue by DiTPO token weights; returns metrics."""
    import numpy as np
    import transfer_queue as tq
    from tensordict import TensorDict
    from verl.workers.utils.padding import response_to_nested

    from verl_ext.algorithms.ditpo import WEIGHTINGS, apply_token_weights, tfidf_token_weights

    if weighting not in WEIGHTINGS:
        raise ValueError(f"ditpo.weighting={weighting!r}; expected one of {WEIGHTINGS}")
    if weighting != "tfidf":  # "gradient" comes through the per-token channel (token_channel_step)
        return {}
    data = tq.kv_batch_get(
        keys=keys, partition_id=partition_id, select_fields=["uid", "responses", "response_mask", "advantages"]
    )
    uids = np.array(data.pop("uid").tolist(), dtype=object)
    nested_mask = data["response_mask"]
    padded = data.to_padded_tensor()
    mask = padded["response_mask"]
    weights = tfidf_token_weights(padded["responses"], mask, uids, alpha=alpha)
    advantages = apply_token_weights(padded["advantages"], weights, mask)
    nested = response_to_nested(advantages, nested_mask)
    tq.kv_batch_put(
        keys=keys,
        partition_id=partition_id,
        fields=TensorDict({"advantages": nested, "returns": nested.clone()}, batch_size=len(keys)),
    )
    on_tokens = weights[mask.bool()]
    return {
        "ditpo/weight/mean": on_tokens.mean().item() if on_tokens.numel() else 1.0,
        "ditpo/weight/max": on_tokens.max().item() if on_tokens.numel() else 1.0,
    }


def _define_trainer_class() -> type:
    """Define ``EditGRPOTrainer`` on top of verl's ``PPOTrainerSync`` and register it as ``editgrpo``."""
    from verl.trainer.ppo.v1 import PPOTrainerSync, register_trainer
    from verl.utils.debug import marked_timer

    from verl_ext.trainer import token_channel_step
    from verl_ext.trainer.edit_metrics import compute_edit_metrics
    from verl_ext.trainer.resume import ResumableTrainerMixin

    class EditGRPOTrainer(ResumableTrainerMixin, PPOTrainerSync):
        """verl's synchronous V1 trainer with sampled-vs-edited metrics, optional DiTPO token weights and crash-safe
        checkpoints (`verl_ext.trainer.resume`)."""

        def __init__(self, config, *args, **kwargs):
            from verl_ext.config.startup import check_before_loading
            from verl_ext.cpu.profile import check_cpu_profile

            # Late-failing settings (val_batch_size, wandb credentials, model paths) and a platform/config mismatch
            # fail here, before verl's init() builds resource pools and loads datasets and models.
            check_before_loading(config)
            check_cpu_profile(config)
            super().__init__(config, *args, **kwargs)

        @property
        def trainer_mode(self) -> str:
            # Behave as verl's "sync" mode everywhere verl compares the mode (see the module docstring).
            return "sync"

        @trainer_mode.setter
        def trainer_mode(self, value: str) -> None:
            # PPOTrainer.__init__ assigns config.trainer.v1.trainer_mode ("editgrpo"); the behaviour stays "sync".
            pass

        def _init_dataloader(self):
            # The run's length is known only now (verl: len(dataset) // batch * epochs, unless set); the reward
            # loop, built after this, reads it for share-based reward schedules (DEER's two phases).
            super()._init_dataloader()
            from omegaconf import open_dict

            with open_dict(self.config):
                self.config.trainer.total_training_steps = int(self.total_training_steps)

        def init(self):
            problems = token_channel_step.check_config(self.config)
            if problems:
                raise ValueError("editgrpo trainer:\n  - " + "\n  - ".join(problems))
            super().init()

        def on_init_end(self):
            token_channel_step.install_loss(self)
            super().on_init_end()

        def _compute_advantage(self, batch, metrics: dict):
            batch = super()._compute_advantage(batch, metrics)
            ditpo = self.config.get("ditpo", None) or {}
            weighting = ditpo.get("weighting", "none") or "none"
            if weighting == "tfidf":
                with marked_timer("ditpo", self.timing_raw, color="brown"):
                    metrics.update(
                        apply_ditpo_weights(
                            list(batch.keys), batch.partition_id, weighting, float(ditpo.get("alpha", 4.0))
                        )
                    )
            batch, channel_metrics = token_channel_step.after_advantage(batch, self.config)
            metrics.update(channel_metrics)
            return batch

        def _log_rollout_data(self, batch, timing_raw: dict, rollout_data_dir: str):
            super()._log_rollout_data(batch, timing_raw, rollout_data_dir)
            with marked_timer("dump_edit_records", timing_raw, color="green"):
                dump_edit_records(list(batch.keys), batch.partition_id, self.tokenizer,
                                  os.path.join(rollout_data_dir, f"edits_{self.global_steps}.jsonl"),
                                  list(batch.tags), token_channel_step.token_fields(self.config))

        def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
            super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
            try:
                records, advantages = fetch_edit_records(list(batch.keys), batch.partition_id, list(batch.tags))
                metrics.update(compute_edit_metrics(records, advantages))
            except Exception:  # metrics must never stop a multi-day run; the traceback is in the log every step
                logger.exception("editgrpo trainer: could not compute the sampled-vs-edited metrics")

    EditGRPOTrainer.__module__ = __name__
    EditGRPOTrainer.__qualname__ = "EditGRPOTrainer"
    return register_trainer(TRAINER_MODE)(EditGRPOTrainer)


def _register() -> None:
    global _trainer_cls
    if _trainer_cls is None:
        _trainer_cls = _define_trainer_class()


def __getattr__(name: str) -> Any:
    # PEP 562: `from verl_ext.trainer.editgrpo_trainer import EditGRPOTrainer` imports verl's V1 trainer on demand.
    if name == "EditGRPOTrainer":
        import importlib

        importlib.import_module(_V1)
        _register()
        return _trainer_cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


when_imported(_V1, _register)
