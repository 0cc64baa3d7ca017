"""Every converter on fixtures in its dataset's released layout (see `released` for the public source of each
format fact), plus the exit-status contract: malformed input -> exit 2 with one line naming the file; an empty
split or too many drops -> exit 3 with the top drop causes, unless --allow-empty."""
from __future__ import annotations

import gzip
import io
import json
import shutil

import pytest
from PIL import Image

from verl_ext.testing.released import (MIMIC_HEADER_CASES, write_chexpert_release, write_iu_release,
                                       write_mambaxray_split, write_mimic_release, write_padchest_release,
                                       write_rexgradient_release)
from verl_ext.data.cli import main
from verl_ext.data.common import InputError
from verl_ext.data.output import rows_by_study


def run(dataset, args, tmp_path, pixel_args, name="out"):
    return main(dataset, [*args, "--out", str(tmp_path / name), "--no-progress", *pixel_args])


def expect_exit(code, dataset, args, tmp_path, pixel_args, capsys) -> str:
    with pytest.raises(SystemExit) as err:
        run(dataset, args, tmp_path, pixel_args, name="failed")
    assert err.value.code == code
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------
# MIMIC-CXR


@pytest.fixture
def mimic(tmp_path):
    rel = write_mimic_release(tmp_path / "src")
    return rel, ["--mimic-cxr-jpg", str(rel.paths["jpg_root"]), "--reports", str(rel.paths["reports"])]


def test_mimic_official_typo_headers_and_view_titles_keep_findings(mimic, tmp_path, pixel_args):
    rel, args = mimic
    stats = run("mimic_cxr", args, tmp_path, pixel_args)
    rows = rows_by_study(tmp_path / "out")
    for case in ("normal", *MIMIC_HEADER_CASES):
        sid = rel.cases[case]
        assert rows[sid]["reward_model"]["ground_truth"].startswith(f"Case {case}: the lungs are clear"), case
    assert rel.cases["impression_only"] not in rows
    assert stats["splits"]["train"]["dropped"] == {"no_findings": 1}


def test_mimic_metadata_that_is_not_gzip(mimic, tmp_path, pixel_args, capsys):
    rel, args = mimic
    meta = rel.paths["jpg_root"] / "mimic-cxr-2.0.0-metadata.csv.gz"
    text = gzip.decompress(meta.read_bytes())
    meta.write_bytes(text)  # plain CSV under a .gz name
    line = expect_exit(2, "mimic_cxr", args, tmp_path, pixel_args, capsys)
    assert str(meta) in line and "gzip" in line
    assert "Traceback" not in capsys.readouterr().err
    with pytest.raises(InputError):
        run("mimic_cxr", [*args, "--debug"], tmp_path, pixel_args)


def test_mimic_split_file_missing_column(mimic, tmp_path, pixel_args, capsys):
    rel, args = mimic
    split = rel.paths["jpg_root"] / "mimic-cxr-2.0.0-split.csv.gz"
    rows = gzip.decompress(split.read_bytes()).decode().splitlines()
    split.write_bytes(gzip.compress("\n".join(",".join(r.split(",")[:3]) for r in rows).encode()))
    line = expect_exit(2, "mimic_cxr", args, tmp_path, pixel_args, capsys)
    assert str(split) in line and "split" in line.split("column")[1]


# ---------------------------------------------------------------------------------------------------------------
# IU-Xray


def test_iu_release_ids_blank_test_key(tmp_path, pixel_args):
    rel = write_iu_release(tmp_path / "src")
    stats = run("iu_xray", ["--root", str(rel.root)], tmp_path, pixel_args)
    rows = rows_by_study(tmp_path / "out")
    assert stats["splits"]["test"]["samples"] == 2  # the blank key's items keep their own "split": "test"
    assert stats["splits"]["test"]["notes"]["split_from_item_field"] == 2
    assert stats["splits"]["train"]["samples"] == 3  # train + val (merged)
    for case in ("openi_style_id", "plain_id", "three_group_id"):
        e = rows[rel.cases[case]]["extra_info"]
        assert e["indication"] == f"Indication of {case}.", case  # the Kaggle context joined on uid
        assert e["view_positions"] == ["FRONTAL", "LATERAL"], case
        assert e["patient_id"] == "CXR" + rel.cases[case][3:].split("_")[0]


def test_iu_csv_missing_column_and_broken_json(tmp_path, pixel_args, capsys):
    rel = write_iu_release(tmp_path / "src")
    reports = rel.root / "indiana_reports.csv"
    lines = reports.read_text().splitlines()
    reports.write_text("\n".join(",".join(ln.split(",")[:5]) for ln in lines))  # drops comparison and later
    line = expect_exit(2, "iu_xray", ["--root", str(rel.root)], tmp_path, pixel_args, capsys)
    assert str(reports) in line and "comparison" in line
    (rel.root / "annotation.json").write_text('{"train": [{"id": "CXR1_1_IM-0001",')
    shutil.copy(rel.root / "indiana_projections.csv", rel.root / "indiana_reports.csv")
    line = expect_exit(2, "iu_xray", ["--root", str(rel.root), "--kaggle-dir", str(tmp_path)], tmp_path, pixel_args,
                       capsys)
    assert "annotation.json" in line and "broken JSON" in line


# ---------------------------------------------------------------------------------------------------------------
# ReXGradient-160K


def test_rexgradient_images_beside_metadata_and_nan_entries(tmp_path, pixel_args):
    rel = write_rexgradient_release(tmp_path / "src")
    stats = run("rexgradient", ["--root", str(rel.root)], tmp_path, pixel_args)
    rows = rows_by_study(tmp_path / "out")
    assert all(e["samples"] == 2 and e["dropped_total"] == 0 for e in stats["splits"].values())
    nan = rows[rel.cases["nan_entries"]]["extra_info"]
    assert nan["view_positions"] == ["PA"]  # the NaN view is UNKNOWN (excluded), the shifted LATERAL too
    assert stats["splits"]["train"]["notes"]["excluded_view:UNKNOWN"] == 1
    first = rows[rel.cases["train_first"]]["extra_info"]
    assert first["view_positions"] == ["PA", "LATERAL"] and first["image_paths"][0].startswith("deid_png/GRDN")
    stats_all = run("rexgradient", ["--root", str(rel.root), "--views", "all"], tmp_path, pixel_args, name="all")
    assert stats_all["splits"]["train"]["notes"]["image_path_missing"] == 1  # the NaN path counts, no crash


def test_rexgradient_image_root_and_packed_parts(tmp_path, pixel_args, capsys):
    rel = write_rexgradient_release(tmp_path / "src")
    shutil.move(rel.root / "deid_png", tmp_path / "elsewhere" / "deid_png")
    line = expect_exit(2, "rexgradient", ["--root", str(rel.root)], tmp_path, pixel_args, capsys)
    assert "deid_png" in line and "--image-root" in line
    for given in (tmp_path / "elsewhere", tmp_path / "elsewhere" / "deid_png"):
        stats = run("rexgradient", ["--root", str(rel.root), "--image-root", str(given)], tmp_path, pixel_args,
                    name=given.name)
        assert sum(e["samples"] for e in stats["splits"].values()) == 6
    packed = write_rexgradient_release(tmp_path / "packed", extract=False)
    line = expect_exit(2, "rexgradient", ["--root", str(packed.root)], tmp_path, pixel_args, capsys)
    assert "cat deid_png.part* > deid_png.tar && tar -xf deid_png.tar" in line


# ---------------------------------------------------------------------------------------------------------------
# PadChest-GR


@pytest.mark.parametrize("shape", ["list", "image_only", "keyed"])
def test_padchest_split_zip_both_shapes_counted_once(shape, tmp_path, pixel_args):
    rel = write_padchest_release(tmp_path / "src", shape=shape)
    stats = run("padchest_gr", ["--root", str(rel.root)], tmp_path, pixel_args)
    splits = stats["splits"]
    assert sum(e["input_studies"] for e in splits.values()) == 6  # every master-table study exactly once
    assert splits["train"]["dropped"] == {"report_missing": 1}
    assert splits["test"]["dropped"] == {"no_readable_image": 1}
    assert stats["reader"]["archive_pngs"] == 5 and stats["reader"]["png_files"] == 1
    rows = rows_by_study(tmp_path / "out")
    assert set(rows) == {rel.cases[c] for c in ("normal", "abnormal", "with_prior", "validation")}
    assert rows[rel.cases["abnormal"]]["reward_model"]["ground_truth"] == \
        "Right pleural effusion. No significant radiological alterations."
    prior = rows[rel.cases["with_prior"]]["extra_info"]
    assert prior["has_prior"] and prior["image_roles"] == ["current_frontal", "prior_frontal"]
    assert prior["image_paths"][0].startswith("PadChest_GR/")  # read from the split archive
    img = Image.open(io.BytesIO(rows[rel.cases["normal"]]["images"][0]["bytes"]))
    assert img.size == (56, 56)
    assert rows[rel.cases["validation"]]["extra_info"]["split"] == "train"
    if shape == "list":  # worker processes open the split archive themselves
        run("padchest_gr", ["--root", str(rel.root), "--workers", "2", "--shard-size", "1"], tmp_path, pixel_args,
            name="w2")
        rows2 = rows_by_study(tmp_path / "w2")
        assert {k: r["images"] for k, r in rows2.items()} == {k: r["images"] for k, r in rows.items()}


def test_padchest_duplicate_record_counts_the_study_once(tmp_path, pixel_args):
    rel = write_padchest_release(tmp_path / "src")
    path = rel.root / "grounded_reports_20240819.json"
    records = json.loads(path.read_text())
    path.write_text(json.dumps(records + [records[0]]))
    stats = run("padchest_gr", ["--root", str(rel.root)], tmp_path, pixel_args)
    assert sum(e["input_studies"] for e in stats["splits"].values()) == 6
    assert stats["splits"]["train"]["notes"]["duplicate_record"] == 1


def test_padchest_incomplete_split_archive(tmp_path, pixel_args, capsys):
    rel = write_padchest_release(tmp_path / "src")
    (rel.root / "Padchest_GR_files" / "PadChest_GR.zip.002").unlink()
    line = expect_exit(2, "padchest_gr", ["--root", str(rel.root)], tmp_path, pixel_args, capsys)
    assert "PadChest_GR.zip" in line and "002 missing" in line
    write_padchest_release(rel.root)
    (rel.root / "Padchest_GR_files" / "PadChest_GR.zip.003").write_bytes(b"truncated")
    line = expect_exit(2, "padchest_gr", ["--root", str(rel.root)], tmp_path, pixel_args, capsys)
    assert "PadChest_GR.zip.001" in line and "not a readable zip" in line


def test_padchest_broken_json(tmp_path, pixel_args, capsys):
    rel = write_padchest_release(tmp_path / "src")
    path = rel.root / "grounded_reports_20240819.json"
    path.write_text(path.read_text()[:-40])
    line = expect_exit(2, "padchest_gr", ["--root", str(rel.root)], tmp_path, pixel_args, capsys)
    assert str(path) in line and "broken JSON at line" in line


# ---------------------------------------------------------------------------------------------------------------
# CheXpert Plus


def test_chexpert_plus_official_split(tmp_path, pixel_args):
    rel = write_chexpert_release(tmp_path / "src")
    stats = run("chexpert_plus", ["--root", str(rel.root)], tmp_path, pixel_args)
    assert set(stats["splits"]) == {"train", "val"}
    assert stats["splits"]["train"]["input_studies"] == 5 and stats["splits"]["train"]["samples"] == 4
    assert stats["splits"]["train"]["dropped"] == {"no_findings": 1}
    rows = rows_by_study(tmp_path / "out")
    row = rows[rel.cases["train_1_2"]]
    key = rel.cases["train_1_2"]
    assert row["data_source"] == "chexpert_plus"
    assert row["reward_model"]["ground_truth"] == f"Findings of {key}: the lungs are clear."
    assert row["extra_info"]["view_positions"] == ["PA", "LL"] and row["extra_info"]["patient_id"] == "PAT1"
    assert row["extra_info"]["image_paths"] == [f"train/{key}/view1_frontal.png", f"train/{key}/view2_lateral.png"]
    assert row["prompt"][0]["content"].endswith(f"INDICATION: History of {key}.\nTECHNIQUE: PA and lateral views.\n"
                                                f"COMPARISON: None.")
    assert rows[rel.cases["valid_64541_1"]]["extra_info"]["split"] == "val"


def test_chexpert_plus_mambaxray_split_file_and_target(tmp_path, pixel_args):
    rel = write_chexpert_release(tmp_path / "src")
    split = write_mambaxray_split(tmp_path / "annotation.json", {
        "train": ["train/patient00001/study1/view1_frontal.png", "train/patient00002/study1/view1_frontal.png"],
        "val": ["train/patient00004/study1/view1_frontal.png"],
        "test": ["valid/patient64541/study1/view1_frontal.png", "train/patient00003/study1/view1_frontal.png"]})
    stats = run("chexpert_plus", ["--root", str(rel.root), "--split-file", str(split), "--target",
                                  "findings_impression"], tmp_path, pixel_args)
    assert {s: e["samples"] for s, e in stats["splits"].items()} == {"train": 2, "val": 1, "test": 2}
    rows = rows_by_study(tmp_path / "out")
    assert all(r["extra_info"]["n_images"] == 1 for r in rows.values())  # the listed images only
    key = rel.cases["train_3_1"]  # no findings: kept under findings_impression with the impression alone
    assert rows[key]["reward_model"]["ground_truth"] == f"Impression of {key}."
    key = rel.cases["train_1_1"]
    assert rows[key]["reward_model"]["ground_truth"] == \
        f"Findings of {key}: the lungs are clear. Impression of {key}."
    assert rel.cases["train_1_2"] not in rows  # not in the split file: not an input study


def test_empty_split_and_drop_share_gate(tmp_path, pixel_args, capsys):
    rel = write_chexpert_release(tmp_path / "src")
    split = write_mambaxray_split(tmp_path / "annotation.json", {
        "train": ["train/patient00001/study1/view1_frontal.png"],
        "test": ["train/patient00003/study1/view1_frontal.png"]})
    args = ["--root", str(rel.root), "--split-file", str(split)]
    line = expect_exit(3, "chexpert_plus", args, tmp_path, pixel_args, capsys)
    assert "test kept 0 of 1 studies (top drops: no_findings=1)" in line and "--allow-empty" in line
    stats = run("chexpert_plus", [*args, "--allow-empty"], tmp_path, pixel_args, name="accepted")
    assert stats["splits"]["test"]["samples"] == 0 and stats["splits"]["train"]["samples"] == 1
    line = expect_exit(3, "chexpert_plus", ["--root", str(rel.root), "--max-drop-share", "0.1"], tmp_path,
                       pixel_args, capsys)
    assert "train dropped 1 of 5 studies (20% > 10%; top drops: no_findings=1)" in line


def test_missing_required_column_chexpert(tmp_path, pixel_args, capsys):
    rel = write_chexpert_release(tmp_path / "src")
    csv_path = rel.root / "df_chexpert_plus_240401.csv"
    csv_path.write_text(csv_path.read_text().replace("section_findings", "section_find"))
    line = expect_exit(2, "chexpert_plus", ["--root", str(rel.root)], tmp_path, pixel_args, capsys)
    assert str(csv_path) in line and "section_findings" in line


def test_no_input_at_all(tmp_path, pixel_args, capsys):
    rel = write_iu_release(tmp_path / "src")
    (rel.root / "annotation.json").write_text(json.dumps({"train": [], "val": [], "test": []}))
    line = expect_exit(3, "iu_xray", ["--root", str(rel.root)], tmp_path, pixel_args, capsys)
    assert "no input study" in line


def test_malformed_csv_json_and_zip(tmp_path, pixel_args, capsys):
    rex = write_rexgradient_release(tmp_path / "rex")
    bad_csv = rex.root / "metadata" / "valid_metadata.csv"
    bad_csv.write_text("id,Findings\np1_a1_s1,clear\np2_a2_s2,clear,extra,fields\n")
    line = expect_exit(2, "rexgradient", ["--root", str(rex.root)], tmp_path, pixel_args, capsys)
    assert str(bad_csv) in line and "CSV" in line
    bad_csv.unlink()
    bad_json = rex.root / "metadata" / "test_metadata_view_position.json"
    bad_json.write_text(bad_json.read_text()[:100])
    line = expect_exit(2, "rexgradient", ["--root", str(rex.root)], tmp_path, pixel_args, capsys)
    assert str(bad_json) in line and "broken JSON" in line
    mimic = write_mimic_release(tmp_path / "mimic")
    mimic.paths["reports"].write_bytes(b"PK\x03\x04 not really a zip")
    line = expect_exit(2, "mimic_cxr", ["--mimic-cxr-jpg", str(mimic.paths["jpg_root"]), "--reports",
                                        str(mimic.paths["reports"])], tmp_path, pixel_args, capsys)
    assert str(mimic.paths["reports"]) in line and "not a readable zip" in line


# ---------------------------------------------------------------------------------------------------------------
# Broken input files stop the converters at once, naming the file; drops that concern files name one path. A
# truncated file is a broken file: pandas reads a CSV cut in the middle of a row without complaint (the cut row's
# missing fields become NaN), which used to surface as `metadata_row_without_split` / `no_context_source` counts and
# exit 0. A wrong image folder used to try every study and end with exit 3 naming no path.


def test_gzip_csv_cut_mid_row_exits_2_naming_the_file(mimic, tmp_path, pixel_args, capsys):
    rel, args = mimic
    split = rel.paths["jpg_root"] / "mimic-cxr-2.0.0-split.csv.gz"
    text = gzip.decompress(split.read_bytes()).decode()
    split.write_bytes(gzip.compress(text[:-25].encode()))  # a complete gzip stream whose CSV stops mid-row
    line = expect_exit(2, "mimic_cxr", args, tmp_path, pixel_args, capsys)
    assert str(split) in line and "middle of a row" in line and "truncated" in line
    assert not (tmp_path / "failed" / "stats.json").exists()


def test_report_csv_cut_in_half_exits_2_naming_the_file(tmp_path, pixel_args, capsys):
    rel = write_iu_release(tmp_path / "src")
    reports = rel.root / "indiana_reports.csv"
    raw = reports.read_bytes()
    reports.write_bytes(raw[: len(raw) // 2])
    line = expect_exit(2, "iu_xray", ["--root", str(rel.root)], tmp_path, pixel_args, capsys)
    assert str(reports) in line and "truncated" in line


def test_csv_cut_inside_a_quoted_field_exits_2(tmp_path, pixel_args, capsys):
    rel = write_iu_release(tmp_path / "src")
    reports = rel.root / "indiana_reports.csv"
    reports.write_text(reports.read_text() + '9999,normal,normal,Xray,"Indication cut')
    line = expect_exit(2, "iu_xray", ["--root", str(rel.root)], tmp_path, pixel_args, capsys)
    assert str(reports) in line


def test_complete_csv_without_final_newline_is_accepted(tmp_path, pixel_args):
    rel = write_iu_release(tmp_path / "src")
    reports = rel.root / "indiana_reports.csv"
    reports.write_bytes(reports.read_bytes().rstrip(b"\r\n"))
    assert run("iu_xray", ["--root", str(rel.root)], tmp_path, pixel_args)["splits"]["train"]["samples"] > 0


def test_missing_image_folder_stops_before_converting_and_names_a_path(mimic, tmp_path, pixel_args, capsys):
    rel, args = mimic
    shutil.rmtree(rel.paths["jpg_root"] / "files")
    line = expect_exit(2, "mimic_cxr", args, tmp_path, pixel_args, capsys)
    assert f"{rel.paths['jpg_root'] / 'files'}/p1" in line and line.rstrip().endswith("command line")
    assert f"nearest folder that exists is {rel.paths['jpg_root']}" in line
    assert not list((tmp_path / "failed").glob("*.parquet"))


def test_file_drops_and_notes_name_one_missing_path(mimic, tmp_path, pixel_args, capsys):
    rel, args = mimic
    study = rel.cases["title_one_view"]
    study_dir = next((rel.paths["jpg_root"] / "files").rglob(f"s{study}"))
    images = sorted(study_dir.glob("*.jpg"))
    for image in images:
        image.unlink()
    stats = run("mimic_cxr", args, tmp_path, pixel_args)
    train = stats["splits"]["train"]
    assert train["dropped"]["no_readable_image"] == 1 and train["notes"]["image_missing"] == 2
    assert train["examples"]["image_missing"] == str(images[0])
    assert train["examples"]["no_readable_image"] == str(images[0])
    out = capsys.readouterr().out
    assert f"no_readable_image=1 (e.g. {images[0]})" in out and f"image_missing=2 (e.g. {images[0]})" in out
