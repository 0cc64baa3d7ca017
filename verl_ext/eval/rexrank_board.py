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


def snapshot_path(dataset: str, board: str) -> Path | None:
    name = SNAPSHOTS.get((dataset, board))
    return RESOURCES / name if name else None


def _fmt(value: float | None) -> str:
    return "" if value is None or not np.isfinite(value) else f"{round(float(value), 3):g}"


def leaderboard(published: list[dict], ours: dict[str, dict[str, float]], *, date: str = "",
                institution: str = "", url: str = "") -> list[dict]:
    """Published rows plus one row per run (``ours``: run -> column -> value), in ReXrank's CSV format, ranked by
    1/RadCliQ-v1 (higher first; rows without it last). Our rows carry ``"ours": True``."""
    rows = [dict(r, ours=False) for r in published]
    for name, values in ours.items():
        row = {c: "" for c in rx.RESULTS_HEADER}
        row.update({"Date": date, "Model Name": name, "Institution": institution, "Model URL": url, "ours": True})
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
    lines = [f"## Where it would stand: {test_set}", "",
             f"Published rows: {source}; ranked by {rx.RANK_BY} as rexrank.ai ranks. Our rows in bold.", "",
             "| Rank | Model | Institution | " + " | ".join(cols) + " |", "|" + "---|" * (3 + len(cols))]
    for r in rows:
        cells = [r["Rank"], r["Model Name"], r.get("Institution", "")] + [r.get(c, "") or "—" for c in cols]
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
                  date: str = "", institution: str = "", url: str = "") -> dict[str, Path]:
    """tables.md / summary.csv / differences.csv / metrics.png (as ``verl_ext.eval.compare``), per-study JSON lines,
    and ``leaderboard_<set>_<board>.csv`` for each test set that has published rows."""
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
    if notes:
        text += "\nNotes:\n\n" + "".join(f"* {n}\n" for n in notes)
    for res in report.datasets:
        published, source = (leaderboards or {}).get(res.dataset, (None, ""))
        if published is None:
            continue
        ours = {run: {m: e.value for m, e in res.estimates[run].items()} for run in res.runs}
        rows = leaderboard(published, ours, date=date, institution=institution, url=url)
        path = out / f"leaderboard_{res.dataset.replace('/', '_')}.csv"
        write_leaderboard(rows, path)
        files[path.name] = path
        text += "\n" + leaderboard_markdown(res.dataset, rows, source)
    (out / "tables.md").write_text(text + "\n", encoding="utf-8")
    compare.write_csv(report, out)
    compare.plot(report, out / "metrics.png")
    for name in ("tables.md", "summary.csv", "differences.csv", "metrics.png"):
        files[name] = out / name
    return files
