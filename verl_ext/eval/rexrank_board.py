"""ReXrank board tables: bootstrap CIs of the board's columns, ``verl_ext.eval.compare``'s tables/CSV/plot, and the
leaderboard in ReXrank's results-CSV format with our rows ranked among the published ones.

Each study is one resampling unit (``verl_ext.eval.bootstrap``'s count matrices): the mean columns are
``corpus_metrics`` of the per-study values, and 1/RadCliQ-v1 is the reciprocal of the resample's mean RadCliQ-v1.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from verl_ext.eval.bootstrap import StudyScores, bootstrap, corpus_metrics, paired_bootstrap
from verl_ext.eval import compare
from verl_ext.eval.compare import DatasetResult, Report
from verl_ext.eval.rexrank_data import RexrankError
from verl_ext.metrics import rexrank as rx

logger = logging.getLogger(__name__)

#: ReXrank's published results CSVs shipped as a snapshot (gh-pages ``results/``, Sep 2025).
RESOURCES = Path(__file__).with_name("resources") / "rexrank"
SNAPSHOTS = {
    ("mimic_cxr", "findings"): "findings_result_mimiccxr.csv",
    ("mimic_cxr", "findings_impression"): "result_mimiccxr.csv",
    ("iu_xray", "findings"): "findings_result_iu_xray.csv",
    ("iu_xray", "findings_impression"): "result_iu_xray.csv",
    ("chexpert_plus", "findings"): "findings_result_chexpertplus.csv",
    ("chexpert_plus", "findings_impression"): "result_chexpertplus.csv",
}
#: Per-study metrics whose board value is their mean; 1/RadCliQ-v1 is derived from the mean RadCliQ-v1.
MEAN_COLUMNS = (rx.BLEU, rx.BERTSCORE, rx.SEMBSCORE, rx.RADGRAPH, rx.RATESCORE, rx.GREEN)

#: The reference text each board scores against, as the output states it.
BOARD_REFERENCE = {
    "findings": ("the study's `section_findings` alone. Inferred from the board's name: ReXrank's published "
                 "evaluation script shows only the findings + impression reference"),
    "findings_impression": ("ReXrank's `Findings: {section_findings} Impression: {section_impression}` "
                            "(example_files/evaluation_script.md; a missing section is written `None`)"),
}

#: Studies on each board of the released test JSONs, where the JSON was counted (MIMIC-CXR: 2,347 studies, all with
#: findings; the findings + impression reference writes a missing section as None, so every study is on it).
KNOWN_BOARD_STUDIES = {("mimic_cxr", "findings"): 2347, ("mimic_cxr", "findings_impression"): 2347}

#: How far a published 1/RadCliQ-v1 may sit from the value its own rounded columns give: each of the four columns
#: is published to 3 decimals (±0.0005), which moves RadCliQ-v1 by up to this much.
RADCLIQ_COLUMN_ROUNDING = float(np.abs(rx.RADCLIQ_V1_COEFS / rx.RADCLIQ_V1_SCALE).sum() * 0.0005)


# ------------------------------------------------------------------------------------------- bootstrap and tables


def study_scores(records: list[dict]) -> StudyScores:
    """``StudyScores`` of one run on one board: the mean columns present, and RadCliQ-v1."""
    cols = [c for c in (*MEAN_COLUMNS, rx.RADCLIQ_V1) if any(r.get(c) is not None for r in records)]
    values = {c: np.array([np.nan if r.get(c) is None else float(r[c]) for r in records]) for c in cols}
    return StudyScores(ids=[r["id"] for r in records], values=values)


def board_metrics(scores: StudyScores) -> list[str]:
    """The board's columns this input supports, in ReXrank's order."""
    have = set(scores.values)
    out = []
    for col in rx.BOARD_COLUMNS:
        if col in have or (col == rx.INV_RADCLIQ_V1 and rx.RADCLIQ_V1 in have):
            out.append(col)
    return out


def _board_values(scores: StudyScores, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    means = corpus_metrics(scores, weights)
    out = {}
    for col in board_metrics(scores):
        if col == rx.INV_RADCLIQ_V1:
            mean = means[rx.RADCLIQ_V1]
            out[col] = np.divide(1.0, mean, out=np.full_like(mean, np.nan), where=mean != 0)
        else:
            out[col] = means[col]
    return out


def build_report(runs: dict[str, dict[str, list[dict]]], *, baseline: str | None = None, n_boot: int = 1000,
                 seed: int = 0, alpha: float = 0.05) -> Report:
    """``verl_ext.eval.compare.Report`` of {run: {test set: per-study records}}, restricted per test set to the
    studies every run has (a warning says how many were dropped)."""
    names = list(runs)
    baseline = baseline or names[0]
    if baseline not in runs:
        raise RexrankError(f"--baseline {baseline!r} is not one of the runs {names}")
    sets = list(dict.fromkeys(s for r in runs.values() for s in r))
    results = []
    for test_set in sets:
        present = [n for n in names if test_set in runs[n]]
        scores = {n: study_scores(runs[n][test_set]) for n in present}
        shared = sorted(set.intersection(*(set(s.ids.tolist()) for s in scores.values())))
        if not shared:
            raise RexrankError(f"{test_set}: the runs share no study id")
        dropped = {n: len(s) - len(shared) for n, s in scores.items() if len(s) != len(shared)}
        if dropped:
            logger.warning("%s: restricted to the %d studies every run has (dropped %s)", test_set, len(shared),
                           dropped)
        scores = {n: s.subset(shared) for n, s in scores.items()}
        metric_sets = [board_metrics(s) for s in scores.values()]
        metrics = [m for m in metric_sets[0] if all(m in ms for ms in metric_sets)]
        res = DatasetResult(test_set, None, metrics, present, len(shared), dropped)
        for n in present:
            est = bootstrap(scores[n], n_boot, seed, alpha, statistic=_board_values)
            res.estimates[n] = {m: est[m] for m in metrics}
        if baseline in scores:
            for n in present:
                if n != baseline:
                    diff = paired_bootstrap(scores[n], scores[baseline], n_boot, seed, alpha,
                                            statistic=_board_values)
                    res.differences[n] = {m: diff[m] for m in metrics}
        results.append(res)
    return Report(baseline, names, results, n_boot, seed, alpha)


# ----------------------------------------------------------------------------------------------------- leaderboard


def read_results_csv(path: str | os.PathLike) -> list[dict]:
    """Rows of a ReXrank results CSV (``results/*result_*.csv``)."""
    path = Path(path)
    if not path.is_file():
        raise RexrankError(f"--leaderboard {path}: no such file (a ReXrank results CSV, 'auto' or 'none')")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in ("Model Name", rx.RANK_BY) if c not in header]
        if missing:
            raise RexrankError(f"{path}: not a ReXrank results CSV (no {missing} column; header {header})")
        return [{k: (v or "") for k, v in row.items() if k is not None} for row in reader]


def radcliq_mismatches(rows: list[dict]) -> list[tuple[str, float, float]]:
    """Published rows whose 1/RadCliQ-v1 does not follow from their own BLEU, BertScore, SembScore and RadGraph
    columns (beyond the columns' 3-decimal rounding, `RADCLIQ_COLUMN_ROUNDING`, and the value's own): ``(model,
    published, from its columns)``. Every findings-board row follows; some findings + impression rows do not."""
    out = []
    for row in rows:
        try:
            features = [float(row[c]) for c in rx.RADCLIQ_V1_FEATURES]
            published = float(row[rx.INV_RADCLIQ_V1])
        except (KeyError, TypeError, ValueError):
            continue
        value = float(rx.radcliq_v1(*features))
        if value == 0:
            continue
        if abs(1 / value - published) > RADCLIQ_COLUMN_ROUNDING / value ** 2 + 0.0005:
            out.append((row.get("Model Name", "?"), published, 1 / value))
    return out


def coverage_problem(dataset: str, board: str, ids: list[str], board_ids: list[str] | None) -> str | None:
    """Why a run is not on the same studies as the board's published rows (None when it is, or when nothing is known
    to check against: then `coverage_unchecked` says so)."""
    have = set(ids)
    known = KNOWN_BOARD_STUDIES.get((dataset, board))
    if board_ids is not None:
        want = set(board_ids)
        missing, extra = sorted(want - have), sorted(have - want)
        parts = []
        if missing:
            parts.append(f"{len(missing):,} of the board's {len(want):,} studies are missing (e.g. {missing[:3]})")
        if extra:
            parts.append(f"{len(extra):,} studies are not on the board (e.g. {extra[:3]})")
        if known is not None and len(want) != known:
            parts.append(f"the test JSON puts {len(want):,} studies on this board; the published rows are on all "
                         f"{known:,}")
        return f"scored {len(have):,} studies: " + "; ".join(parts) if parts else None
    if known is not None and len(have) != known:
        return f"scored {len(have):,} studies; the board's published rows are on all {known:,} studies of the test set"
    return None


def snapshot_path(dataset: str, board: str) -> Path | None:
    name = SNAPSHOTS.get((dataset, board))
    return RESOURCES / name if name else None


def _fmt(value: float | None) -> str:
    return "" if value is None or not np.isfinite(value) else f"{round(float(value), 3):g}"


def leaderboard(published: list[dict], ours: dict[str, dict[str, float]], *, date: str = "",
                institution: str = "", url: str = "", coverage: dict[str, str] | None = None) -> list[dict]:
    """Published rows plus one row per run (``ours``: run -> column -> value), in ReXrank's CSV format, ranked by
    1/RadCliQ-v1 (higher first; rows without it last). Our rows carry ``"ours": True``; a run in ``coverage`` (run
    -> what differs from the board's studies) gets it in its Model Name, so the CSV cannot pass for a board row."""
    rows = [dict(r, ours=False) for r in published]
    for name, values in ours.items():
        row = {c: "" for c in rx.RESULTS_HEADER}
        shown = f"{name} [NOT COMPARABLE: {coverage[name]}]" if coverage and name in coverage else name
        row.update({"Date": date, "Model Name": shown, "Institution": institution, "Model URL": url, "ours": True})
        row.update({c: _fmt(values.get(c)) for c in rx.BOARD_COLUMNS if c in values})
        rows.append(row)

    rows.sort(key=_rank_key)  # stable: ties keep the published order, ours after
    for rank, row in enumerate(rows, 1):
        row["Rank"] = str(rank)
    return rows


def _rank_key(row: dict) -> tuple[bool, float]:
    try:
        value = float(row.get(rx.RANK_BY) or "nan")
    except ValueError:
        value = float("nan")
    return (math.isnan(value), 0.0 if math.isnan(value) else -value)


def write_leaderboard(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rx.RESULTS_HEADER), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def leaderboard_markdown(test_set: str, rows: list[dict], source: str) -> str:
    cols = [rx.RANK_BY] + [c for c in rx.BOARD_COLUMNS if c != rx.RANK_BY and c != rx.FINERADSCORE]
    board = test_set.rsplit("/", 1)[-1]
    mismatched = {name: (pub, own) for name, pub, own in radcliq_mismatches([r for r in rows if not r.get("ours")])}
    lines = [f"## Where it would stand: {test_set}", "",
             f"Published rows: {source}; ranked by {rx.RANK_BY} as rexrank.ai ranks. Our rows in bold. Reference "
             f"text: {BOARD_REFERENCE.get(board, '?')}.", ""]
    if mismatched:
        lines += [f"† {len(mismatched)} published rows' {rx.RANK_BY} does not follow from their own BLEU, BertScore, "
                  "SembScore and RadGraph columns (beyond the columns' rounding); they are ranked by the published "
                  "value: " + "; ".join(f"{n} (published {p:.3f}, from its columns {o:.3f})"
                                        for n, (p, o) in mismatched.items()) + ".", ""]
    lines += ["| Rank | Model | Institution | " + " | ".join(cols) + " |", "|" + "---|" * (3 + len(cols))]
    for r in rows:
        name = r["Model Name"] + (" †" if r["Model Name"] in mismatched and not r.get("ours") else "")
        cells = [r["Rank"], name, r.get("Institution", "")] + [r.get(c, "") or "—" for c in cols]
        if r.get("ours"):
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------- pipeline


INTRO = ("ReXrank's metrics (verl_ext.metrics.rexrank) with {level}% percentile bootstrap CIs ({n_boot} resamples "
         "of studies, seed {seed}); 1/RadCliQ-v1 is 1/mean(RadCliQ-v1) in every resample. Differences are run − "
         "{baseline} on the same studies (paired bootstrap); `*` marks p < {alpha:g}.")


def write_outputs(report: Report, records: dict[str, dict[str, list[dict]]], out: str | os.PathLike, *,
                  leaderboards: dict[str, tuple[list[dict], str]] | None = None, notes: list[str] | None = None,
                  date: str = "", institution: str = "", url: str = "",
                  coverage: dict[str, dict[str, str]] | None = None) -> dict[str, Path]:
    """tables.md / summary.csv / differences.csv (as ``verl_ext.eval.compare``), metrics.png (`plot_board`),
    per-study JSON lines, and ``leaderboard_<set>_<board>.csv`` for each test set that has published rows.
    ``coverage``: test set -> run -> how its studies differ from the board's (printed at the top, in bold)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for run, sets in records.items():
        for test_set, recs in sets.items():
            path = out / "per_study" / test_set.replace("/", "_") / f"{run}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    intro = INTRO.format(level=round(100 * (1 - report.alpha)), n_boot=report.n_boot, seed=report.seed,
                         baseline=report.baseline, alpha=report.alpha)
    text = compare.markdown(report, title="ReXrank evaluation", intro=intro)
    warnings = [f"{test_set}, {run}: {why}" for test_set, runs in (coverage or {}).items() for run, why in runs.items()]
    if warnings:
        head, _, rest = text.partition("\n")
        text = (head + "\n\n" + "".join(f"> **NOT COMPARABLE with the published rows** — {w}\n" for w in warnings)
                + rest)
    if notes:
        text += "\nNotes:\n\n" + "".join(f"* {n}\n" for n in notes)
    for res in report.datasets:
        published, source = (leaderboards or {}).get(res.dataset, (None, ""))
        if published is None:
            continue
        ours = {run: {m: e.value for m, e in res.estimates[run].items()} for run in res.runs}
        rows = leaderboard(published, ours, date=date, institution=institution, url=url,
                           coverage=(coverage or {}).get(res.dataset))
        path = out / f"leaderboard_{res.dataset.replace('/', '_')}.csv"
        write_leaderboard(rows, path)
        files[path.name] = path
        text += "\n" + leaderboard_markdown(res.dataset, rows, source)
    (out / "tables.md").write_text(text + "\n", encoding="utf-8")
    compare.write_csv(report, out)
    plot_board(report, out / "metrics.png")
    for name in ("tables.md", "summary.csv", "differences.csv", "metrics.png"):
        files[name] = out / name
    return files


def board_figure(report: Report):
    """One row per test set: the board's 0-1 metrics with CI error bars, and 1/RadCliQ-v1 on its own axis (it is
    not a 0-1 score: ~0.5-2 on the published boards, unbounded near RadCliQ-v1 = 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(report.datasets)
    widths = [max(1, max(len([m for m in r.metrics if m != rx.INV_RADCLIQ_V1]) for r in report.datasets)), 1.4]
    fig, axes = plt.subplots(n, 2, figsize=(13, 3.8 * n + 0.6), squeeze=False, gridspec_kw={"width_ratios": widths})
    colors = plt.get_cmap("tab10").colors
    for (ax, ax_inv), res in zip(axes, report.datasets):
        groups = [[m for m in res.metrics if m != rx.INV_RADCLIQ_V1], [m for m in res.metrics if m == rx.INV_RADCLIQ_V1]]
        for axis, metrics in zip((ax, ax_inv), groups):
            width = 0.8 / max(1, len(res.runs))
            for i, run in enumerate(res.runs):
                est = [res.estimates[run][m] for m in metrics]
                values = np.array([e.value for e in est])
                err = np.array([[e.value - e.low for e in est], [e.high - e.value for e in est]]).clip(min=0)
                axis.bar(np.arange(len(metrics)) + (i - (len(res.runs) - 1) / 2) * width, values, width,
                         yerr=err if len(est) else None, capsize=2.5, color=colors[report.runs.index(run) % len(colors)],
                         edgecolor="black", linewidth=0.4, error_kw={"elinewidth": 0.9})
            axis.set_xticks(np.arange(len(metrics)), metrics)
            axis.grid(axis="y", alpha=0.3)
            axis.set_axisbelow(True)
            if not metrics:
                axis.set_visible(False)
        ax.set_ylim(min(0.0, min(e.low for r in res.runs for m, e in res.estimates[r].items()
                                 if m != rx.INV_RADCLIQ_V1) * 1.1), 1.0)
        ax.set_ylabel("score (0-1)")
        ax_inv.set_ylabel(f"{rx.INV_RADCLIQ_V1} (own scale)")
        ax.set_title(f"{res.dataset} — {res.n_studies} studies", fontsize=11, loc="left")
    level = round(100 * (1 - report.alpha))
    fig.suptitle(f"ReXrank metrics with {level}% bootstrap CIs ({report.n_boot} study resamples)", fontsize=12)
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=colors[i % len(colors)], edgecolor="black", linewidth=0.4)
               for i in range(len(report.runs))]
    fig.legend(handles, report.runs, loc="upper center", ncol=len(report.runs), frameon=False, fontsize=10,
               bbox_to_anchor=(0.5, 1 - 0.45 / (3.8 * n + 0.6)))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.75 / (3.8 * n + 0.6)))
    return fig


def plot_board(report: Report, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = board_figure(report)
    fig.savefig(path, dpi=150)
    plt.close(fig)
