"""Every study is counted once: a study the input lists twice is one input study (the repeat is a
``duplicate_record`` note), a study listed in two output splits is dropped once as ``inconsistent_split``, and the
drop-share gate divides by distinct studies. Fixtures: the released-format builders with ``duplicates=True``
(robustness cases; `verl_ext.testing.released` says what each adds). Also the CLI surface: ``--help`` of every
converter and a missing input folder."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from verl_ext.data.cli import main
from verl_ext.data.common import read_json_checked
from verl_ext.data.output import rows_by_study
from verl_ext.testing.released import (write_chexpert_release, write_iu_release, write_mimic_release,
                                       write_padchest_release, write_rexgradient_release)

REPO = Path(__file__).resolve().parents[2]


def run(dataset, args, tmp_path, pixel_args, name="out"):
    return main(dataset, [*args, "--out", str(tmp_path / name), "--no-progress", *pixel_args])


def inputs(stats) -> dict[str, int]:
    return {s: e["input_studies"] for s, e in stats["splits"].items()}


def assert_accounted(stats):
    for split, e in stats["splits"].items():
        assert e["samples"] + e["dropped_total"] == e["input_studies"], split


def test_repeated_json_keys_are_reported_and_the_first_is_kept(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"a": {"x": 1, "x": 2}, "b": NaN, "a": 3, "a": 4}')
    repeated: list[str] = []
    assert read_json_checked(path, repeated_keys=repeated) == {"a": {"x": 1}, "b": pytest.approx(float("nan"),
                                                                                                 nan_ok=True)}
    assert repeated == ["a", "a"]  # top-level repeats only
    assert read_json_checked(path)["a"] == 4  # json's own rule when not asked


def test_rexgradient_duplicates_count_once(tmp_path, pixel_args):
    rel = write_rexgradient_release(tmp_path / "src", duplicates=True)
    stats = run("rexgradient", ["--root", str(rel.root)], tmp_path, pixel_args)
    assert_accounted(stats)
    # 6 JSON studies + 1 CSV-only study = 7 distinct; valid_second (train and valid JSON) counted under unknown
    assert inputs(stats) == {"train": 3, "val": 1, "test": 2, "unknown": 1}
    train = stats["splits"]["train"]
    assert train["samples"] == 2 and train["dropped"] == {"no_image_metadata": 1}  # csv_only, listed twice
    assert train["notes"]["duplicate_record"] == 2  # the repeated JSON key + the repeated CSV row
    unknown = stats["splits"]["unknown"]
    assert unknown["dropped"] == {"inconsistent_split": 1} and unknown["notes"]["duplicate_record"] == 1
    rows = rows_by_study(tmp_path / "out")
    assert rows[rel.cases["train_first"]]["reward_model"]["ground_truth"] == "No focal consolidation in train 0."
    assert rel.cases["valid_second"] not in rows  # in no split rather than in two

    merged = run("rexgradient", ["--root", str(rel.root), "--merge-val-into-train"], tmp_path, pixel_args,
                 name="merged")
    assert_accounted(merged)
    assert inputs(merged) == {"train": 5, "test": 2}  # valid_second is now one train study listed twice
    assert merged["splits"]["train"]["samples"] == 4 and merged["splits"]["train"]["notes"]["duplicate_record"] == 3
    assert rows_by_study(tmp_path / "merged")[rel.cases["valid_second"]]["extra_info"]["split"] == "train"


def test_rexgradient_duplicates_under_strict(tmp_path, pixel_args, capsys):
    rel = write_rexgradient_release(tmp_path / "src", duplicates=True)
    with pytest.raises(SystemExit) as err:
        run("rexgradient", ["--root", str(rel.root), "--strict"], tmp_path, pixel_args)
    assert err.value.code == 2
    assert "listed 2 times" in capsys.readouterr().err


def test_iu_duplicates_count_once_and_the_gate_uses_distinct_studies(tmp_path, pixel_args, capsys):
    rel = write_iu_release(tmp_path / "src", duplicates=True)
    stats = run("iu_xray", ["--root", str(rel.root)], tmp_path, pixel_args)
    assert_accounted(stats)
    # 5 distinct ids; test_a is listed in train and (under the blank key) test
    assert inputs(stats) == {"train": 3, "test": 1, "unknown": 1}
    train = stats["splits"]["train"]
    assert train["samples"] == 3 and train["dropped_total"] == 0
    assert train["notes"]["duplicate_record"] == 2  # plain_id twice in train; three_group_id in train and val (merged)
    assert stats["splits"]["test"]["notes"]["split_from_item_field"] == 1  # test_b, counted per study
    assert stats["splits"]["unknown"]["dropped"] == {"inconsistent_split": 1}
    rows = rows_by_study(tmp_path / "out")
    assert rows[rel.cases["plain_id"]]["reward_model"]["ground_truth"].startswith("Heart size normal for plain_id")
    assert rel.cases["test_a"] not in rows

    # The gate divides by distinct studies: 1 of 5 dropped (20%). Counting each listing would have made train
    # 2 of 6 (33%).
    run("iu_xray", ["--root", str(rel.root), "--max-drop-share", "0.25"], tmp_path, pixel_args, name="gate_ok")
    with pytest.raises(SystemExit) as err:
        run("iu_xray", ["--root", str(rel.root), "--max-drop-share", "0.15"], tmp_path, pixel_args, name="gate")
    assert err.value.code == 3
    assert "the run dropped 1 of 5 studies (20% > 15%; top drops: inconsistent_split=1)" in capsys.readouterr().err

    apart = run("iu_xray", ["--root", str(rel.root), "--no-merge-val-into-train"], tmp_path, pixel_args,
                name="apart")
    assert_accounted(apart)
    assert inputs(apart) == {"train": 2, "test": 1, "unknown": 2}  # three_group_id: train and val now differ


def test_mimic_repeated_rows_count_once(tmp_path, pixel_args):
    rel = write_mimic_release(tmp_path / "src", duplicates=True)
    stats = run("mimic_cxr", ["--mimic-cxr-jpg", str(rel.paths["jpg_root"]), "--reports", str(rel.paths["reports"])],
                tmp_path, pixel_args)
    assert_accounted(stats)
    assert sum(inputs(stats).values()) == 10  # every study of the metadata once
    assert stats["splits"]["train"]["notes"]["duplicate_record"] == 2  # a metadata row and a split row
    assert stats["splits"]["unknown"]["dropped"] == {"inconsistent_split": 1}  # typo_findgings: train and test
    rows = rows_by_study(tmp_path / "out")
    assert rows[rel.cases["normal"]]["extra_info"]["n_images"] == 2  # the repeated PA row is read once
    assert rel.cases["typo_findgings"] not in rows


def test_chexpert_plus_repeated_rows_count_once(tmp_path, pixel_args):
    rel = write_chexpert_release(tmp_path / "src", duplicates=True)
    stats = run("chexpert_plus", ["--root", str(rel.root)], tmp_path, pixel_args)
    assert_accounted(stats)
    assert inputs(stats) == {"train": 5, "val": 1, "unknown": 1}
    train = stats["splits"]["train"]
    assert train["samples"] == 3 and train["dropped"] == {"no_findings": 1, "malformed_record": 1}
    assert train["notes"]["duplicate_record"] == 1
    assert stats["splits"]["unknown"]["dropped"] == {"inconsistent_split": 1}  # train_2_1: rows say train and valid
    rows = rows_by_study(tmp_path / "out")
    assert rows[rel.cases["train_1_1"]]["extra_info"]["n_images"] == 2
    assert stats["reader"]["csv_rows_without_study_path"] == 1


CONVERTERS = ["mimic", "rexgradient", "iu_xray", "padchest_gr", "chexpert_plus"]


@pytest.mark.parametrize("script", CONVERTERS)
def test_help_of_every_converter(script):
    out = subprocess.run([sys.executable, str(REPO / "data_prep" / f"{script}.py"), "--help"], capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:") and "--out DIR" in out.stdout and "--max-drop-share" in out.stdout
    assert "Inputs" in out.stdout  # the reader's docstring: which files the release holds


@pytest.mark.parametrize("dataset,flags", [
    ("mimic_cxr", ["--mimic-cxr-jpg", "{missing}", "--reports", "{missing}"]),
    ("rexgradient", ["--root", "{missing}"]), ("iu_xray", ["--root", "{missing}"]),
    ("padchest_gr", ["--root", "{missing}"]), ("chexpert_plus", ["--root", "{missing}"]),
])
def test_missing_input_folder_is_one_line_exit_2(dataset, flags, tmp_path, pixel_args, capsys):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(SystemExit) as err:
        run(dataset, [f.format(missing=missing) for f in flags], tmp_path, pixel_args, name="never")
    assert err.value.code == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert err_lines == [f"error: {flags[0]} {missing}: no such folder"]
    assert not (tmp_path / "never").exists()


def test_missing_optional_input_folder(tmp_path, pixel_args, capsys):
    rel = write_iu_release(tmp_path / "src")
    with pytest.raises(SystemExit) as err:  # a typo here would silently lose every INDICATION/COMPARISON
        run("iu_xray", ["--root", str(rel.root), "--kaggle-dir", str(tmp_path / "kagle")], tmp_path, pixel_args)
    assert err.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: --kaggle-dir {tmp_path / 'kagle'}: no such folder"


def test_chexpert_plus_images_in_mambaxray_pngs_folder(tmp_path, pixel_args):
    rel = write_chexpert_release(tmp_path / "src")
    (rel.root / "PNG").rename(rel.root / "PNGs")  # the layout MambaXray-VL's README draws
    stats = run("chexpert_plus", ["--root", str(rel.root)], tmp_path, pixel_args)
    assert stats["splits"]["train"]["samples"] == 4 and stats["reader"]["image_root"] == str(rel.root / "PNGs")


@pytest.mark.parametrize("shape", ["list", "image_only"])
def test_padchest_repeated_record_and_conflicting_table_split(shape, tmp_path, pixel_args):
    rel = write_padchest_release(tmp_path / "src", shape=shape, duplicates=True)
    stats = run("padchest_gr", ["--root", str(rel.root)], tmp_path, pixel_args)
    assert_accounted(stats)
    assert sum(inputs(stats).values()) == 6  # every master-table study once
    assert stats["splits"]["train"]["notes"]["duplicate_record"] == 1  # the repeated "normal" record
    assert stats["splits"]["unknown"]["dropped"] == {"inconsistent_split": 1}  # "abnormal": train and test rows
    rows = rows_by_study(tmp_path / "out")
    assert rel.cases["normal"] in rows and rel.cases["abnormal"] not in rows


def test_padchest_record_without_ids_is_no_study_of_an_unknown_split(tmp_path, pixel_args):
    """Issue 21: a grounded-report record without StudyID/ImageID was one more study, under `unknown`, while the study
    it belonged to was counted again in its own split as report_missing."""
    import json

    rel = write_padchest_release(tmp_path / "src", shape="list")
    path = rel.root / "grounded_reports_20240819.json"
    data = json.loads(path.read_text())
    orphan = next(r for r in data if r["StudyID"] == rel.cases["normal"])
    orphan.pop("StudyID")
    orphan.pop("ImageID")
    path.write_text(json.dumps(data))
    stats = run("padchest_gr", ["--root", str(rel.root)], tmp_path, pixel_args)
    assert_accounted(stats)
    assert "unknown" not in stats["splits"] and sum(inputs(stats).values()) == 6  # every master-table study once
    assert stats["splits"]["train"]["dropped"]["report_missing"] == 2  # the release's table-only study + this one
    assert stats["reader"]["records_without_study_id"] == 1


def test_chexpert_plus_priors_by_report_date_order_are_an_option(tmp_path, pixel_args):
    """Off by default, as DEER and OraPO train; --prior links a patient's previous study (patient_report_date_order)."""
    rel = write_chexpert_release(tmp_path / "src")
    default = rows_by_study(tmp_path / "out") if run("chexpert_plus", ["--root", str(rel.root)], tmp_path,
                                                     pixel_args) else None
    assert not any(r["extra_info"]["has_prior"] for r in default.values())
    stats = run("chexpert_plus", ["--root", str(rel.root), "--prior", "--max-images", "4"], tmp_path, pixel_args,
                name="prior")
    assert_accounted(stats)
    rows = rows_by_study(tmp_path / "prior")
    second, first = rows[rel.cases["train_1_2"]]["extra_info"], rows[rel.cases["train_1_1"]]["extra_info"]
    assert second["has_prior"] is True and second["prior_study_id"] == rel.cases["train_1_1"]
    assert second["image_roles"] == ["current_frontal", "current_lateral", "prior_frontal", "prior_lateral"]
    assert first["has_prior"] is False and stats["reader"]["studies_with_prior_link"] == 1
