"""The synthetic study generator: determinism, findings-dependent pixels and text, and the dataset layouts."""
from __future__ import annotations

import gzip
import json
import re
import zipfile

import numpy as np
import pandas as pd
from PIL import Image

from verl_ext.testing import synthetic
from verl_ext.testing.synthetic import generate_patients, render_image


def test_deterministic_and_seed_dependent():
    a, b = generate_patients(5, seed=1), generate_patients(5, seed=1)
    assert [s.findings for p in a for s in p.studies] == [s.findings for p in b for s in p.studies]
    im_a, im_b = a[0].studies[0].images[0], b[0].studies[0].images[0]
    assert np.array_equal(np.asarray(im_a.render(64)), np.asarray(im_b.render(64)))
    c = generate_patients(5, seed=2)
    assert [s.study_id for p in a for s in p.studies] != [s.study_id for p in c for s in p.studies]


def test_patients_studies_and_text():
    patients = generate_patients(30, seed=0)
    assert {s.split for p in patients for s in p.studies} == {"train", "validate", "test"}
    texts = " ".join(s.findings for p in patients for s in p.studies)
    assert re.search(r"\bNo\b|\bno\b", texts)  # negations
    assert re.search(r"[Pp]ossible|cannot be excluded|may represent", texts)  # uncertainty
    for p in patients:
        assert len({s.split for s in p.studies}) == 1  # patient-disjoint splits
        keys = [s.datetime_key for s in p.studies]
        assert keys == sorted(keys)
        for s in p.studies:
            assert re.fullmatch(r"5\d{7}", s.study_id) and re.fullmatch(r"1\d{7}", s.patient_id)
            assert s.images and s.findings and s.indication and s.technique
            for im in s.images:
                assert re.fullmatch(r"([0-9a-f]{8}-){4}[0-9a-f]{8}", im.image_id)


def _mean(img: Image.Image, y0, y1, x0, x1) -> float:
    a = np.asarray(img, dtype=np.float32) / 255
    h, w = a.shape
    return float(a[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)].mean())


def test_pixels_follow_findings():
    normal = render_image({}, "PA", 128, seed=7)
    big_heart = render_image({"cardiomegaly": 1}, "PA", 128, seed=7)
    # the heart silhouette reaches further to the side with cardiomegaly
    assert _mean(big_heart, 0.6, 0.72, 0.68, 0.74) > _mean(normal, 0.6, 0.72, 0.68, 0.74) + 0.2
    eff = render_image({"pleural_effusion": 1}, "PA", 128, seed=7, side="right")  # patient right = image left
    assert _mean(eff, 0.68, 0.74, 0.2, 0.3) > _mean(normal, 0.68, 0.74, 0.2, 0.3) + 0.2
    ptx = render_image({"pneumothorax": 1}, "PA", 128, seed=7, side="left")
    assert _mean(ptx, 0.22, 0.28, 0.76, 0.8) < _mean(normal, 0.22, 0.28, 0.76, 0.8) - 0.08  # dark apical rim
    cons = render_image({"consolidation": 1}, "PA", 128, seed=7)
    assert np.abs(np.asarray(cons, np.float32) - np.asarray(normal, np.float32)).mean() > 1.0
    lat, lat_big = render_image({}, "lateral", 96, 3), render_image({"cardiomegaly": 1}, "lateral", 96, 3)
    assert np.asarray(lat).shape == (96, 96) and not np.array_equal(np.asarray(lat), np.asarray(lat_big))
    assert render_image({}, "AP", (80, 100), 1).size == (80, 100)


def test_mimic_layout(tmp_path):
    layout = synthetic.write_mimic_cxr(tmp_path, generate_patients(3, seed=0), reports="zip")
    jpg = layout.paths["jpg_root"]
    meta = pd.read_csv(jpg / "mimic-cxr-2.0.0-metadata.csv.gz", dtype=str)
    assert list(meta.columns[:9]) == ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription",
                                      "ViewPosition", "Rows", "Columns", "StudyDate", "StudyTime"]
    assert (meta["StudyTime"].astype(float) < 100000).any()  # catches string sorting
    assert meta["ViewPosition"].isna().any()
    split = pd.read_csv(jpg / "mimic-cxr-2.0.0-split.csv.gz")
    assert set(split["split"]) >= {"train", "validate", "test"}
    with gzip.open(jpg / "mimic-cxr-2.0.0-chexpert.csv.gz", "rt") as f:
        assert f.readline().startswith("subject_id,study_id,Atelectasis,Cardiomegaly")
    with zipfile.ZipFile(layout.paths["reports"]) as zf:
        names = zf.namelist()
        assert all(re.fullmatch(r"files/p1\d/p1\d{7}/s5\d{7}\.txt", n) for n in names)
        sid = layout.cases["all_sections"][0]
        text = zf.read(next(n for n in names if sid in n)).decode()
    lines = text.split("\n")
    assert lines[0] == " " * 33 + "FINAL REPORT" and all(line.startswith(" ") for line in lines[1:-1])
    assert " FINDINGS: " in lines and any(line.startswith(" INDICATION:  ") for line in lines)
    study = layout.study(sid)
    with Image.open(jpg / "files" / f"p{study.patient_id[:2]}" / f"p{study.patient_id}" / f"s{sid}" /
                    f"{study.images[0].image_id}.jpg") as im:
        assert im.format == "JPEG" and im.mode == "L" and im.size == (64, 64)


def test_other_layouts(tmp_path):
    synthetic.write_rexgradient(tmp_path / "rex", generate_patients(3, seed=1))
    recs = json.loads((tmp_path / "rex/metadata/train_metadata_view_position.json").read_text())
    key, rec = next(iter(recs.items()))
    assert re.fullmatch(r"pGRDN\w+_aGRDN\w+_s1\.2\.826\.[\d.]+", key)
    assert rec["ImagePath"][0].startswith("../deid_png/") and len(rec["ImagePath"]) == len(rec["ImageViewPosition"])
    assert (tmp_path / "rex/metadata" / rec["ImagePath"][0]).resolve().is_file()
    assert pd.read_csv(tmp_path / "rex/metadata/test_metadata.csv").columns[0] == "id"

    synthetic.write_iu_xray(tmp_path / "iu", openi=True)
    ann = json.loads((tmp_path / "iu/annotation.json").read_text())
    assert set(ann) == {"train", "val", "test"}
    item = ann["train"][0]
    assert re.fullmatch(r"CXR\d+_IM-\d{4}", item["id"]) and item["image_path"] == [f"{item['id']}/0.png",
                                                                                    f"{item['id']}/1.png"]
    proj = pd.read_csv(tmp_path / "iu/indiana_projections.csv")
    assert list(proj.columns) == ["uid", "filename", "projection"] and proj["filename"].str.endswith(".dcm.png").all()
    assert list((tmp_path / "iu/ecgen-radiology").glob("*.xml"))

    synthetic.write_padchest_gr(tmp_path / "pc")
    records = json.loads((tmp_path / "pc/grounded_reports_20240819.json").read_text())
    assert {"StudyID", "ImageID", "PreviousStudyID", "PreviousImageID", "findings"} <= set(records[0])
    assert {"sentence_en", "sentence_es", "abnormal", "boxes"} <= set(records[0]["findings"][0])
    table = pd.read_csv(tmp_path / "pc/master_table.csv", dtype=str)
    assert table["sentence_en"].isna().any() and set(table["split"]) >= {"train", "validation", "test"}
    png = next((tmp_path / "pc/Padchest_GR_files/PadChest_GR").glob("*.png"))
    with Image.open(png) as im:
        assert im.mode.startswith("I")  # 16-bit
    assert list((tmp_path / "pc/PadChest_GR_progression_prior_studies").rglob("*.png"))
