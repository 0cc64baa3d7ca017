"""python -m verl_ext.eval.evaluate (and its alias python -m verl_ext.metrics) end to end on the tiny fixtures; the per-sample file reproduces the table."""

import csv
import json
import subprocess
import sys

import pandas as pd
import pytest

from verl_ext.metrics.aggregate import TABLE_COLUMNS, table_from_per_sample
from verl_ext.eval.evaluate import EvalConfig, build_parser, evaluate, main, read_rows

ROWS = [
    {
        "id": "a",
        "generated": "The heart is enlarged. Small left pleural effusion.",
        "reference": "Heart size is normal. No pleural effusion.",
    },
    {"id": "b", "generated": "", "reference": "Mild cardiomegaly. Bibasilar atelectasis."},
    {"id": "c", "generated": "Lungs are clear.", "reference": "Lungs are clear."},
    {"id": "d", "generated": "ok", "reference": "No acute cardiopulmonary process."},
]


def model_args(p):
    return [
        "--rate-ner",
        str(p.rate_ner),
        "--biolord",
        str(p.biolord),
        "--chexbert-checkpoint",
        str(p.chexbert_checkpoint),
        "--chexbert-bert",
        str(p.chexbert_bert),
        "--radgraph-cache",
        str(p.radgraph_cache),
        "--radgraph-model-type",
        p.radgraph_model_type,
        "--device",
        "cpu",
    ]


def test_help_lists_model_options():
    text = build_parser().format_help()
    for opt in (
        "--input",
        "--out",
        "--rate-ner",
        "--biolord",
        "--chexbert-checkpoint",
        "--radgraph-cache",
        "--green-model",
        "--skip",
    ):
        assert opt in text


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_cli_writes_table_and_per_sample(tmp_path, scorer_paths, fmt, capsys):
    src = tmp_path / f"rows.{fmt}"
    if fmt == "jsonl":
        src.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    elif fmt == "csv":
        pd.DataFrame(ROWS).to_csv(src, index=False)
    else:
        pd.DataFrame(ROWS).to_parquet(src)
    out = tmp_path / "out"
    assert main(["--input", str(src), "--out", str(out), *model_args(scorer_paths)]) == 0
    printed = capsys.readouterr().out
    assert "Micro-F1-14" in printed and "RadGraph F1" in printed and "GREEN skipped" in printed
    table = json.loads((out / "table.json").read_text())
    per = [json.loads(line) for line in (out / "per_sample.jsonl").read_text().splitlines()]
    assert [r["id"] for r in per] == ["a", "b", "c", "d"]
    assert (
        per[1]["radgraph_f1"] == 0.0 and per[1]["ratescore"] == 0.0 and per[1]["ratescore_status"] == "empty_generated"
    )
    assert per[3]["ratescore_status"] == "generated_without_entities" and per[3]["ratescore"] == 0.0
    assert per[2]["chexbert_micro_f1_14"] in (0.0, 1.0) and per[2]["radgraph_f1"] in (0.0, 1.0)
    assert all(len(r["chexbert_generated"]) == 14 and r["green_status"] == "skipped" for r in per)
    again = table_from_per_sample(per)
    for c in TABLE_COLUMNS + ("avg",):
        assert again[c] == table[c]
    assert table["green"] is None and "green" not in table["avg_columns"] and table["n"] == 4
    with open(out / "table.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[0]["chexbert_micro_f1_14"]) == pytest.approx(table["chexbert_micro_f1_14"])
    with open(out / "per_sample.csv") as f:
        assert len(next(csv.DictReader(f))["chexbert_generated"]) == 14


def test_api_with_canned_green_and_skips(scorer_paths):
    from verl_ext.clinical.green import GreenScorer

    canned = (
        "[Clinically Significant Errors]:\n(a) False report of a finding in the candidate: 1. X\n\n"
        "[Matched Findings]:\n1. Y\n"
    )
    green = GreenScorer(generate_fn=lambda prompts: [canned] * (len(prompts) - 1) + ["unparseable"])
    rows = read_rows_from(ROWS)
    res = evaluate(
        rows, EvalConfig(models=scorer_paths.as_dict(), device="cpu", skip=("radgraph",)), green_scorer=green
    )
    assert [r["green"] for r in res.per_sample] == [0.5, 0.5, 0.5, None]
    assert res.table["green"] == pytest.approx(0.5) and res.table["radgraph_f1"] is None
    assert any("could not be parsed" in n for n in res.notes)
    assert "radgraph_f1" not in res.per_sample[0]
    with pytest.raises(ValueError, match="empty reference"):
        evaluate(
            [{"id": "x", "generated": "a", "reference": " "}], EvalConfig(models=scorer_paths.as_dict(), device="cpu")
        )


def read_rows_from(rows):
    return [dict(r) for r in rows]


def test_read_rows_columns(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps({"uid": 7, "pred": "a", "gt": "b"}) + "\n")
    assert read_rows(str(p), "uid", "pred", "gt") == [{"id": "7", "generated": "a", "reference": "b"}]
    with pytest.raises(ValueError, match="--generated-col"):
        read_rows(str(p))


@pytest.mark.parametrize("module", ["verl_ext.eval.evaluate", "verl_ext.metrics"])
def test_module_entry_point_help(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--green-model" in out.stdout


# ------------------------------------------------------------------------------------------------------------------
# The README command as a user runs it: checked model paths, progress, resume, data_source kept for compare.

STUDIES = [dict(r, id=f"s{i}{r['id']}", data_source="mimic_cxr") for i in range(2) for r in ROWS]  # 8 rows


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_wrong_radgraph_model_type_fails_before_any_model_loads(tmp_path, scorer_paths, capsys):
    """A RadGraph model type the cache does not hold (the fixtures build `radgraph-xl`) used to fail with a traceback
    after CheXbert had run; it fails at once, naming the option and the type the cache holds."""
    from verl_ext.clinical import models

    src = _write_jsonl(tmp_path / "rows.jsonl", STUDIES)
    args = model_args(scorer_paths)
    i = args.index("--radgraph-model-type")
    args[i + 1] = "radgraph"
    before = dict(models.LOAD_COUNTS)
    assert main(["--input", str(src), "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert "--radgraph-model-type='radgraph'" in err and "set --radgraph-model-type=radgraph-xl" in err
    assert "Traceback" not in err and dict(models.LOAD_COUNTS) == before
    assert not (tmp_path / "out" / "per_sample.jsonl").exists()
    # a GREEN model that is given but not there is a typo, not a reason to skip the column quietly
    argv = ["--input", str(src), "--out", str(tmp_path / "out"), *model_args(scorer_paths)]
    assert main([*argv, "--green-model", str(tmp_path / "GREEN-radllama2-7b")]) == 2
    assert "--green-model=" in capsys.readouterr().err and dict(models.LOAD_COUNTS) == before


def test_interrupted_evaluation_resumes_and_keeps_data_source(tmp_path, scorer_paths, capsys, monkeypatch):
    from verl_ext.eval import compare, evaluate as evaluate_module

    src = _write_jsonl(tmp_path / "gen.jsonl", STUDIES)
    out = tmp_path / "scores"
    argv = ["--input", str(src), "--out", str(out), "--batch-size", "3", *model_args(scorer_paths)]
    scored: list[str] = []
    real_score = evaluate_module._Scoring.score

    def score(self, chunk, stage=None):
        if len(scored) >= 3:
            raise KeyboardInterrupt  # killed during the second chunk
        scored.extend(r["id"] for r in chunk)
        return real_score(self, chunk, stage)

    monkeypatch.setattr(evaluate_module._Scoring, "score", score)
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    with (out / "per_sample.jsonl").open("a") as fh:
        fh.write('{"id": "s1a", "data_so')  # a torn line from the kill
    assert [json.loads(x)["id"] for x in (out / "per_sample.jsonl").read_text().splitlines()[:3]] == scored
    capsys.readouterr()

    scored.clear()
    monkeypatch.setattr(evaluate_module._Scoring, "score",
                        lambda self, chunk, stage=None: (scored.extend(r["id"] for r in chunk),
                                                         real_score(self, chunk, stage))[1])
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert scored == [r["id"] for r in STUDIES[3:]]  # only the rows not yet scored
    assert "evaluate: 100%" in captured.err and "5/5" in captured.err  # the progress bar
    per = [json.loads(x) for x in (out / "per_sample.jsonl").read_text().splitlines()]
    assert [r["id"] for r in per] == [r["id"] for r in STUDIES] and {r["data_source"] for r in per} == {"mimic_cxr"}

    fresh = tmp_path / "fresh"
    assert main([*argv[:2], "--input", str(src), "--out", str(fresh), "--no-progress", *argv[4:]]) == 0
    table, fresh_table = (json.loads((d / "table.json").read_text()) for d in (out, fresh))
    assert table == fresh_table

    # another setting on the same --out is refused (the file would mix two runs)
    assert main([*argv, "--chexbert-uncertain", "negative"]) == 2
    assert "chexbert_uncertain" in capsys.readouterr().err

    # compare titles the run by its data_source, not "## test"
    assert compare.main(["--run", f"EditGRPO={out}", "--out", str(tmp_path / "tables"), "--n-boot", "50"]) == 0
    md = (tmp_path / "tables" / "tables.md").read_text()
    assert "## mimic_cxr" in md and "## test" not in md
