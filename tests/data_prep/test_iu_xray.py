"""IU-Xray converter on a synthetic R2Gen layout with Kaggle CSVs and OpenI XML."""
from __future__ import annotations

from verl_ext.data.cli import main
from verl_ext.data.output import rows_by_study
from verl_ext.data.sections import clean_text


def test_accounting_and_splits(iu_layout, iu_out):
    _, stats = iu_out
    assert set(stats["splits"]) == {"train", "test"}  # R2Gen val is merged into train (EditGRPO: 2,365)
    assert sum(e["input_studies"] for e in stats["splits"].values()) == len(iu_layout.studies())
    assert stats["splits"]["train"]["dropped"] == {"no_findings": 1}
    assert stats["splits"]["train"]["notes"]["image_missing"] == 1
    assert stats["splits"]["test"]["images_per_sample_mean"] == 2.0


def test_views_and_context(iu_layout, iu_out):
    rows = rows_by_study(iu_out[0])
    (lat_first,) = iu_layout.cases["lateral_first"]
    row = rows[lat_first]
    assert row["extra_info"]["view_positions"] == ["FRONTAL", "LATERAL"]  # reordered: 1.png (frontal) first
    assert row["extra_info"]["image_paths"] == [f"images/{lat_first}/1.png", f"images/{lat_first}/0.png"]
    assert "Given the current frontal image, and the current lateral image." in row["prompt"][0]["content"]
    for case in ("three_projections", "both_lateral"):
        (sid,) = iu_layout.cases[case]
        assert rows[sid]["extra_info"]["view_positions"] == ["UNKNOWN", "UNKNOWN"]
        assert "Given the current image, and the current image." in rows[sid]["prompt"][0]["content"]
    (xx,) = iu_layout.cases["xxxx_tokens"]
    assert "XXXX" in rows[xx]["reward_model"]["ground_truth"]
    (empty,) = iu_layout.cases["empty_indication"]
    assert "\nINDICATION: N/A\n" in rows[empty]["prompt"][0]["content"]
    (none,) = iu_layout.cases["comparison_none"]
    assert rows[none]["prompt"][0]["content"].endswith("COMPARISON: None.")
    (val,) = iu_layout.cases["val_item"]
    assert rows[val]["extra_info"]["split"] == "train" and rows[val]["extra_info"]["source_split"] == "val"
    (openi,) = iu_layout.cases["openi_only"]  # no Kaggle row: context from the OpenI XML
    study = iu_layout.study(openi)
    assert f"INDICATION: {clean_text(study.indication)}\n" in rows[openi]["prompt"][0]["content"]
    assert iu_layout.cases["empty_report"][0] not in rows
    (miss,) = iu_layout.cases["missing_image"]
    assert rows[miss]["extra_info"]["n_images"] == 1
    for row in rows.values():
        assert row["data_source"] == "iu_xray" and "TECHNIQUE" not in row["prompt"][0]["content"]
        assert row["extra_info"]["has_prior"] is False


def test_separate_val(iu_layout, tmp_path, pixel_args):
    stats = main("iu_xray", ["--root", str(iu_layout.root), "--out", str(tmp_path), "--no-progress",
                             "--no-merge-val-into-train", *pixel_args])
    assert stats["splits"]["val"]["samples"] >= 1
    assert (tmp_path / "val-00000.parquet").exists()
