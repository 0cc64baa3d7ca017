"""ReXGradient-160K converter on a synthetic layout (metadata JSON + CSV, deid_png tree)."""
from __future__ import annotations

from verl_ext.data.cli import main
from verl_ext.data.output import read_rows, rows_by_study
from verl_ext.data.sections import clean_text


def test_accounting_and_drops(rex_layout, rex_out):
    out, stats = rex_out
    assert set(stats["splits"]) == {"train", "val", "test"}
    assert sum(e["input_studies"] for e in stats["splits"].values()) == len(rex_layout.studies())
    for e in stats["splits"].values():
        assert e["accounted"]
    train = stats["splits"]["train"]["dropped"]
    assert train == {"too_many_images": 1, "no_findings": 1, "no_image_metadata": 1}
    assert stats["splits"]["test"]["notes"]["image_missing"] == 1
    assert stats["splits"]["test"]["notes"]["excluded_view:UNKNOWN"] == 2
    assert all(e["pct_with_prior"] == 0 for e in stats["splits"].values())


def test_rows(rex_layout, rex_out):
    rows = rows_by_study(rex_out[0])
    (seven,), (six,) = rex_layout.cases["seven_images"], rex_layout.cases["six_images"]
    assert seven not in rows and rex_layout.cases["empty_findings"][0] not in rows
    assert rows[six]["extra_info"]["n_images"] == 6
    (spell,) = rex_layout.cases["view_spellings"]
    assert rows[spell]["extra_info"]["view_positions"] == ["PA", "AP", "LL"]
    assert rows[spell]["extra_info"]["split"] == "val" and rows[spell]["extra_info"]["source_split"] == "valid"
    (unk,) = rex_layout.cases["unknown_views"]
    assert rows[unk]["extra_info"]["view_positions"] == ["LATERAL"]
    (miss,) = rex_layout.cases["missing_image"]
    assert rows[miss]["extra_info"]["view_positions"] == ["PA"]
    (none,) = rex_layout.cases["comparison_none"]
    study = rex_layout.study(none)
    text = rows[none]["prompt"][0]["content"]
    assert text.startswith("<image>\n\nAs a radiologist assistant") and "Given the current PA image.\n" in text
    assert text.endswith(f"INDICATION: {clean_text(study.indication)}\nCOMPARISON: None.")
    assert "TECHNIQUE" not in text
    assert rows[none]["reward_model"]["ground_truth"] == clean_text(study.findings)
    assert rows[none]["data_source"] == "rexgradient"
    assert rows[none]["extra_info"]["image_paths"][0].startswith("deid_png/")
    for row in rows.values():
        assert row["prompt"][0]["content"].count("<image>") == len(row["images"])


def test_all_views_and_drop_policy(rex_layout, tmp_path, pixel_args):
    stats = main("rexgradient", ["--root", str(rex_layout.root), "--out", str(tmp_path), "--no-progress",
                                 "--views", "all", "--max-images", "2", "--over-limit", "drop", *pixel_args])
    rows = rows_by_study(tmp_path)
    (unk,) = rex_layout.cases["unknown_views"]
    assert unk not in rows  # 3 images > 2
    assert stats["splits"]["test"]["dropped"]["over_image_limit"] >= 1
    assert all(len(r["images"]) <= 2 for r in rows.values())
    assert len(read_rows(tmp_path, "train")) == stats["splits"]["train"]["samples"]
