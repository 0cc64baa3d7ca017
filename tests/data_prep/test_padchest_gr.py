"""PadChest-GR converter on a synthetic layout (grounded reports JSON, master table, 16-bit PNGs, prior folder)."""
from __future__ import annotations

from verl_ext.data.output import rows_by_study
from verl_ext.data.padchest_gr import report_text


def test_accounting(padchest_layout, padchest_out):
    _, stats = padchest_out
    assert set(stats["splits"]) == {"train", "test"}  # validation merged into train (EditGRPO: 3,640)
    n_gr = len(padchest_layout.patients)  # one GR study per patient
    assert sum(e["input_studies"] for e in stats["splits"].values()) == n_gr
    assert stats["splits"]["train"]["dropped"] == {"no_findings": 1, "no_readable_image": 1}
    assert stats["splits"]["train"]["notes"]["prior_image_missing"] == 1
    for e in stats["splits"].values():
        assert e["accounted"]


def test_rows(padchest_layout, padchest_out):
    rows = rows_by_study(padchest_out[0])
    import json

    records = {r["StudyID"]: r for r in json.loads(
        (padchest_layout.root / "grounded_reports_20240819.json").read_text())}
    (normal,) = padchest_layout.cases["normal_study"]
    assert rows[normal]["reward_model"]["ground_truth"] == report_text(records[normal]["findings"])
    assert rows[normal]["prompt"][0]["content"].endswith("those as well in your analysis.")  # no context lines
    (abn,) = padchest_layout.cases["abnormal_with_boxes"]
    assert "effusion" in rows[abn]["reward_model"]["ground_truth"]
    for case in ("prior_present", "prior_only_in_table"):
        (sid,) = padchest_layout.cases[case]
        e = rows[sid]["extra_info"]
        assert e["has_prior"] is True and e["image_roles"] == ["current_frontal", "prior_frontal"], case
        assert "Given the current frontal image, and the prior frontal image." in rows[sid]["prompt"][0]["content"]
    (gone,) = padchest_layout.cases["prior_missing_on_disk"]
    assert rows[gone]["extra_info"]["has_prior"] is False and rows[gone]["extra_info"]["n_images"] == 1
    (val,) = padchest_layout.cases["validation_study"]
    assert rows[val]["extra_info"]["split"] == "train" and rows[val]["extra_info"]["source_split"] == "validation"
    assert padchest_layout.cases["no_sentences"][0] not in rows
    assert padchest_layout.cases["missing_image"][0] not in rows


def test_16bit_png_scaled_by_max(padchest_out):
    import io

    import numpy as np
    from PIL import Image

    row = next(iter(rows_by_study(padchest_out[0]).values()))
    img = Image.open(io.BytesIO(row["images"][0]["bytes"]))
    arr = np.asarray(img)
    assert img.mode == "L" and arr.max() >= 200  # 10-bit source values were stretched, not clipped to 255
