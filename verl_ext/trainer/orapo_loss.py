"""OraPO's actor loss for verl's engine workers: ``(1 - w_i) * L_GRPO,i + w_i * L_DPO,i``, averaged over prompts.

verl's actor calls ``loss_fn(model_output=..., data=micro_batch, dp_group=...)`` with the loss installed by
``ActorRolloutRefWorker.set_loss_fn`` (default ``partial(verl.workers.utils.losses.ppo_loss, config=actor_config)``).
The ``orapo`` trainer installs ``partial(orapo_loss, config=actor_config, beta=...)`` instead (its ``on_init_end``
hook), because a policy loss registered with ``core_algos.register_policy_loss`` sees neither the reference
log-probs nor per-sample data, and the DPO term needs both.

Per-row inputs, written to TransferQueue by the trainer's advantage step and reaching the loss with every micro-batch
(verl ships all fields of a trajectory to the actor):

* ``orapo_grpo_weight`` (1,): ``(1 - w_i) * n / (n - 1)`` on the K = n - 1 rollouts of prompt i, 0 on its oracle row
  and on verl's padding rows. The GRPO branch is verl's configured policy loss (``actor.policy_loss.loss_mode``,
  Dr. GRPO aggregation) on the advantages times this weight, plus the KL and entropy terms weighted the same way.
  ``n / (n - 1)`` undoes verl's normaliser, which counts the oracle row in ``global_batch_size``. Exact for policy
  losses that are positively homogeneous in the advantage (vanilla/dual-clip PPO, GSPO, CISPO, ...).
* ``orapo_dpo_sign``, ``orapo_dpo_coef`` (1,), ``orapo_dpo_partners``, ``orapo_dpo_partner_mask`` (n - 1,): the
  per-row decomposition of ``w_i * LN-DPO`` (``verl_ext.algorithms.orapo.dpo_row_terms``).

Both terms are sums over rows divided by verl's ``global_batch_size`` (times ``dp_size``), so micro-batching, data
parallelism and gradient accumulation see one loss, as for ``ppo_loss``.

The GRPO branch's per-sequence token sums are divided by ``grpo_token_norm`` (``orapo.grpo_token_norm``), not by
``actor.loss_scale_factor``: verl sets that to ``max_response_length``, and the LN-DPO term (length-normalised by
construction) is not divided by it, so with it the GRPO/DPO balance that ``w_i`` sets would change with the response
length. With ``grpo_token_norm = loss_scale_factor`` the GRPO branch is verl's ``ppo_loss`` term for term.
"""
from __future__ import annotations

from typing import Any

import torch

from verl_ext.algorithms.orapo import (
    DEFAULT_BETA,
    DEFAULT_GRPO_TOKEN_NORM,
    dpo_row_loss,
    length_normalised_log_ratio,
)

GRPO_WEIGHT = "orapo_grpo_weight"
DPO_FIELDS = ("orapo_dpo_sign", "orapo_dpo_coef", "orapo_dpo_partners", "orapo_dpo_partner_mask")
ROW_FIELDS = (GRPO_WEIGHT, *DPO_FIELDS)


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def orapo_loss(config, model_output, data, dp_group=None, beta: float = DEFAULT_BETA,
               grpo_token_norm: float = DEFAULT_GRPO_TOKEN_NORM) -> tuple[torch.Tensor, dict]:
    """verl loss-function signature; see the module docstring. ``config`` is verl's ``ActorConfig``."""
    from verl.trainer.ppo.core_algos import agg_loss, get_policy_loss_fn, kl_penalty
    from verl.utils.metric import AggregationType, Metric
    from verl.workers.utils.padding import no_padding_2_padding

    missing = [f for f in ("ref_log_prob", *ROW_FIELDS) if f not in data.keys()]
    if missing:
        raise KeyError(f"orapo_loss: the micro-batch lacks {missing}; OraPO needs trainer.v1.trainer_mode=orapo "
                       "(per-row fields) and the reference policy (actor.use_kl_loss=True)")
    log_prob = no_padding_2_padding(model_output["log_probs"], data)
    entropy = model_output.get("entropy", None)
    if entropy is not None:
        entropy = no_padding_2_padding(entropy, data)

    info = config.global_batch_info
    info["dp_size"] = data["dp_size"]
    info["batch_num_tokens"] = data["batch_num_tokens"]
    info["global_batch_size"] = data["global_batch_size"]
    info["loss_scale_factor"] = grpo_token_norm  # not config.loss_scale_factor: see the module docstring
    aggregation = AggregationType.SUM  # every term is normalised by the global batch (as in ppo_loss)

    fields = ["response_mask", "old_log_probs", "advantages", "ref_log_prob", *ROW_FIELDS]
    if "rollout_is_weights" in data.keys():
        fields.append("rollout_is_weights")
    batch = data.select(*fields).to_padded_tensor()
    mask = batch["response_mask"].to(bool)
    grpo_weight = _rows(batch[GRPO_WEIGHT]).float()[:, 0].to(log_prob.device)
    grpo_mask = mask & (grpo_weight > 0)[:, None]
    token_weight = grpo_weight[:, None].to(log_prob.dtype)

    policy_loss_fn = get_policy_loss_fn(config.policy_loss.get("loss_mode", "vanilla"))
    pg_loss, pg_metrics = policy_loss_fn(
        old_log_prob=batch["old_log_probs"],
        log_prob=log_prob,
        advantages=batch["advantages"] * token_weight,
        response_mask=grpo_mask,
        loss_agg_mode=config.loss_agg_mode,
        config=config,
        rollout_is_weights=batch.get("rollout_is_weights", None),
    )
    metrics: dict[str, Any] = dict(Metric.from_dict(pg_metrics, aggregation=AggregationType.MEAN))
    metrics["actor/pg_loss"] = Metric(value=pg_loss, aggregation=aggregation)
    loss = pg_loss
    if entropy is not None:
        entropy_loss = agg_loss(loss_mat=entropy * token_weight, loss_mask=grpo_mask,
                                loss_agg_mode=config.loss_agg_mode, **info)
        loss = loss - config.entropy_coeff * entropy_loss
        metrics["actor/entropy_loss"] = Metric(value=entropy_loss, aggregation=aggregation)
    ref_log_prob = batch["ref_log_prob"]
    if config.use_kl_loss:
        kld = kl_penalty(logprob=log_prob, ref_logprob=ref_log_prob, kl_penalty=config.kl_loss_type)
        kl_loss = agg_loss(loss_mat=kld * token_weight, loss_mask=grpo_mask, loss_agg_mode=config.loss_agg_mode,
                           **info)
        loss = loss + kl_loss * config.kl_loss_coef
        metrics["kl_loss"] = Metric(value=kl_loss, aggregation=aggregation)
        metrics["kl_coef"] = config.kl_loss_coef

    sign, coef = (_rows(batch[k]).float()[:, 0] for k in DPO_FIELDS[:2])
    partners, partner_mask = (_rows(batch[k]).float() for k in DPO_FIELDS[2:])
    delta = length_normalised_log_ratio(log_prob.float(), ref_log_prob.float(), mask)
    rows = dpo_row_loss(delta, sign, coef, partners, partner_mask, beta=beta)
    global_batch_size = info["global_batch_size"] or mask.shape[0]
    dpo_loss = rows.sum() / global_batch_size * info["dp_size"]
    loss = loss + dpo_loss.to(loss.dtype)
    metrics["actor/orapo_dpo_surrogate"] = Metric(value=dpo_loss.detach(), aggregation=aggregation)
    return loss, metrics
