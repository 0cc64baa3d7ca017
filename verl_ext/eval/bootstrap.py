"""Vectorised study-level bootstrap of the paper's corpus metrics, and the paired bootstrap of run differences.

A resample draws n studies with replacement; it is represented by a count vector w (how often each study was
drawn), so every corpus metric of the resample is a weighted statistic of per-study quantities:

* mean metrics (RadGraph F1, RaTEScore, GREEN): ``w @ v / n``, over the studies that have a value (NaN = not
  scored, e.g. a reference without RaTE entities or an unparseable GREEN completion — the convention of
  ``verl_ext.metrics.aggregate.table_from_per_sample``);
* CheXbert F1s: per-class ``TP = w @ tp``, ``FP = w @ fp``, ``FN = w @ fn`` from the per-study 0/1 hit matrices,
  then micro F1 ``2ΣTP / (2ΣTP + ΣFP + ΣFN)`` and macro F1 (mean of per-class F1, 0 for 0/0 — the conventions of
  ``verl_ext.metrics.chexbert``) over the 14 conditions or the 5-class subset. Corpus CheXbert F1s are *not* means of
  per-study scores, so they are recomputed per resample from the label vectors;
* ``avg``: the mean of the other paper metrics present (the paper's "Avg." column).

B resamples at once are a (B, n) count matrix W, so a whole bootstrap is a few matrix products: 1,000 resamples
of 5,000 studies take well under a second. Resampling is seeded (``numpy.random.default_rng(seed)``), so results
are reproducible. The paired bootstrap applies the *same* W to two runs aligned on study id, giving the
distribution of the difference (run − baseline) with the between-study correlation accounted for.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from verl_ext.metrics.chexbert import CONDITIONS, INDEX_5
from verl_ext.metrics.clinical_efficacy import CE_METRICS, example_based_prf

CHEXBERT_METRICS: tuple[str, ...] = (
    "chexbert_micro_f1_14",
    "chexbert_macro_f1_14",
    "chexbert_micro_f1_5",
    "chexbert_macro_f1_5",
)
MEAN_METRICS: tuple[str, ...] = ("radgraph_f1", "ratescore", "green")
# Column order of the paper's Tables 1, 5 and 6.
PAPER_METRICS: tuple[str, ...] = CHEXBERT_METRICS + MEAN_METRICS
AVG = "avg"
DISPLAY_NAMES: dict[str, str] = {
    "chexbert_micro_f1_14": "Micro-F1-14",
    "chexbert_macro_f1_14": "Macro-F1-14",
    "chexbert_micro_f1_5": "Micro-F1-5",
    "chexbert_macro_f1_5": "Macro-F1-5",
    "radgraph_f1": "RadGraph F1",
    "ratescore": "RaTE",
    "green": "GREEN",
    "chexbert_ce_precision": "CE-P",
    "chexbert_ce_recall": "CE-R",
    "chexbert_ce_f1": "CE-F1",
    AVG: "Avg.",
}


@dataclass
class StudyScores:
    """Per-study inputs of one run on one dataset: ids, per-study metric values, CheXbert label vectors."""

    ids: np.ndarray
    """(n,) study ids (str), unique."""
    values: dict[str, np.ndarray] = field(default_factory=dict)
    """metric name -> (n,) float per-study scores whose corpus value is their mean (RadGraph F1, RaTEScore, ...);
    NaN (or None) = the study was not scored by that metric and is left out of its mean."""
    hyp_labels: np.ndarray | None = None
    """(n, 14) binary CheXbert labels of the generated reports (conditions in ``CONDITIONS`` order)."""
    ref_labels: np.ndarray | None = None
    """(n, 14) binary CheXbert labels of the reference reports."""
    ce_metrics: bool = False
    """Also report the example-based CheXpert-label P/R/F1 of the MambaXray-VL line (OraPO's tables;
    ``verl_ext.metrics.clinical_efficacy``); not part of ``avg``."""

    def __post_init__(self):
        self.ids = np.asarray(self.ids, dtype=object).astype(str)
        n = len(self.ids)
        if len(set(self.ids.tolist())) != n:
            raise ValueError("study ids repeat; each study must appear once per run and dataset")
        for name, v in list(self.values.items()):
            arr = np.array([np.nan if x is None else x for x in v], dtype=np.float64)
            if arr.shape != (n,):
                raise ValueError(f"metric {name!r}: expected {n} values, got shape {arr.shape}")
            if np.isinf(arr).any():
                raise ValueError(f"metric {name!r}: {int(np.isinf(arr).sum())} values are infinite")
            if n and np.isnan(arr).all():
                raise ValueError(f"metric {name!r}: no study has a value; drop the metric")
            self.values[name] = arr
        if (self.hyp_labels is None) != (self.ref_labels is None):
            raise ValueError("give both hyp_labels and ref_labels, or neither")
        if self.hyp_labels is not None:
            h = np.asarray(self.hyp_labels, dtype=np.int64)
            r = np.asarray(self.ref_labels, dtype=np.int64)
            shape = (n, len(CONDITIONS))
            if h.shape != shape or r.shape != shape:
                raise ValueError(f"CheXbert labels: expected shape {shape}, got hyp {h.shape} and ref {r.shape}")
            if not (np.isin(h, (0, 1)).all() and np.isin(r, (0, 1)).all()):
                raise ValueError("CheXbert labels must be binary 0/1 (positive or uncertain = 1)")
            self.hyp_labels, self.ref_labels = h, r

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def metrics(self) -> list[str]:
        """The corpus metrics this input supports, in the paper's column order, then others, then ``avg``."""
        names = [m for m in CHEXBERT_METRICS if self.hyp_labels is not None]
        names += [m for m in CE_METRICS if self.hyp_labels is not None and self.ce_metrics]
        names += [m for m in MEAN_METRICS if m in self.values]
        names += sorted(m for m in self.values if m not in MEAN_METRICS)
        return names + ([AVG] if any(m in PAPER_METRICS for m in names) else [])

    def subset(self, ids: Sequence[str]) -> StudyScores:
        """The rows of `ids`, in that order (every id must be present)."""
        pos = {sid: i for i, sid in enumerate(self.ids.tolist())}
        missing = [sid for sid in ids if sid not in pos]
        if missing:
            raise KeyError(f"{len(missing)} ids are not in this run, e.g. {missing[:3]}")
        idx = np.fromiter((pos[sid] for sid in ids), dtype=np.int64, count=len(ids))
        return StudyScores(
            ids=self.ids[idx],
            values={k: v[idx] for k, v in self.values.items()},
            hyp_labels=None if self.hyp_labels is None else self.hyp_labels[idx],
            ref_labels=None if self.ref_labels is None else self.ref_labels[idx],
            ce_metrics=self.ce_metrics,
        )


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    den = 2 * tp + fp + fn
    return np.divide(2 * tp, den, out=np.zeros_like(den, dtype=np.float64), where=den > 0)


def corpus_metrics(scores: StudyScores, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Corpus metrics under study weights ``(B, n)`` (resample counts); ``None`` = the sample itself (B = 1).

    Returns metric name -> (B,) values.
    """
    n = len(scores)
    if n == 0:
        raise ValueError("no studies to score")
    w = np.ones((1, n)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != n:
        raise ValueError(f"weights must be (B, {n}), got {w.shape}")
    total = w.sum(axis=1)
    out: dict[str, np.ndarray] = {}
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and non-negative")
    if scores.hyp_labels is not None:
        h, r = scores.hyp_labels, scores.ref_labels
        tp = w @ ((h == 1) & (r == 1)).astype(np.float64)  # (B, 14)
        fp = w @ ((h == 1) & (r == 0)).astype(np.float64)
        fn = w @ ((h == 0) & (r == 1)).astype(np.float64)
        for suffix, cols in (("14", slice(None)), ("5", list(INDEX_5))):
            t, p, f = tp[:, cols], fp[:, cols], fn[:, cols]
            out[f"chexbert_micro_f1_{suffix}"] = _f1(t.sum(axis=1), p.sum(axis=1), f.sum(axis=1))
            out[f"chexbert_macro_f1_{suffix}"] = _f1(t, p, f).mean(axis=1)
        if scores.ce_metrics:  # means of per-study values
            out.update({name: (w @ v) / total for name, v in example_based_prf(h, r).items()})
    for name, v in scores.values.items():
        scored = ~np.isnan(v)
        if scored.all():
            out[name] = (w @ v) / total
        else:  # mean over the studies with a value, in each resample (NaN if a resample drew none of them)
            den = w @ scored.astype(np.float64)
            out[name] = np.divide(w @ np.where(scored, v, 0.0), den, out=np.full(len(w), np.nan), where=den > 0)
    paper = [out[m] for m in PAPER_METRICS if m in out]
    if paper:
        out[AVG] = np.mean(paper, axis=0)
    return {m: out[m] for m in scores.metrics}


def resample_counts(n: int, n_boot: int, seed: int, chunk: int = 250) -> Iterator[np.ndarray]:
    """Yield (≤chunk, n) count matrices of `n_boot` seeded with-replacement resamples of n studies."""
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        idx = rng.integers(0, n, size=(b, n))
        flat = (idx + np.arange(b)[:, None] * n).ravel()
        yield np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)
        done += b


@dataclass(frozen=True)
class Estimate:
    """A corpus metric with its percentile bootstrap confidence interval."""

    value: float
    low: float
    high: float
    se: float
    n: int
    """Studies that entered the metric (those with a value, for mean metrics)."""


@dataclass(frozen=True)
class Difference:
    """run − baseline on the same studies, with its paired-bootstrap CI and two-sided bootstrap p-value."""

    delta: float
    low: float
    high: float
    p_value: float
    n: int


def _interval(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _n_used(scores: StudyScores, metric: str) -> int:
    v = scores.values.get(metric)
    return len(scores) if v is None else int((~np.isnan(v)).sum())


#: The corpus metrics of a run under study weights, as `corpus_metrics` computes them: ``(scores, (B, n) weights or
#: None) -> {metric: (B,) values}``. The ReXrank board resamples its own columns through the same bootstrap.
Statistic = Callable[[StudyScores, Optional[np.ndarray]], dict[str, np.ndarray]]


def bootstrap(scores: StudyScores, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
              statistic: Statistic = corpus_metrics) -> dict[str, Estimate]:
    """Point estimate + percentile CI (level 1 − alpha) of every metric of ``statistic``, resampling studies."""
    point = statistic(scores, None)
    draws = {m: [] for m in point}
    for w in resample_counts(len(scores), n_boot, seed):
        for m, v in statistic(scores, w).items():
            draws[m].append(v)
    result = {}
    for m, parts in draws.items():
        samples = np.concatenate(parts)
        lo, hi = _interval(samples, alpha)
        finite = samples[np.isfinite(samples)]
        se = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
        result[m] = Estimate(float(point[m][0]), lo, hi, se, _n_used(scores, m))
    return result


def paired_bootstrap(run: StudyScores, baseline: StudyScores, n_boot: int = 1000, seed: int = 0,
                     alpha: float = 0.05, statistic: Statistic = corpus_metrics) -> dict[str, Difference]:
    """Difference run − baseline on their common studies, resampling the same studies for both.

    The p-value is two-sided: ``min(1, 2·min(P*(Δ ≤ 0), P*(Δ ≥ 0)))`` over the bootstrap distribution.
    """
    common = sorted(set(run.ids.tolist()) & set(baseline.ids.tolist()))
    if not common:
        raise ValueError("the two runs share no study id")
    a, b = run.subset(common), baseline.subset(common)
    pa, pb = statistic(a, None), statistic(b, None)
    metrics = [m for m in pa if m in pb]
    deltas = {m: [] for m in metrics}
    for w in resample_counts(len(common), n_boot, seed):
        ma, mb = statistic(a, w), statistic(b, w)
        for m in metrics:
            deltas[m].append(ma[m] - mb[m])
    result = {}
    for m in metrics:
        samples = np.concatenate(deltas[m])
        lo, hi = _interval(samples, alpha)
        samples = samples[np.isfinite(samples)]
        p = min(1.0, 2 * min(float((samples <= 0).mean()), float((samples >= 0).mean()))) if samples.size else 1.0
        result[m] = Difference(float(pa[m][0] - pb[m][0]), lo, hi, p, len(common))
    return result
