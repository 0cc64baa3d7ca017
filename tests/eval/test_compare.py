"""Evaluation tables: loading per-study scores in several formats, tables, CSV, plot, run-vs-baseline."""
import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl_ext.eval.compare import CompareError, compare, load_run, main, markdown


def _rows(run_shift: float, datasets=(("mimic_cxr", 60), ("iu_xray", 40)), seed=0, drop=()):
    rng = np.random.default_rng(seed)
    rows = []
    for ds, n in datasets:
        ref_rng = np.random.default_rng(len(ds))  # the references are the same for every run
        ref = (ref_rng.random((n, 14)) < 0.3).astype(int)
        hyp = np.where(rng.random((n, 14)) < 0.6 + run_shift, ref, 1 - ref)
        for i in range(n):
            if f"{ds}-{i}" in drop:
                continue
            rows.append({"id": f"{ds}-{i}", "data_source": ds,
                         "radgraph_f1": float(rng.random() * 0.4 + run_shift),
                         "ratescore": float(rng.random() * 0.5 + run_shift), "green": float(rng.random()),
                         "chexbert_hyp": hyp[i].tolist(), "chexbert_ref": ref[i].tolist()})
    return rows


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _write_csv(path, rows):
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    return path


def test_formats_load_to_the_same_scores(tmp_path):
    rows = _rows(0.0)
    (tmp_path / "run_dir").mkdir()
    jsonl = _write_jsonl(tmp_path / "run_dir" / "per_sample.jsonl", rows)
    csv_file = _write_csv(tmp_path / "scores.csv", rows)
    parquet = tmp_path / "scores.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    loaded = [load_run("r", [p]) for p in (jsonl.parent, csv_file, parquet)]
    for other in loaded[1:]:
        assert set(other) == {"mimic_cxr", "iu_xray"}
        for ds in other:
            assert other[ds].ids.tolist() == loaded[0][ds].ids.tolist()
            assert np.array_equal(other[ds].hyp_labels, loaded[0][ds].hyp_labels)
            for m in ("radgraph_f1", "ratescore", "green"):
                assert np.allclose(other[ds].values[m], loaded[0][ds].values[m])
    # Files of one run are concatenated (e.g. one file per test set).
    halves = [_write_jsonl(tmp_path / "a.jsonl", rows[:60]), _write_jsonl(tmp_path / "b.jsonl", rows[60:])]
    split = load_run("r", halves)
    assert {ds: len(s) for ds, s in split.items()} == {"mimic_cxr": 60, "iu_xray": 40}


def test_reads_what_the_metrics_cli_writes(tmp_path):
    """per_sample.jsonl / per_sample.csv as verl_ext.eval.evaluate.write_outputs writes them (no data_source;
    labels as lists or 0/1 strings; RaTE null where unscorable): the point estimates equal its table."""
    from verl_ext.metrics.aggregate import table_from_per_sample
    from verl_ext.eval.evaluate import EvalResult, write_outputs

    records = []
    for r in _rows(0.0, datasets=(("iu_xray", 30),)):
        rec = {"id": r["id"], "generated": "g", "reference": "r", "chexbert_generated": r["chexbert_hyp"],
               "chexbert_reference": r["chexbert_ref"], "chexbert_micro_f1_14": 0.5,
               "radgraph_f1": r["radgraph_f1"], "ratescore": r["ratescore"], "ratescore_status": "ok",
               "green": r["green"], "green_status": "ok"}
        records.append(rec)
    records[3].update(ratescore=None, ratescore_status="reference_without_entities")
    records[5].update(green=None, green_status="unparseable")
    table = table_from_per_sample(records)
    write_outputs(EvalResult(table=table, per_sample=records, notes=[]), str(tmp_path / "scores"))
    for source in (tmp_path / "scores", tmp_path / "scores" / "per_sample.csv"):
        runs = {"A": load_run("A", [("iu_xray", source)])}
        (res,) = compare(runs, n_boot=50).datasets
        assert res.dataset == "iu_xray"
        est = res.estimates["A"]
        for key in ("chexbert_micro_f1_14", "chexbert_macro_f1_14", "chexbert_micro_f1_5", "chexbert_macro_f1_5",
                    "radgraph_f1", "ratescore", "green", "avg"):
            assert est[key].value == pytest.approx(table[key], abs=1e-9), (source, key)
        assert est["ratescore"].n == 29 and est["green"].n == 29
    assert "RaTE: A 29" in markdown(compare(runs, n_boot=20))


def test_unusable_inputs_are_named(tmp_path):
    with pytest.raises(CompareError, match="no id column"):
        load_run("r", [_write_jsonl(tmp_path / "x.jsonl", [{"ratescore": 0.1}])])
    with pytest.raises(CompareError, match="neither metric columns"):
        load_run("r", [_write_jsonl(tmp_path / "y.jsonl", [{"id": "a", "bleu": 0.1}])])
    with pytest.raises(CompareError, match="repeat"):
        load_run("r", [_write_jsonl(tmp_path / "z.jsonl", [{"id": "a", "green": 0.1}, {"id": "a", "green": 0.2}])])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompareError, match="per-study score file"):
        load_run("r", [tmp_path / "empty"])
    assert main(["--run", "bad", "--out", str(tmp_path / "o")]) == 2
    assert main(["--run", "A@=x.jsonl", "--out", str(tmp_path / "o")]) == 2


def test_tables_csv_and_plot(tmp_path):
    files = {
        "SFT": _write_jsonl(tmp_path / "sft.jsonl", _rows(0.0, seed=1)),
        "Dr. GRPO": _write_jsonl(tmp_path / "dr.jsonl", _rows(0.05, seed=2)),
        # EditGRPO misses one IU study: every run is restricted to the common studies of a test set.
        "EditGRPO": _write_jsonl(tmp_path / "edit.jsonl", _rows(0.15, seed=3, drop=("iu_xray-7",))),
    }
    out = tmp_path / "tables"
    argv = ["--out", str(out), "--in-domain", "mimic_cxr", "--n-boot", "200", "--seed", "1"]
    for name, path in files.items():
        argv += ["--run", f"{name}={path}"]
    assert main(argv) == 0
    md = (out / "tables.md").read_text()
    assert "## mimic_cxr (in-domain)" in md and "## iu_xray (out-of-domain)" in md
    assert md.index("## mimic_cxr") < md.index("## iu_xray")
    assert "| Run | Micro-F1-14 | Macro-F1-14 | Micro-F1-5 | Macro-F1-5 | RadGraph F1 | RaTE | GREEN | Avg. |" in md
    assert "Difference to SFT:" in md and "## Avg. score by test set" in md
    assert "dropped: SFT: 1, Dr. GRPO: 1" in md

    with (out / "summary.csv").open() as fh:
        summary = list(csv.DictReader(fh))
    assert len(summary) == 2 * 3 * 8
    iu = [r for r in summary if r["dataset"] == "iu_xray"]
    assert {r["n_studies"] for r in iu} == {"39"} and {r["domain"] for r in iu} == {"out-of-domain"}
    for r in summary:
        assert float(r["ci_low"]) <= float(r["value"]) <= float(r["ci_high"])
    with (out / "differences.csv").open() as fh:
        diffs = list(csv.DictReader(fh))
    assert len(diffs) == 2 * 2 * 8 and {r["baseline"] for r in diffs} == {"SFT"}
    edit_rate = next(r for r in diffs if r["run"] == "EditGRPO" and r["metric"] == "ratescore"
                     and r["dataset"] == "mimic_cxr")
    assert float(edit_rate["ci_low"]) > 0 and float(edit_rate["p_value"]) < 0.05

    import matplotlib.image

    image = matplotlib.image.imread(out / "metrics.png")
    assert image.shape[0] > 800 and image.shape[1] > 1200


def test_identical_runs_and_metric_intersection(tmp_path):
    rows = _rows(0.0)
    no_green = [{k: v for k, v in r.items() if k != "green"} for r in rows]
    runs = {"A": load_run("A", [_write_jsonl(tmp_path / "a.jsonl", rows)]),
            "B": load_run("B", [_write_jsonl(tmp_path / "b.jsonl", no_green)])}
    report = compare(runs, n_boot=100, seed=0)
    for res in report.datasets:
        assert "green" not in res.metrics and "avg" in res.metrics  # only metrics every run has
        for m, d in res.differences["B"].items():
            assert d.delta == 0.0 and d.low <= 0.0 <= d.high and d.p_value == 1.0, m
    assert "Avg. is the mean of the paper's metric columns shown" in markdown(report)
    with pytest.raises(CompareError, match="baseline"):
        compare(runs, baseline="C")


# ------------------------------------------------------------------------------------------------------------------
# The plot and the text say what the tables say.


def _cli(tmp_path, runs: dict, *extra) -> tuple[list[str], str]:
    argv = ["--out", str(tmp_path / "tables"), "--n-boot", "300", "--seed", "0", *extra]
    for name, rows in runs.items():
        argv += ["--run", f"{name}={_write_jsonl(tmp_path / f'{name}.jsonl', rows)}"]
    assert main(argv) == 0
    return argv, (tmp_path / "tables" / "tables.md").read_text()


def test_plot_marks_significance_and_shows_paired_differences(tmp_path):
    """Paired runs whose CIs overlap although the paired difference is clearly positive (the same studies, shifted
    a little): the bars carry a `*` exactly where the difference table does, and the difference panel draws each
    difference with its paired CI, filled where significant."""
    from verl_ext.eval import compare as compare_module

    base = _rows(0.0, datasets=(("mimic_cxr", 80),), seed=4)
    shifted = [dict(r, radgraph_f1=r["radgraph_f1"] + 0.02) for r in base]  # significant, bars overlap
    noise = np.random.default_rng(9)
    jittered = [dict(r, radgraph_f1=r["radgraph_f1"] + float(noise.normal(0, 0.05))) for r in base]
    _, md = _cli(tmp_path, {"SFT": base, "Better": shifted, "Noise": jittered}, "--in-domain", "mimic_cxr")
    runs = {name: load_run(name, [tmp_path / f"{name}.jsonl"]) for name in ("SFT", "Better", "Noise")}
    report = compare(runs, baseline="SFT", n_boot=300, seed=0)
    res = report.datasets[0]
    rg_sft, rg_better = res.estimates["SFT"]["radgraph_f1"], res.estimates["Better"]["radgraph_f1"]
    assert rg_better.low < rg_sft.high and res.differences["Better"]["radgraph_f1"].p_value < 0.05  # the trap
    significant = {(run, m) for run, diffs in res.differences.items() for m, d in diffs.items() if d.p_value < 0.05}
    assert ("Better", "radgraph_f1") in significant and ("Noise", "chexbert_micro_f1_14") not in significant
    avg = {run: res.estimates[run]["avg"].value for run in res.runs}
    assert abs(avg["Noise"] / avg["SFT"] - 1) < 0.005  # printed as "(-0%)" before
    noise_cell = f"{avg['Noise']:.4f} (-{abs(100 * (avg['Noise'] / avg['SFT'] - 1)):.1f}%)"
    assert noise_cell in md and "(-0%" not in md and "(+0%" not in md

    fig = compare_module.figure(report)
    bars, diff = fig.axes[:2]
    assert sum(t.get_text() == "*" for t in bars.texts) == len(significant)
    assert sum(t.get_text() == "*" for t in diff.texts) == len(significant)
    assert "paired difference to SFT" in diff.get_title(loc="left") and diff.get_ylabel() == "Δ vs SFT"
    points = [line for line in diff.lines if line.get_marker() == "o"]
    order = [(run, m) for run in res.differences for m in res.metrics]
    assert len(points) == len(order)
    for line, (run, m) in zip(points, order):
        d = res.differences[run][m]
        assert line.get_ydata()[0] == pytest.approx(d.delta)
        assert (line.get_markerfacecolor() != "white") == ((run, m) in significant)
    fig.clf()


def test_avg_text_with_ce_metrics_names_the_columns_it_averages(tmp_path):
    _, md = _cli(tmp_path, {"SFT": _rows(0.0, seed=1), "RL": _rows(0.05, seed=2)}, "--ce-metrics")
    assert "Avg. is the mean of the metric columns shown" not in md
    assert "Avg. = mean of Micro-F1-14, Macro-F1-14, Micro-F1-5, Macro-F1-5, RadGraph F1, RaTE, GREEN." in md
    assert "| CE-P | CE-R | CE-F1 |" in md
    with (tmp_path / "tables" / "summary.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["dataset"] == "mimic_cxr" and r["run"] == "RL"]
    value = {r["metric"]: float(r["value"]) for r in rows}
    averaged = ["chexbert_micro_f1_14", "chexbert_macro_f1_14", "chexbert_micro_f1_5", "chexbert_macro_f1_5",
                "radgraph_f1", "ratescore", "green"]
    assert value["avg"] == pytest.approx(np.mean([value[m] for m in averaged]), abs=1e-6)


def test_relative_change_never_prints_minus_zero():
    from verl_ext.eval.compare import relative_change

    assert relative_change(1.06, 1.0) == "+6%"
    assert relative_change(0.5475, 0.5477) == "-0.04%"
    assert relative_change(0.5361, 0.5368) == "-0.1%"
    assert relative_change(0.5, 0.5) == "±0%"
