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
    (edited mean reward - sampled mean reward), ``error_groups`` (groups whose edit step failed),
    ``error_groups_share`` (of the step's groups) and ``error/<stage>/groups`` (groups failed at that stage, the
    part of ``edit_error`` before its first colon, e.g. ``analysing_the_response``, ``splicing_the_edit``).
    ``skipped/{count,share}`` and ``skipped/<reason>/{count,share,groups}``: sampled responses the edit step did not
    edit on purpose (``edit_skipped``; every known reason, ``truncated``, is always present). The share is of the
    sampled responses (duplicates filling an edit slot excluded), not of the edit sources only, which the records
    do not mark: under the paper scheme only ``editgrpo.num_edits`` of them are sources, so it is a lower bound of
    the skipped share of sources.
``sampled/*`` and ``edited/*``
    ``count``, ``reward/mean`` (the scalar reward), ``<component>/mean`` for every numeric entry of
    ``reward_extra_info`` (radgraph_f1, chexbert_micro_f1_14, ratescore, invalid ...), ``advantage/mean``,
    ``advantage/positive_share``; and when the reward reports them (verl_ext/reward/scoring.py):
    ``overlong/{count,share}`` (``overlong_response``: a scorer read the response only up to its input limit),
    ``invalid/{count,share}`` and ``invalid_reason/<reason>/{count,share}`` (``invalid_reason`` is a ``;``-joined
    list, so one response can count under several reasons).
``reward/<component>/mean``
    each reward component over all trajectories (useful for the GRPO baselines too); ``reward/overlong/*``,
    ``reward/invalid/*`` and ``reward/invalid_reason/*`` as above, over all trajectories.

A trajectory record is a mapping with ``uid`` (group id), ``reward`` (float, the sequence reward) and the rollout's
per-trajectory ``extra_fields`` (verl_ext/rollout/edit_worker.py): ``is_edited`` (bool), ``edit_ops`` (list of op
kinds), ``edit_tokens_inserted`` (int), ``edit_time_s`` (float, the group's edit time, on its edited copies),
``edit_error`` (str, "<stage>: <exception>", when the group's edit step failed), ``edit_skipped`` (str, the reason a
sampled source was not edited), ``edit_duplicate`` (bool, a copy of its source filling an edit slot) and
``reward_extra_info`` (dict). Missing edit fields mean "sampled, not edited".
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Iterable, Mapping, Optional, Sequence

from verl_ext.editing.types import OP_KINDS, PARAGRAPH_KIND

KNOWN_OP_KINDS: tuple[str, ...] = (*OP_KINDS, PARAGRAPH_KIND)
KNOWN_SKIP_REASONS: tuple[str, ...] = ("truncated",)
"""Values of ``edit_skipped`` set by verl_ext/rollout/edit_worker.py (``_edit_group``)."""


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


def _key(name: Any) -> str:
    """A W&B-friendly metric name part: ``"analysing the response"`` -> ``analysing_the_response``."""
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", str(name).strip()).strip("_") or "unknown"


def _flag(rec: Mapping, key: str) -> bool:
    number = _as_number((rec.get("reward_extra_info") or {}).get(key))
    return bool(number)


def _reasons(rec: Mapping) -> list[str]:
    raw = (rec.get("reward_extra_info") or {}).get("invalid_reason")
    if not isinstance(raw, str):
        return []
    return list(dict.fromkeys(_key(r) for r in raw.split(";") if r.strip()))


def _reward_flag_metrics(records: Sequence[Mapping], prefix: str, fields: set[str]) -> dict[str, float]:
    """Counts and shares of over-long and invalid responses (``reward_extra_info`` fields present this step)."""
    out: dict[str, float] = {}
    n = len(records)

    def put(name: str, count: int) -> None:
        out[f"{prefix}/{name}/count"] = float(count)
        if n:
            out[f"{prefix}/{name}/share"] = count / n

    if "overlong_response" in fields:
        put("overlong", sum(_flag(rec, "overlong_response") for rec in records))
    if "invalid" in fields:
        put("invalid", sum(_flag(rec, "invalid") for rec in records))
    if "invalid_reason" in fields:
        for reason, count in sorted(Counter(r for rec in records for r in _reasons(rec)).items()):
            put(f"invalid_reason/{reason}", count)
    return out


def _group_error_metrics(records: Sequence[Mapping]) -> dict[str, float]:
    """Groups whose edit step failed, in all and by stage (``edit_error`` = "<stage>: <exception>")."""
    failed: set = set()
    by_stage: dict[str, set] = {}
    for rec in records:
        error = rec.get("edit_error")
        if not error:
            continue
        failed.add(rec.get("uid"))
        by_stage.setdefault(_key(str(error).split(":", 1)[0]), set()).add(rec.get("uid"))
    out = {
        "edit/error_groups": float(len(failed)),
        "edit/error_groups_share": len(failed) / len({rec.get("uid") for rec in records}),
    }
    out.update({f"edit/error/{stage}/groups": float(len(uids)) for stage, uids in sorted(by_stage.items())})
    return out


def _skip_metrics(sampled: Sequence[Mapping], known_reasons: Sequence[str]) -> dict[str, float]:
    """Sampled responses the edit step skipped, by reason. Duplicates filling an edit slot copy their source's
    fields, so they are left out (each skipped source counts once)."""
    own = [rec for rec in sampled if not rec.get("edit_duplicate")]
    reasons: Counter = Counter({_key(r): 0 for r in known_reasons})
    groups: dict[str, set] = {}
    for rec in own:
        reason = rec.get("edit_skipped")
        if reason:
            reasons[_key(reason)] += 1
            groups.setdefault(_key(reason), set()).add(rec.get("uid"))
    total = sum(reasons.values())
    out = {"edit/skipped/count": float(total)}
    if own:
        out["edit/skipped/share"] = total / len(own)
    for reason, count in sorted(reasons.items()):
        out[f"edit/skipped/{reason}/count"] = float(count)
        if own:
            out[f"edit/skipped/{reason}/share"] = count / len(own)
        out[f"edit/skipped/{reason}/groups"] = float(len(groups.get(reason, ())))
    return out


def compute_edit_metrics(
    records: Sequence[Mapping[str, Any]],
    advantages: Optional[Sequence[Optional[float]]] = None,
    known_op_kinds: Sequence[str] = KNOWN_OP_KINDS,
    known_skip_reasons: Sequence[str] = KNOWN_SKIP_REASONS,
) -> dict[str, float]:
    """Metrics for one training step; see the module docstring for the names.

    Args:
        records: one mapping per (non-padding) trajectory.
        advantages: the sequence advantage of each trajectory (same order), e.g. the mean of its token advantages
            over the response mask; None (or a None entry) when unknown.
        known_op_kinds: op kinds always reported under ``edit/ops/`` (0 when absent), so W&B charts have no gaps.
        known_skip_reasons: ``edit_skipped`` reasons always reported under ``edit/skipped/`` (likewise).

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
    fields = {key for rec in records for key in (rec.get("reward_extra_info") or {})}
    for split, prefix in ((records, "reward"), (sampled, "sampled"), (edited, "edited")):
        metrics.update(_reward_flag_metrics(split, prefix, fields))

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
    metrics.update(_group_error_metrics(records))
    metrics.update(_skip_metrics(sampled, known_skip_reasons))
    return metrics
