"""Policy losses for the inserted (off-policy) tokens of edited responses, registered in verl's policy-loss registry.

An EditGRPO edit splices reference sentences into a sampled response: the kept tokens were sampled by the policy,
the inserted ones were not (they have no behaviour-policy log-probs; verl recomputes ``old_log_probs`` for them
with the current actor, so their PPO ratio starts at 1). Three treatments, per token (peers.md §2.3):

* **plain** — as the EditGRPO paper: every token is an ordinary PPO token. That is verl's own
  ``policy_loss.loss_mode=vanilla``; nothing to register.
* ``inserted_masked`` — inserted tokens are removed from the policy-gradient term (their clipped-PPO loss is not
  aggregated); sampled tokens are vanilla PPO. With ``token-mean`` and verl's global token count the normaliser still
  counts them (verl computes it from ``response_mask`` before the loss); with ``seq-mean-token-sum-norm`` (a
  constant normaliser) the term is exactly the sampled tokens' PPO loss.
* ``inserted_luffy`` — LUFFY's policy shaping for off-policy tokens (Yan et al. 2025, "Learning to Reason under
  Off-Policy Guidance", Sec. 3): the behaviour probability is taken as 1, so the ratio is ``pi_theta`` itself, shaped
  by ``f(p) = p / (p + gamma)`` and **not clipped**: loss ``-A * f(pi_theta(o_t))``; sampled tokens keep clipped
  PPO. ``gamma = 0.1`` is LUFFY's released setting (``off_policy_reshape="p_div_p_0.1"``).

The clipped PPO part is verl's ``compute_policy_loss_vanilla`` term for term (ratio clamp of the log-ratio to
[-20, 20], clip ``[1 - clip_ratio_low, 1 + clip_ratio_high]``, dual clip ``clip_ratio_c`` for negative advantages;
tested equal on responses without inserted tokens).

verl's ``ppo_loss`` hands a policy loss only log-probs, advantages and masks, so the inserted-token mask of the
micro-batch comes from the per-token channel through `offpolicy_context`, which the loss wrapper of
`verl_ext.trainer.token_channel_step` sets around verl's ``ppo_loss``. Without it these losses raise.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch

# the post-import hook the advantage estimators register with (registration waits for verl's core_algos import)
from verl_ext.algorithms.advantages import when_imported

INSERTED_MASKED = "inserted_masked"
INSERTED_LUFFY = "inserted_luffy"
LOSS_MODES = (INSERTED_MASKED, INSERTED_LUFFY)
DEFAULT_GAMMA = 0.1  # LUFFY's released off_policy_reshape "p_div_p_0.1"


@dataclass(frozen=True)
class OffPolicyBatch:
    inserted: torch.Tensor  # (bs, L) 1.0 on inserted tokens, padded like response_mask
    gamma: float = DEFAULT_GAMMA


_CURRENT: contextvars.ContextVar[Optional[OffPolicyBatch]] = contextvars.ContextVar("verl_ext_offpolicy", default=None)


@contextlib.contextmanager
def offpolicy_context(batch: OffPolicyBatch) -> Iterator[None]:
    token = _CURRENT.set(batch)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def luffy_shaping(prob: torch.Tensor, gamma: float = DEFAULT_GAMMA) -> torch.Tensor:
    """``f(p) = p / (p + gamma)`` (LUFFY's policy shaping)."""
    if gamma <= 0:
        raise ValueError(f"LUFFY shaping needs gamma > 0, got {gamma}")
    return prob / (prob + gamma)


def clipped_ppo_token_losses(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float,
    clip_high: float,
    clip_c: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """verl's vanilla (dual-clip) PPO loss per token; also the log-ratio and the "clipped" indicator."""
    log_ratio = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(log_ratio)
    loss1 = -advantages * ratio
    loss2 = -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    clipped1 = torch.maximum(loss1, loss2)
    clipped2 = torch.min(-advantages * clip_c, clipped1)
    return torch.where(advantages < 0, clipped2, clipped1), log_ratio, torch.gt(loss2, loss1).float()


def inserted_token_losses(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    inserted: torch.Tensor,
    mode: str,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_c: float = 3.0,
    gamma: float = DEFAULT_GAMMA,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token loss matrix and the mask to aggregate it over, for ``mode`` in `LOSS_MODES`."""
    if mode not in LOSS_MODES:
        raise ValueError(f"mode={mode!r}: expected one of {LOSS_MODES}")
    mask = response_mask.bool()
    off = inserted.to(log_prob.device).bool() & mask
    on = mask & ~off
    ppo, log_ratio, clipped = clipped_ppo_token_losses(old_log_prob, log_prob, advantages, clip_low, clip_high, clip_c)
    if mode == INSERTED_MASKED:
        losses, agg_mask = torch.where(off, torch.zeros_like(ppo), ppo), on
    else:
        shaped = -advantages * luffy_shaping(torch.exp(log_prob), gamma)
        losses, agg_mask = torch.where(off, shaped, ppo), mask
    stats = {"log_ratio": log_ratio, "clipped": clipped, "on": on, "off": off}
    return losses, agg_mask, stats


def _masked_mean(x: torch.Tensor, m: torch.Tensor) -> float:
    m = m.float()
    return float((x * m).sum() / m.sum().clamp(min=1.0))


def _make_loss(mode: str):
    def policy_loss(
        old_log_prob: torch.Tensor,
        log_prob: torch.Tensor,
        advantages: torch.Tensor,
        response_mask: torch.Tensor,
        loss_agg_mode: str = "token-mean",
        config: Optional[Any] = None,
        rollout_is_weights: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        from verl.trainer.ppo.core_algos import agg_loss

        batch = _CURRENT.get()
        if batch is None:
            raise RuntimeError(
                f"policy_loss.loss_mode={mode}: no inserted-token mask for this micro-batch. It is set by the "
                "editgrpo trainer's loss wrapper (trainer.v1.trainer_mode=editgrpo, verl_ext.trainer."
                "token_channel_step); use loss_mode=vanilla for the plain treatment."
            )
        if batch.inserted.shape != response_mask.shape:
            raise ValueError(
                f"inserted mask {tuple(batch.inserted.shape)} vs response_mask {tuple(response_mask.shape)}"
            )
        clip = config.clip_ratio
        low = config.clip_ratio_low if config.clip_ratio_low is not None else clip
        high = config.clip_ratio_high if config.clip_ratio_high is not None else clip
        losses, agg_mask, st = inserted_token_losses(
            old_log_prob, log_prob, advantages, response_mask, batch.inserted, mode,
            clip_low=low, clip_high=high, clip_c=config.get("clip_ratio_c", 3.0), gamma=batch.gamma,
        )
        if rollout_is_weights is not None:
            losses = losses * rollout_is_weights
        loss = agg_loss(loss_mat=losses, loss_mask=agg_mask, loss_agg_mode=loss_agg_mode, **config.global_batch_info)
        metrics = {
            "actor/ppo_kl": _masked_mean(-st["log_ratio"].detach(), st["on"]),
            "actor/pg_clipfrac": _masked_mean(st["clipped"], st["on"]),
            "actor/inserted_token_share": _masked_mean(st["off"].float(), response_mask.bool()),
        }
        return loss, metrics

    policy_loss.__name__ = f"compute_policy_loss_{mode}"
    return policy_loss


def _register() -> None:
    from verl.trainer.ppo.core_algos import register_policy_loss

    for mode in LOSS_MODES:
        register_policy_loss(mode)(_make_loss(mode))


when_imported("verl.trainer.ppo.core_algos", _register)
