"""Per-step training metrics that split a GRPO group into sampled and edited responses (pure; no verl, no torch).

verl's V1 trainer logs rewards and advantages over the whole batch and never logs the reward components. For
EditGRPO that hides what matters: edited copies carry reference sentences, so their rewards are inflated and a
mixed mean says little (the authors' runs logged only the mixture, editgrpo_reference.md §7.3). `compute_edit_metrics`
takes one record per trajectory and returns, with W&B-friendly sections:

``edit/*``
    ``edited_share`` (trajectories), ``groups_edited_share`` (prompts with at least one edited copy),
    ``num_edited``, ``ops/<kind>`` (count of fired rules per kind; every known kind is always present),
    ``ops_per_edit/mean``, ``tokens_inserted/{mean,max,sum}`` (over edited trajectories),
    ``time_s/{mean,max}`` (edit-step time per group: analysis + rules + splice), ``reward_gap/mean``
    (edited mean reward - sampled mean reward), ``error_groups`` (groups whose edit step failed).
``sampled/*`` and ``edited/*``
    ``count``, ``reward/mean`` (the scalar reward), ``<component>/mean`` for every numeric entry of
    ``reward_extra_info`` (radgraph_f1, chexbert_micro_f1_14, ratescore, invalid ...), ``advantage/mean``,
    ``advantage/positive_share``.
``reward/<component>/mean``
    each reward component over all trajectories (useful for the GRPO baselines too).

A trajectory record is a mapping with ``uid`` (group id), ``reward`` (float, the sequence reward) and the rollout's
per-trajectory ``extra_fields`` (verl_ext/rollout/edit_worker.py): ``is_edited`` (bool), ``edit_ops`` (list of op
kinds), ``edit_tokens_inserted`` (int), ``edit_time_s`` (float, the group's edit time, on its edited copies),
``edit_error`` (str, when the group's edit step failed) and ``reward_extra_info`` (dict). Missing edit fields mean
"sampled, not edited".
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Mapping, Optional, Sequence

from verl_ext.editing.types import OP_KINDS, PARAGRAPH_KIND

KNOWN_OP_KINDS: tuple[str, ...] = (*OP_KINDS, PARAGRAPH_KIND)


def _as_number(value: Any) -> Optional[float]:
    """A finite float for bools, ints, floats and 0-d numpy/torch scalars; None for anything else."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    return None


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _component_means(records: Iterable[Mapping], prefix: str) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for rec in records:
        for key, value in (rec.get("reward_extra_info") or {}).items():
            number = _as_number(value)
            if number is not None:
                sums.setdefault(key, []).append(number)
    return {f"{prefix}/{key}/mean": _mean(vals) for key, vals in sorted(sums.items())}


def _split_metrics(records: Sequence[Mapping], advantages: Sequence[Optional[float]], prefix: str) -> dict[str, float]:
    out: dict[str, float] = {f"{prefix}/count": float(len(records))}
    if not records:
        return out
    rewards = [x for x in (_as_number(r.get("reward")) for r in records) if x is not None]
    if rewards:
        out[f"{prefix}/reward/mean"] = _mean(rewards)
    out.update(_component_means(records, prefix))
    advs = [a for a in advantages if a is not None]
    if advs:
        out[f"{prefix}/advantage/mean"] = _mean(advs)
        out[f"{prefix}/advantage/positive_share"] = sum(a > 0 for a in advs) / len(advs)
    return out


def compute_edit_metrics(
    records: Sequence[Mapping[str, Any]],
    advantages: Optional[Sequence[Optional[float]]] = None,
    known_op_kinds: Sequence[str] = KNOWN_OP_KINDS,
) -> dict[str, float]:
    """Metrics for one training step; see the module docstring for the names.

    Args:
        records: one mapping per (non-padding) trajectory.
        advantages: the sequence advantage of each trajectory (same order), e.g. the mean of its token advantages
            over the response mask; None (or a None entry) when unknown.
        known_op_kinds: op kinds always reported under ``edit/ops/`` (0 when absent), so W&B charts have no gaps.

    Returns:
        a flat dict of floats; empty when `records` is empty.
    """
    if not records:
        return {}
    if advantages is None:
        advantages = [None] * len(records)
    if len(advantages) != len(records):
        raise ValueError(f"{len(advantages)} advantages for {len(records)} trajectories")

    edited_flags = [bool(rec.get("is_edited", False)) for rec in records]
    edited = [rec for rec, flag in zip(records, edited_flags) if flag]
    sampled = [rec for rec, flag in zip(records, edited_flags) if not flag]
    edited_adv = [adv for adv, flag in zip(advantages, edited_flags) if flag]
    sampled_adv = [adv for adv, flag in zip(advantages, edited_flags) if not flag]

    metrics: dict[str, float] = {}
    metrics.update(_component_means(records, "reward"))
    metrics.update(_split_metrics(sampled, sampled_adv, "sampled"))
    metrics.update(_split_metrics(edited, edited_adv, "edited"))

    groups = {rec.get("uid") for rec in records}
    edited_groups = {rec.get("uid") for rec in edited}
    metrics["edit/num_edited"] = float(len(edited))
    metrics["edit/edited_share"] = len(edited) / len(records)
    metrics["edit/groups_edited_share"] = len(edited_groups) / len(groups)

    kinds: Counter = Counter({kind: 0 for kind in known_op_kinds})
    n_ops = []
    for rec in edited:
        ops = list(rec.get("edit_ops") or [])
        kinds.update(str(op) for op in ops)
        n_ops.append(len(ops))
    metrics.update({f"edit/ops/{kind}": float(count) for kind, count in sorted(kinds.items())})

    if edited:
        metrics["edit/ops_per_edit/mean"] = _mean(n_ops)
        inserted = [_as_number(rec.get("edit_tokens_inserted")) for rec in edited]
        inserted = [x for x in inserted if x is not None]
        if inserted:
            metrics["edit/tokens_inserted/mean"] = _mean(inserted)
            metrics["edit/tokens_inserted/max"] = max(inserted)
            metrics["edit/tokens_inserted/sum"] = sum(inserted)
        if "sampled/reward/mean" in metrics and "edited/reward/mean" in metrics:
            metrics["edit/reward_gap/mean"] = metrics["edited/reward/mean"] - metrics["sampled/reward/mean"]

    # The rollout stores its group's edit time (analysis + rules + splice) on each edited copy: one value per group.
    group_time: dict = {}
    for rec in records:
        t = _as_number(rec.get("edit_time_s"))
        if t is not None:
            group_time[rec.get("uid")] = max(t, group_time.get(rec.get("uid"), 0.0))
    if group_time:
        metrics["edit/time_s/mean"] = _mean(list(group_time.values()))
        metrics["edit/time_s/max"] = max(group_time.values())
    metrics["edit/error_groups"] = float(len({rec.get("uid") for rec in records if rec.get("edit_error")}))
    return metrics
