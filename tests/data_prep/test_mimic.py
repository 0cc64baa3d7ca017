"""MIMIC-CXR converter on a synthetic MIMIC-CXR-JPG + reports layout with the datasets.md §7.2 cases."""
from __future__ import annotations

import json

import pytest

from verl_ext.data.cli import main
from verl_ext.data.output import read_rows, rows_by_study
from verl_ext.data.sections import clean_text
from verl_ext.testing import synthetic


def _case(layout, name):
    (sid,) = layout.cases[name]
    return sid


def _all_rows(out):
    return rows_by_study(out)


def test_accounting_every_study(mimic_layout, mimic_out):
    out, stats = mimic_out
    total_layout = len({s.study_id for s in mimic_layout.studies()}) + 1  # + the orphan split row's study
    assert sum(e["input_studies"] for e in stats["splits"].values()) == total_layout
    for split, e in stats["splits"].items():
        assert e["accounted"] and e["samples"] + e["dropped_total"] == e["input_studies"], split
        assert e["samples"] == len(read_rows(out, split))
    assert json.loads((out / "stats.json").read_text()) == stats


def test_drop_reasons(mimic_layout, mimic_out):
    _, stats = mimic_out
    train = stats["splits"]["train"]["dropped"]
    # impression-only (x2), FINDINGS AND IMPRESSION (-> impression), no header layout, empty FINDINGS
    assert train["no_findings"] == 5
    assert train["report_unreadable"] == 1 and train["report_missing"] == 1
    assert train["no_readable_image"] == 1 and train["no_usable_view"] == 1
    assert train["no_image_metadata"] == 2  # a study only in the split file + the orphan split row's study
    assert stats["splits"]["unknown"]["dropped"] == {"no_split": 1}
    notes = stats["splits"]["train"]["notes"]
    assert notes["image_missing"] == 2  # missing_image's PA + all_images_missing's PA
    assert notes["image_unreadable"] == 1
    assert notes["split_row_without_metadata"] == 3
    assert notes["metadata_row_without_split"] == 1
    assert notes["view_from_code_meaning"] == 1
    assert notes["excluded_view:SWIMMERS"] == 2 and notes["excluded_view:AP AXIAL"] == 2
    assert stats["splits"]["test"]["notes"]["prior_in_other_split_ignored"] == 1


def test_kept_study_prompt_and_target(mimic_layout, mimic_out):
    out, _ = mimic_out
    rows = _all_rows(out)
    sid = _case(mimic_layout, "all_sections")
    study = mimic_layout.study(sid)
    row = rows[sid]
    text = row["prompt"][0]["content"]
    assert text.startswith("<image><image>\n\nAs a radiologist assistant, your task is to interpret a chest X-ray "
                           "study. Given the current PA image, and the current lateral image.\n")
    assert "Please provide a detailed description of the findings from the image(s) in the current study." in text
    assert text.endswith(f"INDICATION: {clean_text(study.indication)}\nTECHNIQUE: {clean_text(study.technique)}\n"
                         f"COMPARISON: None.")
    assert study.findings not in text and study.impression not in text  # the target never leaks into the prompt
    assert row["reward_model"] == {"style": "model", "ground_truth": clean_text(study.findings)}
    assert row["messages"] == [row["prompt"][0], {"role": "assistant", "content": clean_text(study.findings)}]
    assert row["data_source"] == "mimic_cxr" and row["ability"] == "radiology_report_generation"
    e = row["extra_info"]
    assert e["view_positions"] == ["PA", "LATERAL"] and e["has_prior"] is False and e["patient_id"] == "19000001"
    assert e["impression"] == clean_text(study.impression)
    assert [im["min_pixels"] for im in row["images"]] == [56 * 56] * 2


def test_section_edge_cases(mimic_layout, mimic_out):
    rows = _all_rows(mimic_out[0])
    for dropped in ("impression_only", "findings_and_impression", "report_no_headers", "empty_findings",
                    "report_not_utf8", "report_missing", "all_images_missing", "only_odd_views", "split_only",
                    "no_split_row"):
        assert _case(mimic_layout, dropped) not in rows, dropped
    sid = _case(mimic_layout, "double_findings")
    assert rows[sid]["reward_model"]["ground_truth"] == clean_text(mimic_layout.study(sid).findings)
    sid = _case(mimic_layout, "history_instead_of_indication")
    assert f"INDICATION: {clean_text(mimic_layout.study(sid).indication)}\n" in rows[sid]["prompt"][0]["content"]


def test_chronological_priors(mimic_layout, mimic_out):
    rows = _all_rows(mimic_out[0])
    # 59000003 (2180-06-15) < 59000002 (2181-03-01 08:05:56.875) < 59000001 (same day 10:10:10) < 59000000 (2182)
    prior = {sid: rows[sid]["extra_info"]["prior_study_id"] for sid in mimic_layout.cases["chronology"]}
    assert prior == {"59000003": None, "59000002": "59000003", "59000001": "59000002", "59000000": "59000001"}
    row = rows["59000000"]
    assert row["extra_info"]["image_roles"] == ["current_frontal", "current_lateral", "prior_frontal", "prior_lateral"]
    assert "Given the current PA image, the current lateral image, the prior PA image, and the prior lateral " \
           "image." in row["prompt"][0]["content"]
    # the prior's images are the prior study's files
    assert all("/s59000001/" in p for p in row["extra_info"]["image_paths"][2:])
    # priors never cross splits; a test patient's own earlier study counts
    assert rows[_case(mimic_layout, "cross_split")]["extra_info"]["has_prior"] is False
    assert rows[_case(mimic_layout, "cross_split")]["extra_info"]["split"] == "test"
    assert rows[_case(mimic_layout, "test_patient")]["extra_info"]["has_prior"] is True
    assert rows[_case(mimic_layout, "validate_patient")]["extra_info"]["split"] == "val"


def test_prior_eligibility(mimic_layout, mimic_out, tmp_path, pixel_args):
    rows = _all_rows(mimic_out[0])
    first, middle, last = (_case(mimic_layout, c) for c in ("prior_chain_first", "prior_chain_no_findings",
                                                            "prior_chain"))
    assert middle not in rows
    assert rows[last]["extra_info"]["prior_study_id"] == middle  # default: any earlier study is a prior
    main("mimic_cxr", ["--mimic-cxr-jpg", str(mimic_layout.paths["jpg_root"]), "--reports",
                       str(mimic_layout.paths["reports"]), "--out", str(tmp_path), "--no-progress",
                       "--prior-requires-findings", *pixel_args])
    assert _all_rows(tmp_path)[last]["extra_info"]["prior_study_id"] == first


def test_views(mimic_layout, mimic_out):
    rows = _all_rows(mimic_out[0])

    def views(case):
        return rows[_case(mimic_layout, case)]["extra_info"]["view_positions"]

    assert views("ap_only") == ["AP"]
    assert "Given the current AP image.\n" in rows[_case(mimic_layout, "ap_only")]["prompt"][0]["content"]
    assert views("pa_ll") == ["PA", "LL"]
    assert "the current left lateral image" in rows[_case(mimic_layout, "pa_ll")]["prompt"][0]["content"]
    assert views("odd_views") == ["PA"]
    assert views("nan_view_fallback") == ["PA", "LATERAL"]
    assert views("nan_view_unknown") == ["LATERAL"]
    assert views("no_frontal") == ["LATERAL"]
    assert views("missing_image") == ["LATERAL"]
    assert views("corrupt_image") == ["PA"]
    assert views("partial_split_rows") == ["PA", "LATERAL"]
    many = rows[_case(mimic_layout, "many_images")]["extra_info"]
    assert many["n_images"] == 6 and many["view_positions"] == ["PA", "AP", "LATERAL", "LL", "PA", "LATERAL"]
    assert many["image_roles"][-2:] == ["prior_frontal", "prior_lateral"]
    for row in rows.values():
        assert row["prompt"][0]["content"].count("<image>") == len(row["images"]) == row["extra_info"]["n_images"]
        assert 1 <= len(row["images"]) <= 6


def test_options_zip_require_frontal_no_prior_path_mode(mimic_layout, tmp_path, pixel_args):
    patients = [p for p in mimic_layout.patients if not p.patient_id.startswith("190000")]
    layout = synthetic.write_mimic_cxr(tmp_path / "src", patients, seed=3, reports="zip")
    base = ["--mimic-cxr-jpg", str(layout.paths["jpg_root"]), "--reports", str(layout.paths["reports"]),
            "--no-progress", *pixel_args]
    stats = main("mimic_cxr", base + ["--out", str(tmp_path / "a"), "--require-frontal", "--no-prior",
                                      "--image-mode", "path"])
    rows = _all_rows(tmp_path / "a")
    assert _case(layout, "no_frontal") not in rows and stats["splits"]["train"]["dropped"]["no_frontal"] >= 1
    assert all(not r["extra_info"]["has_prior"] for r in rows.values())
    assert stats["splits"]["train"]["pct_with_prior"] == 0.0
    sid = _case(layout, "all_sections")  # the zip's reports parse like the folder's
    assert rows[sid]["reward_model"]["ground_truth"] == clean_text(layout.study(sid).findings)
    from PIL import Image

    for im in rows[sid]["images"]:
        assert set(im) == {"image", "min_pixels", "max_pixels"}
        with Image.open(im["image"]) as pic:
            assert pic.size == (56, 56)


def test_strict_stops_on_data_faults(mimic_layout, tmp_path, pixel_args):
    with pytest.raises(SystemExit) as err:
        main("mimic_cxr", ["--mimic-cxr-jpg", str(mimic_layout.paths["jpg_root"]), "--reports",
                           str(mimic_layout.paths["reports"]), "--out", str(tmp_path), "--no-progress", "--strict",
                           *pixel_args])
    assert err.value.code == 2


def test_workers_and_restart(mimic_layout, mimic_out, tmp_path, pixel_args):
    out1, stats1 = mimic_out
    args = ["--mimic-cxr-jpg", str(mimic_layout.paths["jpg_root"]), "--reports", str(mimic_layout.paths["reports"]),
            "--out", str(tmp_path), "--no-progress", "--workers", "2", "--shard-size", "7", *pixel_args]
    stats2 = main("mimic_cxr", args)
    assert len(stats2["splits"]["train"]["files"]) > 1
    for split in ("train", "val", "test"):
        a, b = rows_by_study(out1, [split]), rows_by_study(tmp_path, [split])
        assert a.keys() == b.keys()
        for sid in a:
            assert a[sid]["images"] == b[sid]["images"] and a[sid]["prompt"] == b[sid]["prompt"]
            assert a[sid]["extra_info"]["prior_study_id"] == b[sid]["extra_info"]["prior_study_id"]
    for split in stats1["splits"]:
        for key in ("samples", "dropped", "notes", "images_per_sample_mean", "pct_with_prior"):
            assert stats1["splits"][split][key] == stats2["splits"][split][key]
    # rerun: every shard is complete, nothing is rewritten
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.parquet")}
    stats3 = main("mimic_cxr", args)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.parquet")} == mtimes
    assert stats3["splits"] == stats2["splits"]
    # an interrupted run: one shard lost -> only that one is redone; a changed option redoes everything
    victim = sorted(tmp_path.glob("train-*.parquet"))[0]
    victim.unlink()
    (tmp_path / "_progress" / victim.name.replace(".parquet", ".json")).unlink()
    stats4 = main("mimic_cxr", args)
    assert victim.exists() and stats4["splits"] == stats2["splits"]
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.parquet") if p != victim} == \
        {k: v for k, v in mtimes.items() if k != victim.name}
    main("mimic_cxr", args + ["--missing-value", "none given"])
    assert all(p.stat().st_mtime_ns != mtimes[p.name] for p in tmp_path.glob("*.parquet"))


def test_r2gen_split_file_one_image_per_sample(tmp_path, pixel_args):
    """DEER trains and tests MIMIC-CXR on R2Gen's annotation.json (issue 21): its split, its sample unit (one image,
    R2Gen's MimiccxrSingleImageDataset), its report as the target; the context lines from the official report."""
    import gzip
    import json

    import pandas as pd

    from verl_ext.data.cli import main
    from verl_ext.data.output import rows_by_study
    from verl_ext.testing.released import write_mimic_release

    rel = write_mimic_release(tmp_path / "src")
    jpg = rel.paths["jpg_root"]
    with gzip.open(jpg / "mimic-cxr-2.0.0-metadata.csv.gz", "rt") as fh:
        meta = pd.read_csv(fh, dtype=str)
    normal = meta[meta["study_id"] == rel.cases["normal"]]
    other = meta[meta["study_id"] == rel.cases["impression_only"]].iloc[0]

    def item(row, split, report):
        path = f"p{row.subject_id[:2]}/p{row.subject_id}/s{row.study_id}/{row.dicom_id}.jpg"
        return {"id": row.dicom_id, "study_id": int(row.study_id), "subject_id": int(row.subject_id),
                "report": report, "image_path": [path], "split": split}

    ann = {"train": [item(r, "train", "the lungs are clear.") for r in normal.itertuples()],
           "val": [], "test": [item(other, "test", "no pleural effusion.")]}
    ann["train"].append(dict(ann["train"][0]))  # an id listed twice: one sample
    ann["test"].append({"id": "x", "report": "r"})  # no image path: a malformed item
    no_report = dict(item(other, "test", "no pleural effusion."), id="no-report", study_id=59999999)
    ann["test"].append(no_report)  # its official report does not exist: kept, without context lines
    split_file = tmp_path / "annotation.json"
    split_file.write_text(json.dumps(ann))
    out = tmp_path / "out"
    stats = main("mimic_cxr", ["--mimic-cxr-jpg", str(jpg), "--reports", str(rel.paths["reports"]),
                               "--split-file", str(split_file), "--out", str(out), "--no-progress", *pixel_args])
    assert stats["splits"]["train"]["samples"] == 2 and stats["splits"]["test"]["samples"] == 2
    assert stats["splits"]["test"]["notes"]["context_report_missing"] == 1
    assert stats["splits"]["train"]["notes"]["duplicate_record"] == 1
    assert stats["splits"]["test"]["dropped"] == {"malformed_record": 1}
    rows = rows_by_study(out)
    pa, lateral = (rows[d] for d in normal["dicom_id"])
    for row, view in ((pa, "PA"), (lateral, "LATERAL")):
        e = row["extra_info"]
        assert e["n_images"] == 1 and e["view_positions"] == [view] and e["has_prior"] is False
        assert row["reward_model"]["ground_truth"] == "the lungs are clear."  # R2Gen's report, not ours
        assert e["indication"] == "___F with cough"  # the official report's context line
    assert rows[other.dicom_id]["reward_model"]["ground_truth"] == "no pleural effusion."
    assert rows["no-report"]["extra_info"]["indication"] == ""
