"""Evaluation tables: several runs side by side per test set, with bootstrap CIs and paired differences.

    python -m verl_ext.eval.compare --out tables/ --baseline SFT --in-domain mimic_cxr \\
        --run SFT@mimic_cxr=scores/sft/mimic --run SFT@iu_xray=scores/sft/iu \\
        --run EditGRPO@mimic_cxr=scores/edit/mimic --run EditGRPO@iu_xray=scores/edit/iu ...

Input (one or more per run; a run's files are concatenated): the ``per_sample.jsonl`` / ``per_sample.csv`` that
``python -m verl_ext.eval.evaluate`` writes, or any JSON-lines / JSON / CSV / parquet file with the same fields, or a
directory holding one. Each row is one study of one test set:

* ``id`` (the study id of the generation rows); the test set is the row's ``data_source`` if it has one, else the
  ``@TEST_SET`` of its ``--run``, else ``--dataset``;
* per-study scores whose corpus value is their mean over the studies that have one (null = not scored):
  ``radgraph_f1``, ``ratescore``, ``green`` (aliases in ``METRIC_ALIASES``);
* the 14 binary CheXbert labels of the generated and of the reference report (``chexbert_generated`` /
  ``chexbert_reference``: lists, JSON lists or 0/1 strings, in ``verl_ext.metrics.chexbert.CONDITIONS`` order).
  Corpus CheXbert F1s are recomputed from these — they are not means of per-study scores (a per-study
  ``chexbert_micro_f1_14`` column is ignored).

Output in `--out`: ``tables.md`` (per test set, in-domain first: each metric with its 95% CI; differences to the
baseline with paired-bootstrap CIs and p-values; and an "Avg." table across test sets in the style of the paper's
Table 2), ``summary.csv`` and ``differences.csv`` (long format), and ``metrics.png``: per test set, the runs' bars
with their CIs and a ``*`` over each bar whose paired difference to the baseline is significant, and under them the
paired differences themselves (run − baseline with the paired-bootstrap CI; filled where significant), since two
runs' CIs may overlap while their paired difference is clearly non-zero.

Studies are the resampling unit (`--n-boot` resamples, `--seed`). By default every run is restricted to the studies
all runs of a test set have (a warning says how many were dropped), so columns compare like with like, and only the
metrics every run has are reported (the Avg. is over those).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from verl_ext.eval.bootstrap import (
    AVG,
    DISPLAY_NAMES,
    PAPER_METRICS,
    Difference,
    Estimate,
    StudyScores,
    bootstrap,
    paired_bootstrap,
)
from verl_ext.help_format import HelpFormatter

logger = logging.getLogger(__name__)

ID_COLUMNS = ("id", "study_id")
DATASET_COLUMNS = ("data_source", "dataset")
METRIC_ALIASES: dict[str, tuple[str, ...]] = {
    "radgraph_f1": ("radgraph_f1", "radgraph", "radgraph_partial", "radgraph_f1_partial", "rg_er"),
    "ratescore": ("ratescore", "rate", "rate_score", "ratescore_f1"),
    "green": ("green", "green_score"),
}
LABEL_PAIRS: tuple[tuple[str, str], ...] = (
    ("chexbert_generated", "chexbert_reference"),  # verl_ext.metrics per_sample.jsonl / .csv
    ("chexbert_hyp", "chexbert_ref"),
    ("chexbert_labels_hyp", "chexbert_labels_ref"),
    ("hyp_labels", "ref_labels"),
)
PER_SAMPLE_NAMES = ("per_sample.jsonl", "per_sample.parquet", "per_sample.csv", "per_sample.json")


class CompareError(ValueError):
    """Inputs that cannot be compared; the message names the file or run."""


# ------------------------------------------------------------------------------------------------------- loading


def _find_score_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise CompareError(f"{path}: no such file or directory")
    for name in PER_SAMPLE_NAMES:
        if (path / name).is_file():
            return path / name
    found = sorted(p for p in path.iterdir() if p.is_file() and "per_sample" in p.name
                   and p.suffix in (".jsonl", ".json", ".csv", ".parquet"))
    if len(found) == 1:
        return found[0]
    raise CompareError(f"{path}: expected one per-study score file ({', '.join(PER_SAMPLE_NAMES)}), found "
                       f"{[p.name for p in found] or 'none'}; pass the file itself")


def read_rows(path: Path) -> list[dict]:
    """Rows of a .jsonl / .json / .csv / .parquet file as dicts."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = data.get("rows") or data.get("per_sample") or data.get("samples")
        if not isinstance(data, list):
            raise CompareError(f"{path}: expected a JSON list of rows (or {{'rows': [...]}})")
        return data
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise CompareError(f"{path}: unsupported file type {suffix!r} (jsonl, json, csv, parquet)")


def _labels(value, where: str) -> list[int]:
    """A label vector: a list, a JSON list, or a 0/1 string such as ``"01000000000001"`` (per_sample.csv)."""
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else list(text) if set(text) <= {"0", "1"} else None
    if value is None:
        raise CompareError(f"{where}: missing or unreadable CheXbert labels")
    return [int(x) for x in value]


def _number(value) -> float:
    """A metric value; None / "" / null = not scored (NaN)."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "null", "None", "nan")):
        return float("nan")
    return float(value)


def _first_key(row: dict, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in row and row[n] not in (None, "")), None)


def rows_to_scores(rows: list[dict], source: str, default_dataset: str) -> dict[str, StudyScores]:
    """Group rows by test set and build `StudyScores`; every row of a file must carry the same columns."""
    if not rows:
        raise CompareError(f"{source}: no rows")
    first = rows[0]
    id_col = _first_key(first, ID_COLUMNS)
    if id_col is None:
        raise CompareError(f"{source}: rows have no id column ({' / '.join(ID_COLUMNS)})")
    ds_col = _first_key(first, DATASET_COLUMNS)
    metric_cols = {}
    for metric, aliases in METRIC_ALIASES.items():
        # The first alias some row has (a metric may be null in the first row, e.g. an unscorable RaTE reference).
        col = next((a for a in aliases if any(r.get(a) not in (None, "") for r in rows)), None)
        if col is not None:
            metric_cols[metric] = col
    label_cols = next(((h, r) for h, r in LABEL_PAIRS if h in first and r in first), None)
    if not metric_cols and label_cols is None:
        raise CompareError(f"{source}: found neither metric columns ({', '.join(METRIC_ALIASES)}) nor CheXbert "
                           f"label columns ({' / '.join('+'.join(p) for p in LABEL_PAIRS)})")
    grouped: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        grouped[str(row.get(ds_col) or default_dataset) if ds_col else default_dataset].append(row)
    out = {}
    for dataset, group in grouped.items():
        where = f"{source} [{dataset}]"
        try:
            values = {m: np.array([_number(r.get(c)) for r in group]) for m, c in metric_cols.items()}
        except (TypeError, ValueError) as err:
            raise CompareError(f"{where}: a metric value is not a number ({err})") from None
        for m in [m for m, v in values.items() if np.isnan(v).all()]:
            logger.warning("%s: no study has a %s value; the metric is left out", where, m)
            del values[m]
        hyp = ref = None
        if label_cols is not None:
            hyp = np.array([_labels(r.get(label_cols[0]), where) for r in group])
            ref = np.array([_labels(r.get(label_cols[1]), where) for r in group])
        try:
            out[dataset] = StudyScores(ids=[str(r[id_col]) for r in group], values=values, hyp_labels=hyp,
                                       ref_labels=ref)
        except ValueError as err:
            raise CompareError(f"{where}: {err}") from None
    return out


def _concat(parts: list[StudyScores], where: str) -> StudyScores:
    if len(parts) == 1:
        return parts[0]
    keys = set(parts[0].values)
    if any(set(p.values) != keys for p in parts) or len({p.hyp_labels is None for p in parts}) > 1:
        raise CompareError(f"{where}: the files of one run carry different metrics")
    try:
        return StudyScores(
            ids=np.concatenate([p.ids for p in parts]),
            values={k: np.concatenate([p.values[k] for p in parts]) for k in keys},
            hyp_labels=None if parts[0].hyp_labels is None else np.concatenate([p.hyp_labels for p in parts]),
            ref_labels=None if parts[0].ref_labels is None else np.concatenate([p.ref_labels for p in parts]),
            ce_metrics=parts[0].ce_metrics,
        )
    except ValueError as err:
        raise CompareError(f"{where}: {err}") from None


def load_run(name: str, paths: list, default_dataset: str = "test") -> dict[str, StudyScores]:
    """All score files of one run -> {test set: StudyScores}.

    A path may be given as ``(test_set, path)``: its rows without ``data_source`` belong to that test set (the
    metrics CLI writes no data_source, so one scores directory per test set is named this way).
    """
    parts: dict[str, list[StudyScores]] = defaultdict(list)
    for entry in paths:
        dataset_name, path = entry if isinstance(entry, tuple) else (default_dataset, entry)
        file = _find_score_file(Path(path).expanduser())
        for dataset, scores in rows_to_scores(read_rows(file), str(file), dataset_name).items():
            parts[dataset].append(scores)
    return {ds: _concat(p, f"run {name!r} [{ds}]") for ds, p in parts.items()}


# ---------------------------------------------------------------------------------------------------- comparing


@dataclass
class DatasetResult:
    dataset: str
    domain: str | None
    metrics: list[str]
    runs: list[str]
    n_studies: int
    dropped: dict[str, int] = field(default_factory=dict)
    estimates: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    differences: dict[str, dict[str, Difference]] = field(default_factory=dict)


@dataclass
class Report:
    baseline: str
    runs: list[str]
    datasets: list[DatasetResult]
    n_boot: int
    seed: int
    alpha: float


def _restrict_metrics(scores: StudyScores, metrics: set[str]) -> StudyScores:
    keep_labels = any(m.startswith("chexbert_") for m in metrics)
    return StudyScores(ids=scores.ids, values={k: v for k, v in scores.values.items() if k in metrics},
                       hyp_labels=scores.hyp_labels if keep_labels else None,
                       ref_labels=scores.ref_labels if keep_labels else None, ce_metrics=scores.ce_metrics)


def compare(runs: dict[str, dict[str, StudyScores]], *, baseline: str | None = None,
            in_domain: list[str] | None = None, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
            common_ids: bool = True) -> Report:
    """Bootstrap every run on every test set it has, and the paired differences to `baseline`."""
    if not runs:
        raise CompareError("no runs")
    names = list(runs)
    baseline = baseline or names[0]
    if baseline not in runs:
        raise CompareError(f"--baseline {baseline!r} is not one of the runs {names}")
    in_domain = list(in_domain or [])
    all_sets = list(dict.fromkeys(ds for r in runs.values() for ds in r))
    ordered = [ds for ds in in_domain if ds in all_sets] + [ds for ds in all_sets if ds not in in_domain]
    results = []
    for ds in ordered:
        present = [n for n in names if ds in runs[n]]
        missing = [n for n in names if ds not in runs[n]]
        if missing:
            logger.warning("test set %s: runs %s have no scores for it", ds, missing)
        metric_sets = [set(runs[n][ds].metrics) for n in present]
        metrics = [m for m in runs[present[0]][ds].metrics if all(m in s for s in metric_sets)]
        dropped_metrics = set().union(*metric_sets) - set(metrics)
        if dropped_metrics:
            logger.warning("test set %s: metrics %s are not in every run; reporting only %s", ds,
                           sorted(dropped_metrics), metrics)
        scores = {n: _restrict_metrics(runs[n][ds], set(metrics)) for n in present}
        dropped = {}
        if common_ids:
            shared = set.intersection(*(set(s.ids.tolist()) for s in scores.values()))
            if not shared:
                raise CompareError(f"test set {ds}: the runs share no study id")
            order = sorted(shared)
            for n, s in scores.items():
                if len(s) != len(order):
                    dropped[n] = len(s) - len(order)
                    scores[n] = s.subset(order)
            if dropped:
                logger.warning("test set %s: restricted to the %d studies every run has (dropped %s)", ds,
                               len(order), dropped)
        domain = None
        if in_domain:
            domain = "in-domain" if ds in in_domain else "out-of-domain"
        result = DatasetResult(ds, domain, metrics, present, max(len(s) for s in scores.values()), dropped)
        for n in present:
            result.estimates[n] = bootstrap(scores[n], n_boot=n_boot, seed=seed, alpha=alpha)
        if baseline in scores:
            for n in present:
                if n != baseline:
                    result.differences[n] = paired_bootstrap(scores[n], scores[baseline], n_boot=n_boot, seed=seed,
                                                             alpha=alpha)
        results.append(result)
    return Report(baseline, names, results, n_boot, seed, alpha)


# ------------------------------------------------------------------------------------------------------ writing


def _name(metric: str) -> str:
    return DISPLAY_NAMES.get(metric, metric)


def _cell(e: Estimate, best: bool) -> str:
    value = f"**{e.value:.4f}**" if best else f"{e.value:.4f}"
    return f"{value} [{e.low:.3f}, {e.high:.3f}]"


def _p_text(p: float, n_boot: int) -> str:
    """A bootstrap p-value cannot resolve below 1/n_boot; show that bound instead of 0."""
    floor = 1.0 / n_boot
    return f"p<{floor:.2g}" if p < floor else f"p={p:.3f}"


def avg_columns(metrics: list[str]) -> list[str]:
    """The columns ``avg`` is the mean of (``verl_ext.eval.bootstrap.corpus_metrics``): the paper's metrics present;
    CE-P/R/F1 (``--ce-metrics``) are shown but are not part of it."""
    return [m for m in metrics if m in PAPER_METRICS]


def relative_change(value: float, base: float) -> str:
    """``+6%`` style, with as many decimals (up to 3) as it takes not to print a change as ``-0%``."""
    rel = 100 * (value - base) / base
    for digits in range(0, 4):
        if round(abs(rel), digits) > 0:
            return f"{rel:+.{digits}f}%"
    return "±0%"


def _diff_cell(d: Difference, alpha: float, n_boot: int) -> str:
    star = "*" if d.p_value < alpha else ""
    return f"{d.delta:+.4f}{star} [{d.low:+.3f}, {d.high:+.3f}] {_p_text(d.p_value, n_boot)}"


def markdown(report: Report, title: str = "Evaluation", intro: str | None = None) -> str:
    """The tables; `title` and `intro` replace the heading and the paragraph under it (other protocols' wording)."""
    level = round(100 * (1 - report.alpha))
    lines = [
        f"# {title}",
        "",
        intro or (f"Corpus metrics with {level}% percentile bootstrap CIs ({report.n_boot} resamples of studies, seed "
        f"{report.seed}); CheXbert F1s are recomputed from label vectors in every resample. Differences are "
        f"run − {report.baseline} on the same studies (paired bootstrap); `*` marks p < {report.alpha:g}. "
        f"Avg. is the mean of the paper's metric columns shown, listed under each test set (the paper's Avg. uses "
        f"all seven; CE-P/R/F1 are not part of it)."),
        "",
    ]
    for res in report.datasets:
        title = res.dataset + (f" ({res.domain})" if res.domain else "")
        lines += [f"## {title}", "", f"{res.n_studies} studies."]
        partial = [m for m in res.metrics if m != AVG and not m.startswith("chexbert_")
                   and any(res.estimates[r][m].n < res.n_studies for r in res.runs)]
        if partial:
            counts = "; ".join(f"{_name(m)}: " + ", ".join(f"{r} {res.estimates[r][m].n}" for r in res.runs)
                               for m in partial)
            lines.append(f"Means are over the studies a metric could score ({counts} of {res.n_studies}).")
        if AVG in res.metrics:
            lines.append("Avg. = mean of " + ", ".join(_name(m) for m in avg_columns(res.metrics)) + ".")
        if res.dropped:
            lines.append("Restricted to studies every run has; dropped: "
                         + ", ".join(f"{k}: {v}" for k, v in res.dropped.items()) + ".")
        lines.append("")
        header = ["Run"] + [_name(m) for m in res.metrics]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        best = {m: max(res.estimates[r][m].value for r in res.runs) for m in res.metrics}
        for run in res.runs:
            cells = [_cell(res.estimates[run][m], len(res.runs) > 1 and res.estimates[run][m].value == best[m])
                     for m in res.metrics]
            lines.append("| " + " | ".join([run] + cells) + " |")
        lines.append("")
        if res.differences:
            lines += [f"Difference to {report.baseline}:", ""]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            for run, diffs in res.differences.items():
                lines.append("| " + " | ".join([run] + [_diff_cell(diffs[m], report.alpha, report.n_boot)
                                                          for m in res.metrics])
                             + " |")
            lines.append("")
    with_avg = [r for r in report.datasets if AVG in r.metrics]
    if len(with_avg) > 1 or (with_avg and any(r.domain for r in with_avg)):
        lines += ["## Avg. score by test set", "",
                  f"Relative change to {report.baseline} in parentheses (as the paper's Table 2).", ""]
        header = ["Test set"] + report.runs
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for res in with_avg:
            base = res.estimates.get(report.baseline, {}).get(AVG)
            cells = []
            for run in report.runs:
                est = res.estimates.get(run, {}).get(AVG)
                if est is None:
                    cells.append("—")
                    continue
                text = f"{est.value:.4f}"
                diff = res.differences.get(run, {}).get(AVG)
                if base is not None and run != report.baseline and base.value:
                    text += f" ({relative_change(est.value, base.value)}"
                    text += "*)" if diff is not None and diff.p_value < report.alpha else ")"
                cells.append(text)
            label = res.dataset + (f" ({res.domain})" if res.domain else "")
            lines.append("| " + " | ".join([label] + cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_csv(report: Report, out: Path) -> None:
    with (out / "summary.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["dataset", "domain", "run", "metric", "value", "ci_low", "ci_high", "se", "n_studies"])
        for res in report.datasets:
            for run in res.runs:
                for m in res.metrics:
                    e = res.estimates[run][m]
                    w.writerow([res.dataset, res.domain or "", run, m, f"{e.value:.6f}", f"{e.low:.6f}",
                                f"{e.high:.6f}", f"{e.se:.6f}", e.n])
    with (out / "differences.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["dataset", "domain", "run", "baseline", "metric", "delta", "ci_low", "ci_high", "p_value",
                    "n_studies"])
        for res in report.datasets:
            for run, diffs in res.differences.items():
                for m in res.metrics:
                    d = diffs[m]
                    w.writerow([res.dataset, res.domain or "", run, report.baseline, m, f"{d.delta:.6f}",
                                f"{d.low:.6f}", f"{d.high:.6f}", f"{d.p_value:.4f}", d.n])


def figure(report: Report):
    """The comparison figure (see the module docstring): per test set a bar panel (runs × metrics, CI error bars,
    ``*`` where the paired difference to the baseline has p < alpha, Avg. set apart) and, when there is a baseline
    to compare with, a paired-difference panel under it (Δ and its paired CI per run and metric; filled marker and
    ``*`` where significant, hollow where not; the zero line is "no effect")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = plt.get_cmap("tab10").colors
    panels = [p for res in report.datasets for p in ([(res, "bars")] + ([(res, "diff")] if res.differences else []))]
    heights = [3.6 if kind == "bars" else 2.4 for _, kind in panels]
    total = sum(heights) + 1.0
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, total), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    alpha = report.alpha
    for ax, (res, kind) in zip(axes[:, 0], panels):
        x = np.arange(len(res.metrics))
        runs = res.runs if kind == "bars" else list(res.differences)
        width = 0.8 / max(1, len(runs))
        if AVG in res.metrics:  # the Avg. column is a summary of the others, not one more metric
            ax.axvline(len(res.metrics) - 1.5, color="grey", linestyle=":", linewidth=1)
        for i, run in enumerate(runs):
            pos = x + (i - (len(runs) - 1) / 2) * width
            color = colors[report.runs.index(run) % len(colors)]
            if kind == "bars":
                est = [res.estimates[run][m] for m in res.metrics]
                values = np.array([e.value for e in est])
                err = np.array([[e.value - e.low for e in est], [e.high - e.value for e in est]]).clip(min=0)
                ax.bar(pos, values, width, yerr=err, capsize=2.5, color=color, edgecolor="black", linewidth=0.4,
                       error_kw={"elinewidth": 0.9})
                diffs = res.differences.get(run, {})
                for p, m, e in zip(pos, res.metrics, est):
                    if m in diffs and diffs[m].p_value < alpha:
                        ax.text(p, e.high, "*", ha="center", va="bottom", fontsize=13, fontweight="bold")
            else:
                diffs = [res.differences[run][m] for m in res.metrics]
                for p, d in zip(pos, diffs):
                    significant = d.p_value < alpha
                    ax.errorbar([p], [d.delta], yerr=[[max(d.delta - d.low, 0)], [max(d.high - d.delta, 0)]],
                                fmt="o", color=color, markerfacecolor=color if significant else "white",
                                markeredgecolor=color, capsize=3, markersize=6)
                    if significant:
                        ax.text(p, d.high, "*", ha="center", va="bottom", fontsize=13, fontweight="bold")
        ax.set_xticks(x, [_name(m) if m != AVG else f"{_name(m)}\n(of {len(avg_columns(res.metrics))})"
                          for m in res.metrics])
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        label = res.dataset + (f" ({res.domain})" if res.domain else "")
        if kind == "bars":
            ax.set_ylabel("score")
            top = max(e.high for r in res.runs for e in res.estimates[r].values())
            ax.set_ylim(0, (top * 1.12 if top > 1 else min(1.08, top * 1.15)) if top > 0 else 1.0)  # 1/RadCliQ > 1
            ax.set_title(f"{label} — {res.n_studies} studies", fontsize=11, loc="left")
        else:
            ax.axhline(0, color="black", linewidth=0.8)
            lows = [d.low for r in runs for d in res.differences[r].values()]
            highs = [d.high for r in runs for d in res.differences[r].values()]
            span = max(max(highs), 0) - min(min(lows), 0) or 1e-3
            ax.set_ylim(min(min(lows), 0) - 0.08 * span, max(max(highs), 0) + 0.2 * span)
            ax.set_ylabel(f"Δ vs {report.baseline}")
            ax.set_title(f"{label} — paired difference to {report.baseline} ({round(100 * (1 - alpha))}% CI; filled "
                         f"and * = p < {alpha:g}, hollow = not significant)", fontsize=10, loc="left")
    level = round(100 * (1 - alpha))
    marks = (f"; * = paired difference to {report.baseline} with p < {alpha:g}"
             if any(res.differences for res in report.datasets) else "")
    fig.suptitle(f"Corpus metrics with {level}% bootstrap CIs ({report.n_boot} study resamples){marks}", fontsize=12)
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=colors[i % len(colors)], edgecolor="black", linewidth=0.4)
               for i in range(len(report.runs))]
    fig.legend(handles, report.runs, loc="upper center", ncol=len(report.runs), frameon=False, fontsize=10,
               bbox_to_anchor=(0.5, 1 - 0.45 / total))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.75 / total))
    return fig


def plot(report: Report, path: Path) -> None:
    """Save `figure(report)` as a PNG."""
    import matplotlib.pyplot as plt

    fig = figure(report)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def write_report(report: Report, out: str | Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tables.md").write_text(markdown(report) + "\n", encoding="utf-8")
    write_csv(report, out)
    plot(report, out / "metrics.png")
    return {name: out / name for name in ("tables.md", "summary.csv", "differences.csv", "metrics.png")}


# ---------------------------------------------------------------------------------------------------------- CLI


def _parse_runs(specs: list[str], default_dataset: str) -> dict[str, list[tuple[str, str]]]:
    """``NAME=PATH`` or ``NAME@TEST_SET=PATH`` -> {name: [(test set for rows without data_source, path)]}."""
    runs: dict[str, list[tuple[str, str]]] = {}
    for spec in specs:
        label, sep, path = spec.partition("=")
        name, at, dataset = label.partition("@")
        if not sep or not name.strip() or not path.strip() or (at and not dataset.strip()):
            raise CompareError(f"--run {spec!r}: expected NAME=PATH or NAME@TEST_SET=PATH")
        runs.setdefault(name.strip(), []).append((dataset.strip() or default_dataset, path.strip()))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verl_ext.eval.compare", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--run", action="append", required=True, metavar="NAME[@TEST_SET]=PATH",
                        help="a run's per-study score file or directory (repeat; the same NAME concatenates); "
                             "@TEST_SET names the test set of rows without data_source")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--baseline", default=None, help="run the others are compared with (unset: the first --run)")
    parser.add_argument("--in-domain", action="append", default=[], metavar="DATA_SOURCE",
                        help="test sets from the training distribution (repeat); the others are out-of-domain")
    parser.add_argument("--dataset", default="test",
                        help="test-set name for rows without data_source and without @TEST_SET")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the studies")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (results are reproducible)")
    parser.add_argument("--alpha", type=float, default=0.05, help="1 - CI level; also the significance level of the `*` marks")
    parser.add_argument("--ce-metrics", action="store_true",
                        help="add the example-based CheXpert-label P/R/F1 (CE-P/R/F1) of the MambaXray-VL line, as "
                             "OraPO reports them (verl_ext.metrics.clinical_efficacy)")
    parser.add_argument("--all-ids", action="store_true",
                        help="do not restrict runs to their common studies (columns may then differ in studies)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        specs = _parse_runs(args.run, args.dataset)
        runs = {name: load_run(name, paths) for name, paths in specs.items()}
        for scores in (s for run in runs.values() for s in run.values()):
            scores.ce_metrics = args.ce_metrics
        report = compare(runs, baseline=args.baseline, in_domain=args.in_domain, n_boot=args.n_boot,
                         seed=args.seed, alpha=args.alpha, common_ids=not args.all_ids)
    except CompareError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    files = write_report(report, args.out)
    print(markdown(report))
    print("\nwrote " + ", ".join(str(p) for p in files.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
