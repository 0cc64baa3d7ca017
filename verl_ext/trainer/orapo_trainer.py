"""V1 trainer mode ``orapo``: OraPO (arXiv 2509.18600) on verl's synchronous trainer.

Select with ``trainer.v1.trainer_mode=orapo`` together with the oracle agent-loop manager (the whole setup is checked
by ``verl_ext.trainer.orapo_config.validate_orapo_setup`` when the trainer is constructed, before workers start).
It is the ``editgrpo`` trainer (metrics, optional DiTPO weights) plus these hooks:

1. ``on_init_end`` installs OraPO's actor loss on the actor workers (``ActorRolloutRefWorker.set_loss_fn``, verl's
   loss-function hook; ``verl_ext.trainer.orapo_loss``);
2. ``_compute_advantage``: verl's configured estimator (``dr_grpo``) runs on the K rollouts of each group only (the
   oracle row must not shift the baseline); the oracle rows get advantage 0; then each prompt's zero-reward rate,
   EMA (kept per dataset ``index``) and mixing weight give the per-row loss inputs (``orapo_*`` fields, written to
   TransferQueue next to the advantages; ``verl_ext.algorithms.orapo.plan_batch``) and the step metrics ``orapo/*``
   (zero-reward rate, mean w, share of prompts in the DPO branch, DPO margin / accuracy / loss from the old
   log-probs, oracle rewards, truncated references, rollouts the reward could not score: ``orapo/unscorable/*``,
   kept out of the zero-reward rate and the rejected responses);
3. ``_save_project_state`` / ``_load_project_state`` keep the EMA state (``orapo_ema.json`` in the step folder, written
   before verl's checkpoint files so that a complete checkpoint always holds it: `verl_ext.trainer.resume`).
4. ``_compute_metrics``: verl's metrics (``critic/score``, ``response_length``, ``perf/*`` ...) and the editgrpo
   metrics are computed over the rollouts, without the oracle rows (whose reward is the reference scored against
   itself); the oracle rows' tokens are therefore not in ``perf/*`` token counts.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Optional

from verl_ext.trainer.orapo_config import TRAINER_MODE, OraPOConfig, validate_orapo_setup
from verl_ext.post_import import when_imported
from verl_ext.trainer.resume import atomic_write_text

logger = logging.getLogger(__name__)

_V1 = "verl.trainer.ppo.v1"
_FIELDS = ["uid", "index", "extra_fields", "rm_scores", "response_mask", "old_log_probs", "ref_log_prob"]
EMA_FILE = "orapo_ema.json"
_trainer_cls: Optional[type] = None


def _plain(value: Any) -> Any:
    if hasattr(value, "data") and not hasattr(value, "shape"):
        value = value.data
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def _invalid(extra: dict) -> bool:
    """The radiology reward's ``invalid`` flag of a trajectory (``reward_extra_info``; absent: scored)."""
    info = extra.get("reward_extra_info")
    value = _plain(info.get("invalid", 0)) if isinstance(info, dict) else 0
    return bool(value) if value is not None else False


def read_batch_rows(keys: list, partition_id: str, tags: list) -> list:
    """The step's trajectories from TransferQueue as ``BatchRow`` s (reward, old-vs-ref log-ratio, oracle flags)."""
    import transfer_queue as tq

    from verl_ext.algorithms.orapo import BatchRow, length_normalised_log_ratio
    from verl_ext.rollout.oracle_worker import ORACLE_FIELD, TRUNCATED_FIELD

    data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=_FIELDS)
    extra = [e if isinstance(e, dict) else {} for e in data.pop("extra_fields").tolist()]
    uids = [str(_plain(u)) for u in data.pop("uid").tolist()]
    index = [_plain(i) for i in data.pop("index").tolist()]
    padded = data.to_padded_tensor()
    mask = padded["response_mask"]
    rewards = (padded["rm_scores"].float() * mask).sum(-1).tolist()
    delta = length_normalised_log_ratio(padded["old_log_probs"].float(), padded["ref_log_prob"].float(), mask).tolist()
    rows = []
    for i in range(len(keys)):
        padding = bool(tags[i].get("is_padding", False)) if tags else False
        if not padding and index[i] is None:
            raise ValueError(f"OraPO: trajectory {keys[i]} has no dataset index (extra_info.index): the per-prompt "
                             "EMA needs a stable prompt id across steps")
        rows.append(BatchRow(uid=uids[i], prompt_id=index[i], reward=float(rewards[i]), delta_old=float(delta[i]),
                             oracle=bool(extra[i].get(ORACLE_FIELD, False)) and not padding,
                             oracle_usable=not bool(extra[i].get(TRUNCATED_FIELD, False)), padding=padding,
                             unscorable=_invalid(extra[i])))
    return rows


def write_row_fields(keys: list, partition_id: str, plan):
    """Write the ``orapo_*`` per-row loss inputs (`verl_ext.trainer.orapo_loss`) to TransferQueue; returns
    TransferQueue's ``KVBatchMeta`` of the rows, whose ``fields`` list every field now stored for them."""
    import transfer_queue as tq
    from tensordict import TensorDict

    fields = {
        "orapo_grpo_weight": plan.grpo_weight[:, None],
        "orapo_dpo_sign": plan.terms.sign[:, None],
        "orapo_dpo_coef": plan.terms.coef[:, None],
        "orapo_dpo_partners": plan.terms.partners,
        "orapo_dpo_partner_mask": plan.terms.partner_mask,
    }
    return tq.kv_batch_put(keys=keys, partition_id=partition_id, fields=TensorDict(fields, batch_size=len(keys)))


def zero_advantages(keys: list, partition_id: str) -> None:
    """Advantages and returns 0 on the oracle rows (they take part in the DPO term only)."""
    import torch
    import transfer_queue as tq
    from tensordict import TensorDict

    if not keys:
        return
    data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=["response_mask"])
    zeros = torch.nested.as_nested_tensor([torch.zeros(int(m.numel())) for m in data["response_mask"].unbind()],
                                          layout=torch.jagged)
    tq.kv_batch_put(keys=keys, partition_id=partition_id,
                    fields=TensorDict({"advantages": zeros, "returns": zeros.clone()}, batch_size=len(keys)))


def _define_trainer_class() -> type:
    from functools import partial

    from verl.trainer.ppo.v1 import register_trainer
    from verl.utils.config import omega_conf_to_dataclass
    from verl.utils.debug import marked_timer

    from verl_ext.algorithms.orapo import ZeroRewardEMA, plan_batch
    from verl_ext.trainer import editgrpo_trainer
    from verl_ext.trainer.orapo_loss import orapo_loss

    editgrpo_trainer._register()
    base = editgrpo_trainer._trainer_cls

    class OraPOTrainer(base):
        """verl's synchronous V1 trainer with OraPO's oracle-educated loss (see the module docstring)."""

        def __init__(self, config, *args, **kwargs):
            self.orapo_cfg: OraPOConfig = validate_orapo_setup(config)
            self.orapo_ema = ZeroRewardEMA(self.orapo_cfg.alpha, self.orapo_cfg.ema_init)
            super().__init__(config, *args, **kwargs)

        def on_init_end(self):
            actor_config = omega_conf_to_dataclass(self.config.actor_rollout_ref.actor)
            self.actor_rollout_wg.set_loss_fn(partial(orapo_loss, config=actor_config, beta=self.orapo_cfg.beta,
                                                          grpo_token_norm=self.orapo_cfg.grpo_token_norm))
            super().on_init_end()

        def _compute_advantage(self, batch, metrics: dict):
            keys, tags = list(batch.keys), list(batch.tags)
            with marked_timer("orapo", self.timing_raw, color="brown"):
                rows = read_batch_rows(keys, batch.partition_id, tags)
            rollout_keys = [k for k, r in zip(keys, rows) if not r.oracle]
            self._orapo_oracle_keys = set(keys) - set(rollout_keys)
            super()._compute_advantage(batch.select_keys(rollout_keys), metrics)
            with marked_timer("orapo", self.timing_raw, color="brown"):
                zero_advantages([k for k, r in zip(keys, rows) if r.oracle], batch.partition_id)
                c = self.orapo_cfg
                plan = plan_batch(rows, self.orapo_ema, int(self.config.actor_rollout_ref.rollout.n), c.negatives,
                                  c.w_min, c.w_max, c.gamma, c.beta, c.zero_tol)
                stored = write_row_fields(keys, batch.partition_id, plan)
            metrics.update(plan.metrics)
            # verl's actor workers read only the fields named in the batch meta (transferqueue_utils.py:309-313),
            # and the meta verl's loop carries was taken before ref_log_prob, the advantages and the orapo_* fields
            # were written (verl's own advantage step returns the meta of its write for this reason).
            batch.fields = stored.fields
            return batch

        def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
            # verl's and the editgrpo metrics describe the rollouts; the oracle rows have their own orapo/* metrics
            oracle = getattr(self, "_orapo_oracle_keys", set())
            rollouts = batch.select_keys([k for k in batch.keys if k not in oracle]) if oracle else batch
            super()._compute_metrics(rollouts, metrics, timing_raw, global_steps, epoch)

        def _save_project_state(self, folder: str) -> None:
            # written before verl's files and the commit file (verl_ext.trainer.resume), never after them
            super()._save_project_state(folder)
            values = [[k, v] for k, v in self.orapo_ema.state_dict()["values"].items()]
            atomic_write_text(os.path.join(folder, EMA_FILE), json.dumps({"values": values}))

        def _load_project_state(self, folder: str) -> None:
            super()._load_project_state(folder)
            path = os.path.join(folder, EMA_FILE)
            if not os.path.exists(path):
                logger.warning(f"OraPO: no {EMA_FILE} in {folder}; the zero-reward EMA starts afresh")
                return
            with open(path) as fh:
                values = {k: v for k, v in json.load(fh)["values"]}
            self.orapo_ema.load_state_dict({"values": values})

    OraPOTrainer.__module__ = __name__
    OraPOTrainer.__qualname__ = "OraPOTrainer"
    return register_trainer(TRAINER_MODE)(OraPOTrainer)


def _register() -> None:
    global _trainer_cls
    if _trainer_cls is None:
        _trainer_cls = _define_trainer_class()


def __getattr__(name: str) -> Any:
    # PEP 562: `from verl_ext.trainer.orapo_trainer import OraPOTrainer` imports verl's V1 trainer on demand.
    if name == "OraPOTrainer":
        import importlib

        importlib.import_module(_V1)
        _register()
        return _trainer_cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


when_imported(_V1, _register)
