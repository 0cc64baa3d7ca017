"""The DDSampling command end to end on CPU: tiny Qwen2.5-VL (transformers backend), tiny CheXbert, 6 studies."""
import csv
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

REFS = ("Small left pleural effusion.", "Mild cardiomegaly.", "The lungs are clear.", "Moderate pulmonary edema.",
        "No acute abnormality.", "Bibasilar atelectasis.")


def _write_train(path):
    from verl_ext.data.schema import make_row, row_schema

    rng = np.random.default_rng(0)
    rows = []
    for i, ref in enumerate(REFS):
        buf = io.BytesIO()
        Image.fromarray((rng.random((56, 56)) * 255).astype("uint8"), mode="L").save(buf, format="PNG")
        rows.append(make_row(data_source="mimic_cxr", prompt_text="<image>\nDescribe the findings.", findings=ref,
                             images=[{"bytes": buf.getvalue(), "path": f"{i}.png", "min_pixels": 3136,
                                      "max_pixels": 3136}],
                             extra_info={"split": "train", "index": i, "study_id": f"s{i}", "n_images": 1}))
    pq.write_table(pa.Table.from_pylist(rows, schema=row_schema("bytes")), path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from verl_ext.testing.scorer_models import build_chexbert
    from verl_ext.testing.tiny_qwen import build_tiny_qwen25_vl

    tmp = tmp_path_factory.mktemp("dds")
    data = tmp / "data"
    data.mkdir()
    _write_train(data / "train-00000.parquet")
    return {"tmp": tmp, "data": data, "model": build_tiny_qwen25_vl(tmp / "qwen"),
            "chexbert": build_chexbert(tmp / "chexbert")}


def _args(setup, out):
    cx = setup["chexbert"]
    return ["--model", str(setup["model"]), "--data", str(setup["data"]), "--out", str(out),
            "--chexbert-checkpoint", str(cx / "chexbert.pth"), "--chexbert-bert", str(cx / "bert"),
            "--k", "3", "--share", "0.5", "--seed", "7", "--backend", "hf", "--max-new-tokens", "12",
            "--device", "cpu"]


def test_selects_writes_shards_manifest_and_report(setup, capsys):
    from verl_ext.algorithms.ddsampling import diagnostic_diversity
    from verl_ext.clinical.chexbert import CheXbertLabeler
    from verl_ext.selection.ddsampling import main

    out = setup["tmp"] / "out"
    assert main(_args(setup, out)) == 0
    printed = capsys.readouterr().out
    assert "Zero-variance" in printed and "selected 3 of 6" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_total"] == 6 and manifest["n_selected"] == 3 and manifest["settings"]["seed"] == 7
    shard = pq.read_table(out / "train-00000.parquet")
    assert shard.schema == pq.read_table(setup["data"] / "train-00000.parquet").schema
    assert sorted(e["study_id"] for e in shard.column("extra_info").to_pylist()) == sorted(manifest["selected_ids"])
    with (out / "scores.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and sum(int(r["selected"]) for r in rows) == 3
    # D(I) recomputed independently from the generations and the labeler
    cx = setup["chexbert"]
    labeler = CheXbertLabeler(str(cx / "chexbert.pth"), str(cx / "bert"), device="cpu")
    gens = {}
    for k in range(3):
        for line in (out / "generations" / f"k{k:02d}.jsonl").read_text().splitlines():
            rec = json.loads(line)
            gens.setdefault(rec["id"], []).append(rec["generated"])
    for r in rows:
        expected = diagnostic_diversity(labeler.labels(gens[r["id"]], uncertain="negative"))
        assert float(r["diversity"]) == pytest.approx(expected, abs=1e-6)
    report = json.loads((out / "report.json").read_text())
    assert report["full"]["groups"] == 6 and report["selected"]["groups"] == 3
    assert (out / "report.png").stat().st_size > 0 and "DDSampling (3)" in (out / "report.md").read_text()


def test_rerun_resumes_and_gives_the_same_selection(setup):
    from verl_ext.selection.ddsampling import main

    out = setup["tmp"] / "out"
    before = json.loads((out / "manifest.json").read_text())["selected_ids"]
    sizes = [(out / "generations" / f"k{k:02d}.jsonl").stat().st_size for k in range(3)]
    assert main(_args(setup, out)) == 0
    assert [(out / "generations" / f"k{k:02d}.jsonl").stat().st_size for k in range(3)] == sizes  # nothing regenerated
    assert json.loads((out / "manifest.json").read_text())["selected_ids"] == before


def test_incomplete_generations_stop_the_run(setup):
    from verl_ext.selection.ddsampling import main

    with pytest.raises(RuntimeError, match="lack some of their 3 generations"):
        main(_args(setup, setup["tmp"] / "partial") + ["--limit", "2"])


def test_help_and_bad_arguments(setup, capsys):
    from verl_ext.selection.ddsampling import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "DDSampling" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(_args(setup, setup["tmp"] / "x")[:-8] + ["--k", "1"])
