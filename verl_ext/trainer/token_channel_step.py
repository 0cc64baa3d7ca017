"""The trainer side of the per-token channel (`verl_ext.token_channel`): advantages and the loss.

Called by the ``editgrpo`` V1 trainer (`verl_ext.trainer.editgrpo_trainer`):

* `after_advantage` (end of ``_compute_advantage``): reads the step's trajectories' ``extra_fields`` from
  TransferQueue, decodes each trajectory's channel and

  - with ``ditpo.weighting=gradient``: multiplies the advantages (and returns) by the ``ditpo_weight`` array
    computed in the reward path (DEER Eq. 6 with Eq. 12's weights; 1 where a trajectory has none);
  - with ``actor.policy_loss.loss_mode`` one of `verl_ext.algorithms.offpolicy.LOSS_MODES`: writes the
    inserted-token mask as the TransferQueue field ``INSERTED_FIELD`` and adds it to the batch meta's ``fields``
    (the fields verl's workers fetch), so it reaches the actor's micro-batches with every other field;

* `install_loss` (``on_init_end``): for those loss modes, replaces the actor's loss function with `channel_ppo_loss`
  through the worker group's ``set_loss_fn`` (the call verl's own trainer uses for the critic). It is verl's
  ``ppo_loss`` unchanged, run inside `offpolicy_context` so the registered policy loss sees the micro-batch's mask.

`check_config` is the start-up check (also run by ``verl_ext.config.dry_run``).
"""
from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

logger = logging.getLogger(__name__)

INSERTED_FIELD = "verl_ext_inserted"


def _loss_mode(config) -> str:
    return str(config.actor_rollout_ref.actor.get("policy_loss", {}).get("loss_mode", "vanilla"))


def _settings(config) -> tuple[str, str, float]:
    ditpo = config.get("ditpo", None) or {}
    inserted = config.get("inserted_tokens", None) or {}
    from verl_ext.algorithms.offpolicy import DEFAULT_GAMMA

    weighting = str(ditpo.get("weighting", "none") or "none")
    return weighting, _loss_mode(config), float(inserted.get("gamma", DEFAULT_GAMMA))


def check_config(config) -> list[str]:
    """Problems that would make the channel's consumers fail or silently do nothing; [] when fine."""
    from verl_ext.algorithms.offpolicy import LOSS_MODES

    weighting, loss_mode, gamma = _settings(config)
    problems = []
    trainer_mode = config.trainer.get("v1", {}).get("trainer_mode", None)
    if weighting == "gradient":
        rm = config.reward.reward_manager
        if not (rm.get("source", None) == "register" and rm.get("name", None) == "radiology"):
            problems.append("ditpo.weighting=gradient: the weights are computed by the radiology reward manager "
                            "(reward.reward_manager.name=radiology)")
    if loss_mode in LOSS_MODES:
        if trainer_mode != "editgrpo":
            problems.append(f"actor_rollout_ref.actor.policy_loss.loss_mode={loss_mode} needs "
                            "trainer.v1.trainer_mode=editgrpo (it supplies the inserted-token mask)")
        if config.get("distillation", None) and config.distillation.get("enabled", False):
            problems.append(f"policy_loss.loss_mode={loss_mode} cannot be combined with distillation")
        if gamma <= 0:
            problems.append(f"inserted_tokens.gamma={gamma}: LUFFY shaping needs gamma > 0")
    return problems


def token_fields(config) -> tuple[str, ...]:
    """The per-token fields the channel writes for the actor (``advantages`` weighted, ``INSERTED_FIELD``), for the
    trainer's edit-record dump; () when the channel is off."""
    from verl_ext.algorithms.offpolicy import LOSS_MODES

    weighting, loss_mode, _ = _settings(config)
    return (("advantages",) if weighting == "gradient" else ()) + ((INSERTED_FIELD,) if loss_mode in LOSS_MODES
                                                                    else ())


def channel_ppo_loss(config, model_output, data, dp_group=None, gamma: float = 0.1):
    """verl's ``ppo_loss`` with the micro-batch's inserted-token mask visible to the registered policy loss."""
    from verl.workers.utils.losses import ppo_loss

    from verl_ext.algorithms.offpolicy import OffPolicyBatch, offpolicy_context

    if INSERTED_FIELD not in data:
        raise KeyError(f"actor micro-batch has no {INSERTED_FIELD!r} field: the editgrpo trainer writes it after the "
                       "advantages (verl_ext.trainer.token_channel_step.after_advantage)")
    inserted = data.select(INSERTED_FIELD, "response_mask").to_padded_tensor()[INSERTED_FIELD]
    with offpolicy_context(OffPolicyBatch(inserted=inserted, gamma=gamma)):
        return ppo_loss(config, model_output, data, dp_group)


def install_loss(trainer) -> bool:
    """Give the actor `channel_ppo_loss` when an inserted-token loss mode is configured; True if installed."""
    from verl.utils.config import omega_conf_to_dataclass

    from verl_ext.algorithms.offpolicy import LOSS_MODES

    _, loss_mode, gamma = _settings(trainer.config)
    if loss_mode not in LOSS_MODES:
        return False
    actor_config = omega_conf_to_dataclass(trainer.config.actor_rollout_ref.actor)
    trainer.actor_rollout_wg.set_loss_fn(partial(channel_ppo_loss, config=actor_config, gamma=gamma))
    logger.info("token channel: actor loss = ppo_loss with policy_loss.loss_mode=%s (gamma=%s)", loss_mode, gamma)
    return True


def after_advantage(batch, config):
    """Apply the channel to the stored advantages / write the inserted mask (see the module docstring).

    `batch`: the step's ``KVBatchMeta``. Returns (the batch meta to hand on, metrics). The returned meta lists the
    fields written here: verl's workers fetch only ``meta.fields`` from TransferQueue
    (``transferqueue_utils.async_kv_batch_meta2batch_meta``), so a field missing there never reaches the actor.
    """
    import dataclasses

    import transfer_queue as tq
    from tensordict import TensorDict
    from verl.workers.utils.padding import response_to_nested

    from verl_ext import token_channel
    from verl_ext.algorithms.ditpo import apply_token_weights
    from verl_ext.algorithms.offpolicy import LOSS_MODES

    weighting, loss_mode, _ = _settings(config)
    want_weights, want_inserted = weighting == "gradient", loss_mode in LOSS_MODES
    if not (want_weights or want_inserted):
        return batch, {}
    keys, partition_id = list(batch.keys), batch.partition_id
    start = time.perf_counter()
    fields = ["extra_fields", "response_mask"] + (["advantages"] if want_weights else [])
    data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=fields)
    extra = data.pop("extra_fields").tolist()
    nested_mask = data["response_mask"]
    lengths = nested_mask.offsets().diff().tolist()
    padded = data.to_padded_tensor()
    mask = padded["response_mask"]
    width = mask.shape[1]
    channels = [token_channel.read(e, n) for e, n in zip(extra, lengths)]
    out, metrics = {}, {}
    if want_weights:
        weights, present = token_channel.stack(channels, token_channel.DITPO_WEIGHT, lengths, width, fill=1.0)
        advantages = apply_token_weights(padded["advantages"], weights, mask)
        out["advantages"] = response_to_nested(advantages, nested_mask)
        out["returns"] = out["advantages"].clone()
        on = weights[mask.bool()]
        metrics.update({
            "ditpo/weighted_share": present / max(1, len(keys)),
            "ditpo/weight/mean": on.mean().item() if on.numel() else 1.0,
            "ditpo/weight/max": on.max().item() if on.numel() else 1.0,
        })
    if want_inserted:
        inserted, _ = token_channel.stack(channels, token_channel.INSERTED, lengths, width, fill=0.0)
        out[INSERTED_FIELD] = response_to_nested(inserted * mask.float(), nested_mask)
        metrics["edit/inserted_token_share"] = float(inserted[mask.bool()].mean()) if mask.any() else 0.0
    tq.kv_batch_put(keys=keys, partition_id=partition_id, fields=TensorDict(out, batch_size=len(keys)))
    if batch.fields is not None:
        batch = dataclasses.replace(batch, fields=list(dict.fromkeys([*batch.fields, *out])))
    metrics["timing_s/token_channel"] = time.perf_counter() - start
    return batch, metrics
