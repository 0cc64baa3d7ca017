"""Broken input files stop the converters at once, naming the file; drops that concern files name one path.

A truncated file is a broken file: pandas reads a CSV cut in the middle of a row without complaint (the cut row's
missing fields become NaN), which used to surface as ``metadata_row_without_split`` / ``no_context_source`` counts
and exit 0. A wrong image folder used to try every study and end with exit 3 naming no path.
"""
from __future__ import annotations

import gzip
import shutil

import pytest

from verl_ext.data.cli import main
from verl_ext.testing.released import write_iu_release, write_mimic_release


def convert(dataset, args, tmp_path, pixel_args):
    return main(dataset, [*args, "--out", str(tmp_path / "out"), "--no-progress", *pixel_args])


def exit_line(code, dataset, args, tmp_path, pixel_args, capsys) -> str:
    with pytest.raises(SystemExit) as err:
        convert(dataset, args, tmp_path, pixel_args)
    assert err.value.code == code
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def mimic(tmp_path):
    rel = write_mimic_release(tmp_path / "src")
    return rel, ["--mimic-cxr-jpg", str(rel.paths["jpg_root"]), "--reports", str(rel.paths["reports"])]


def test_gzip_csv_cut_mid_row_exits_2_naming_the_file(mimic, tmp_path, pixel_args, capsys):
    rel, args = mimic
    split = rel.paths["jpg_root"] / "mimic-cxr-2.0.0-split.csv.gz"
    text = gzip.decompress(split.read_bytes()).decode()
    split.write_bytes(gzip.compress(text[:-25].encode()))  # a complete gzip stream whose CSV stops mid-row
    line = exit_line(2, "mimic_cxr", args, tmp_path, pixel_args, capsys)
    assert str(split) in line and "middle of a row" in line and "truncated" in line
    assert not (tmp_path / "out" / "stats.json").exists()


def test_report_csv_cut_in_half_exits_2_naming_the_file(tmp_path, pixel_args, capsys):
    rel = write_iu_release(tmp_path / "src")
    reports = rel.root / "indiana_reports.csv"
    raw = reports.read_bytes()
    reports.write_bytes(raw[: len(raw) // 2])
    line = exit_line(2, "iu_xray", ["--root", str(rel.root)], tmp_path, pixel_args, capsys)
    assert str(reports) in line and "truncated" in line


def test_csv_cut_inside_a_quoted_field_exits_2(tmp_path, pixel_args, capsys):
    rel = write_iu_release(tmp_path / "src")
    reports = rel.root / "indiana_reports.csv"
    reports.write_text(reports.read_text() + '9999,normal,normal,Xray,"Indication cut')
    line = exit_line(2, "iu_xray", ["--root", str(rel.root)], tmp_path, pixel_args, capsys)
    assert str(reports) in line


def test_complete_csv_without_final_newline_is_accepted(tmp_path, pixel_args):
    rel = write_iu_release(tmp_path / "src")
    reports = rel.root / "indiana_reports.csv"
    reports.write_bytes(reports.read_bytes().rstrip(b"\r\n"))
    assert convert("iu_xray", ["--root", str(rel.root)], tmp_path, pixel_args)["splits"]["train"]["samples"] > 0


def test_missing_image_folder_stops_before_converting_and_names_a_path(mimic, tmp_path, pixel_args, capsys):
    rel, args = mimic
    shutil.rmtree(rel.paths["jpg_root"] / "files")
    line = exit_line(2, "mimic_cxr", args, tmp_path, pixel_args, capsys)
    assert f"{rel.paths['jpg_root'] / 'files'}/p1" in line and line.rstrip().endswith("command line")
    assert f"nearest folder that exists is {rel.paths['jpg_root']}" in line
    assert not list((tmp_path / "out").glob("*.parquet"))


def test_file_drops_and_notes_name_one_missing_path(mimic, tmp_path, pixel_args, capsys):
    rel, args = mimic
    study = rel.cases["title_one_view"]
    study_dir = next((rel.paths["jpg_root"] / "files").rglob(f"s{study}"))
    images = sorted(study_dir.glob("*.jpg"))
    for image in images:
        image.unlink()
    stats = convert("mimic_cxr", args, tmp_path, pixel_args)
    train = stats["splits"]["train"]
    assert train["dropped"]["no_readable_image"] == 1 and train["notes"]["image_missing"] == 2
    assert train["examples"]["image_missing"] == str(images[0])
    assert train["examples"]["no_readable_image"] == str(images[0])
    out = capsys.readouterr().out
    assert f"no_readable_image=1 (e.g. {images[0]})" in out and f"image_missing=2 (e.g. {images[0]})" in out
