"""Fixture builders in each dataset's RELEASED layout (file names, column names, id shapes, archive packing, quirks).

Nothing here is real data: every text, id and image is made up. What is copied is the *format*; each builder's
docstring names the public source of every layout fact it uses (sources were read, never copied).
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image


@dataclass
class Release:
    root: Path
    cases: dict[str, str] = field(default_factory=dict)  # case name -> study id
    paths: dict[str, Path] = field(default_factory=dict)


def png(path: Path, shade: int = 128, size=(64, 64), fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("L", size, shade)
    img.paste(255 - shade, (8, 8, 40, 56))
    img.save(path, format=fmt)


def png_bytes(shade: int = 100) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (64, 64), shade).save(buf, format="PNG")
    return buf.getvalue()


def write_csv(path: Path, header: list[str], rows: list[list], index_column: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(([""] if index_column else []) + header)
        for i, r in enumerate(rows):
            w.writerow(([i] if index_column else []) + r)


# ---------------------------------------------------------------------------------------------------------------
# MIMIC-CXR: reports zip + MIMIC-CXR-JPG tree.

MIMIC_META_COLUMNS = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
                      "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
                      "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning"]


def mimic_report(sections: list[tuple[str, str]]) -> str:
    """A report in the released text layout: a centred FINAL REPORT line, a leading space on every line, headers
    as `` NAME:`` and `` `` blank separators (section_parser.py's docstring and regex)."""
    lines = [" " * 33 + "FINAL REPORT"]
    for name, body in sections:
        lines.append(f" {name}:  {body}" if len(body) < 60 else f" {name}: ")
        if len(body) >= 60:
            lines += [" ", *[" " + body[i: i + 70] for i in range(0, len(body), 70)]]
        lines.append(" ")
    return "\n".join(lines) + "\n"


# Header spellings from the official table and view titles from its fragment list: case -> (header, body).
MIMIC_HEADER_CASES = {
    "typo_findnings": "FINDNINGS", "typo_findindgs": "FINDINDGS", "typo_findgings": "FINDGINGS",
    "title_one_view": "ONE VIEW", "title_lateral_and_pa": "LATERAL AND PA", "title_ribs": "LEFT RIBS",
    "title_chest_three_views": "CHEST, THREE VIEWS", "title_bone_window": "BONE WINDOW",
}


def write_mimic_release(root: Path, duplicates: bool = False) -> Release:
    """MIMIC-CXR-JPG tree + ``mimic-cxr-reports.zip``: one study per official header spelling.

    `duplicates` (a robustness case: no public source documents repeated rows in these files) repeats the
    metadata row and the split row of the ``normal`` study's PA image, and gives one image of ``typo_findgings`` a
    second split row that says ``test``.

    Sources -- MIMIC-CXR / MIMIC-CXR-JPG: MIT-LCP ``mimic-cxr`` repository (commit 3190146) --
    ``txt/section_parser.py`` (header regex, report layout with a leading space on every line, section tables),
    ``dcm/create-mimic-cxr-jpg-metadata.ipynb`` (the 12 metadata columns, StudyDate as YYYYMMDD int, StudyTime as
    HHMMSS float without leading zeros), ``website/content/data/overview.md`` (``files/pNN/pSUBJECT/sSTUDY.txt``
    and the JPG tree, id shapes) and the MIMIC-CXR-JPG PhysioNet page (``mimic-cxr-2.0.0-metadata.csv.gz``,
    ``mimic-cxr-2.0.0-split.csv.gz`` with ``dicom_id, study_id, subject_id, split`` and train/validate/test).
    """
    rel = Release(root)
    jpg_root, meta_rows, split_rows, reports = root / "mimic-cxr-jpg", [], [], {}
    studies = [("normal", "FINDINGS"), *MIMIC_HEADER_CASES.items(), ("impression_only", None)]
    for n, (case, header) in enumerate(studies):
        subject, study = f"1{n:07d}", f"5{n:07d}"
        rel.cases[case] = study
        body = f"Case {case}: the lungs are clear and there is no pleural effusion or pneumothorax."
        sections = [("EXAMINATION", "CHEST (PA AND LAT)"), ("INDICATION", "___F with cough"),
                    ("TECHNIQUE", "Chest PA and lateral"), ("COMPARISON", "None.")]
        if header:
            sections.append((header, body))
        sections.append(("IMPRESSION", "No acute cardiopulmonary process."))
        reports[f"files/p{subject[:2]}/p{subject}/s{study}.txt"] = mimic_report(sections)
        for k, view in enumerate(("PA", "LATERAL")):
            dicom = f"{n:08x}-{k:08x}-0000aaaa-bbbbcccc-dddd{n:04x}"
            png(jpg_root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg", 90 + k,
                fmt="JPEG")
            meta_rows.append([dicom, subject, study, "CHEST (PA AND LAT)", view, 64, 64, 21800506, 80556.875 + k,
                              "Chest 2 Views", {"PA": "postero-anterior", "LATERAL": "lateral"}[view], "Erect"])
            split_rows.append([dicom, study, subject, "test" if n == 1 else "train"])
    if duplicates:
        meta_rows.insert(1, list(meta_rows[0]))
        split_rows.append(list(split_rows[0]))
        conflict = next(r for r in split_rows if r[1] == rel.cases["typo_findgings"])
        split_rows.append([*conflict[:3], "test"])
    write_csv(jpg_root / "mimic-cxr-2.0.0-metadata.csv.gz", MIMIC_META_COLUMNS, meta_rows)
    write_csv(jpg_root / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id", "split"], split_rows)
    zpath = root / "mimic-cxr-reports.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for name, text in reports.items():
            zf.writestr(name, text)
    rel.paths.update(jpg_root=jpg_root, reports=zpath)
    return rel


# ---------------------------------------------------------------------------------------------------------------
# IU-Xray: R2Gen iu_xray folder + Kaggle CSVs.

IU_REPORT_COLUMNS = ["uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression"]


def write_iu_release(root: Path, blank_test_key: bool = True, duplicates: bool = False) -> Release:
    """R2Gen ``iu_xray`` folder + Kaggle CSVs, with every R2Gen id shape and a blank test key.

    `duplicates` (a robustness case: no public copy of annotation.json is documented to repeat ids) lists
    ``plain_id`` a second time in train with another report, ``three_group_id`` (val) again in train, and
    ``test_a`` again in train.

    Sources -- IU-Xray: R2Gen (cuhksz-nlp/R2Gen ``modules/datasets.py``: ``annotation.json`` = ``{train, val,
    test}`` lists of ``{id, report, image_path, split}``, images under ``images/``); a public copy of that file
    (manavkapadnis/SERPENT-VLM ``data/iu_xray/annotation.json``) with ids ``CXR1_1_IM-0001`` and a blank test key;
    Kaggle ``raddar/chest-xrays-indiana-university`` as quoted by UCL-CDI/cdi-hub
    ``tutorials/automatic-medical-image-reporting/datasets/README.md`` (``indiana_reports.csv`` columns ``uid,
    MeSH, Problems, image, indication, comparison, findings, impression``; ``indiana_projections.csv`` ``uid,
    filename, projection``; file names ``1_IM-0001-4001.dcm.png``).
    """
    rel = Release(root)
    items = {"train": [], "val": [], "test": []}
    reports, projections = [], []
    specs = [("openi_style_id", "CXR1_1_IM-0001", 1, "IM-0001", "train"),
             ("plain_id", "CXR2384_IM-0942", 2384, "IM-0942", "train"),
             ("three_group_id", "CXR1000_IM-0003-1001", 1000, "IM-0003", "val"),
             ("test_a", "CXR3_IM-1384", 3, "IM-1384", "test"),
             ("test_b", "CXR4_IM-2050", 4, "IM-2050", "test")]
    for case, rid, uid, im, split in specs:
        rel.cases[case] = rid
        for k in range(2):
            png(root / "images" / rid / f"{k}.png", 60 + 40 * k)
        items[split].append({"id": rid, "report": f"Heart size normal for {case}. The lungs are clear.",
                             "image_path": [f"{rid}/0.png", f"{rid}/1.png"], "split": split})
        reports.append([uid, "normal", "normal", "Xray Chest PA and Lateral", f"Indication of {case}.", "None.",
                        "The lungs are clear.", "Normal chest x-XXXX."])
        projections += [[uid, f"{uid}_{im}-1001.dcm.png", "Frontal"], [uid, f"{uid}_{im}-2001.dcm.png", "Lateral"]]
    if duplicates:
        by_case = {case: item for (case, *_), item in zip(specs, items["train"] + items["val"] + items["test"])}
        items["train"] += [{**by_case["plain_id"], "report": "A second, different report."},
                           {**by_case["three_group_id"], "split": "train"}, {**by_case["test_a"], "split": "train"}]
    ann = {"train": items["train"], "val": items["val"], ("   " if blank_test_key else "test"): items["test"]}
    (root / "annotation.json").write_text(json.dumps(ann))
    write_csv(root / "indiana_reports.csv", IU_REPORT_COLUMNS, reports)
    write_csv(root / "indiana_projections.csv", ["uid", "filename", "projection"], projections)
    return rel


# ---------------------------------------------------------------------------------------------------------------
# ReXGradient-160K: metadata/ beside the extracted deid_png/.

def write_rexgradient_release(root: Path, extract: bool = True, duplicates: bool = False) -> Release:
    """``metadata/`` beside ``deid_png/`` (or only the packed parts).

    `duplicates` (a robustness case: no public source documents repeated studies in the release) repeats the
    ``train_first`` key inside the train JSON (the second copy with other Findings), lists the second valid study
    (``valid_second``) in the train JSON too, and lists a study twice in ``train_metadata.csv`` that no JSON has
    (``csv_only``).

    Sources -- ReXGradient-160K: the Hugging Face card (rajpurkarlab/ReXGradient-160K, mirrored by
    selectdataset.com): ``deid_png.part*`` concatenated and untarred next to ``metadata/``; public loaders that
    read the release (a ``radharmony`` harmonizer, CXR-agent prep scripts; found with the code search) for the
    ``metadata/{split}_metadata_view_position.json`` keys ``p<PatientID>_a<Accession>_s<StudyUID>``, the record
    fields and ``ImagePath`` entries
    ``../deid_png/<PatientID>/<Accession>/studies/<UID>/series/<UID>/instances/<UID>.png``;
    ``POSTERO_ANTERIOR``-style views and null/NaN entries (datasets.md 9).
    """
    rel = Release(root)
    meta = root / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        records = {}
        for n in range(2):
            pid, acc = f"GRDN{split[:2].upper()}{n:08d}", f"GRDNA{split[:2].upper()}{n:07d}"
            uid = f"1.2.826.0.1.3680043.8.498.{n}{len(split)}1"
            series = f"1.2.826.0.1.3680043.8.498.{n}{len(split)}2"
            paths, views = [], []
            for k, view in enumerate(("POSTERO_ANTERIOR", "LATERAL")):
                sop = f"1.2.826.0.1.3680043.8.498.{n}{len(split)}{k}9"
                sub = f"{pid}/{acc}/studies/{uid}/series/{series}/instances/{sop}.png"
                if extract:
                    png(root / "deid_png" / sub, 70 + 30 * k)
                paths.append(f"../deid_png/{sub}")
                views.append(view)
            key = f"p{pid}_a{acc}_s{uid}"
            if split == "train" and n == 1:  # NaN inside both lists (seen in the release)
                paths.append(float("nan"))
                views.insert(1, float("nan"))
                rel.cases["nan_entries"] = key
            rel.cases.setdefault(f"{split}_first", key)
            records[key] = {"PatientID": pid, "AccessionNumber": acc, "StudyInstanceUid": uid, "StudyDate": "20140903",
                            "PatientAge": "054Y", "PatientSex": "F", "Indication": "Cough.", "Comparison": "None.",
                            "Findings": f"No focal consolidation in {split} {n}.", "Impression": "Normal.",
                            "ImagePath": paths, "ImageViewPosition": views}
        pairs = list(records.items())
        csv_ids = [k for k, _ in pairs]
        if duplicates and split == "train":
            first = pairs[0]
            pairs.append((first[0], {**first[1], "Findings": "A second copy of the record."}))
            csv_ids += ["pGRDNORPHAN_aGRDNORPHAN_s1.2.3"] * 2
            rel.cases["csv_only"] = csv_ids[-1]
        if duplicates and split == "valid":
            rel.cases["valid_second"] = pairs[1][0]
            train_json = meta / "train_metadata_view_position.json"
            train_json.write_text(train_json.read_text()[:-1] + ", " + json.dumps(pairs[1][0]) + ": "
                                  + json.dumps(pairs[1][1]) + "}")
        # NaN literals, as released; written pair by pair so that a key can repeat
        (meta / f"{split}_metadata_view_position.json").write_text(
            "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(r)}" for k, r in pairs) + "}")
        write_csv(meta / f"{split}_metadata.csv", ["id", "StudyDate", "PatientAge", "PatientSex", "Indication",
                                                   "Comparison", "Findings", "Impression"],
                  [[k, *([records[k][c] for c in ("StudyDate", "PatientAge", "PatientSex", "Indication", "Comparison",
                                                  "Findings", "Impression")] if k in records else [""] * 7)]
                   for k in csv_ids])
    if not extract:
        for i in range(2):
            (root / f"deid_png.part{i}").write_bytes(b"\0" * 16)
    return rel


# ---------------------------------------------------------------------------------------------------------------
# PadChest-GR: grounded reports JSON, master_table.csv.zip, PNGs as a split zip, prior studies on disk.

PADCHEST_MASTER_COLUMNS = ["StudyID", "ImageID", "label", "boxes_count", "extra_boxes_count", "locations",
                           "prior_study", "progression_status", "prior_imageID", "sentence_en", "sentence_es",
                           "study_is_benchmark", "study_is_validation", "split", "PatientID", "patient_is_benchmark",
                           "PatientBirth", "PatientSex_DICOM", "StudyDate_DICOM", "StudyDate", "PatientAge",
                           "label_group", "Year"]


def write_padchest_release(root: Path, shape: str = "list", n_parts: int = 3, duplicates: bool = False) -> Release:
    """`shape`: ``list`` (records with StudyID/ImageID), ``image_only`` (list records with ImageID but no StudyID) or
    ``keyed`` (an object keyed by ImageID whose records are ``{PreviousStudyID, PreviousImageID, findings}``).
    `duplicates` (a robustness case, not documented for the release) repeats the ``normal`` record (list shapes)
    and gives the second master-table row of ``abnormal`` the split ``test``.

    Sources -- PadChest-GR: a public extractor of the release (U-VLM PadChest-GR extractor, found with the code
    search): ``grounded_reports_20240819.json`` as a list with ``StudyID``/``ImageID``/``findings``, findings
    elements that omit keys, ``master_table.csv.zip``, and ``Padchest_GR_files/PadChest_GR.zip.001..037`` as plain
    byte slices of one zip; RadVLM's ``PadChest_grounding`` loader (``StudyID``/``ImageID``, splits
    train/validation/test); the record shape ``{PreviousStudyID, PreviousImageID, findings}`` without ids
    (datasets.md 9, one notebook on the real file); master-table columns from datasets.md 5.2 (CXR-agent prep
    script).
    """
    rel = Release(root)
    specs = [("normal", "train", None), ("abnormal", "train", None), ("with_prior", "test", "prior"),
             ("validation", "validation", None), ("table_only", "train", None), ("not_in_archive", "test", None)]
    records, master, members = [], [], {}
    for n, (case, split, prior) in enumerate(specs):
        sid = f"{n + 1:02d}" + "3" * 36
        image_id = f"2168401113669640132178989{n:02d}_01-023-0{n}0.png"
        rel.cases[case] = sid
        prior_id = None
        if prior:
            prior_id = f"2168401113669640132178980{n:02d}_02-001-010.png"
            png(root / "PadChest_GR_progression_prior_studies" / "batch1" / prior_id, 50)
        if case != "not_in_archive":
            members[f"PadChest_GR/{image_id}"] = png_bytes(90 + n)
        findings = [{"sentence_en": "No significant radiological alterations.", "sentence_es": "Sin alteraciones.",
                     "abnormal": False}]  # negatives omit boxes/labels/locations (as released)
        if case == "abnormal":
            findings = [{"sentence_en": "Right pleural effusion.", "sentence_es": "Derrame pleural derecho.",
                         "abnormal": True, "boxes": [[0.1, 0.2, 0.4, 0.6]], "extra_boxes": [],
                         "labels": ["pleural effusion"], "locations": ["right"], "progression": None},
                        *findings]
        rec = {"StudyID": sid, "ImageID": image_id, "PreviousStudyID": "9" * 38 if prior else None,
               "PreviousImageID": prior_id, "findings": findings}
        if case != "table_only":
            records.append(rec)
        for k, f in enumerate(findings):
            row_split = "test" if duplicates and case == "abnormal" and k == 1 else split
            master.append([sid, image_id, ";".join(f.get("labels", [])) or "normal", len(f.get("boxes", [])), 0, "",
                           str(bool(prior)), "", prior_id or "", f["sentence_en"], f["sentence_es"], "True",
                           str(split == "validation"), row_split, f"P{n}", "False", "1950", "F", "20150101", "20150101",
                           "65", "", "2015"])
    if shape == "keyed":
        data = {r["ImageID"]: {k: r[k] for k in ("PreviousStudyID", "PreviousImageID", "findings")} for r in records}
    elif shape == "image_only":
        data = [{k: v for k, v in r.items() if k != "StudyID"} for r in records]
    else:
        data = records
    if duplicates and isinstance(data, list):
        data = data + [data[0]]
    (root / "grounded_reports_20240819.json").write_text(json.dumps(data, indent=1))
    buf = io.StringIO()
    csv.writer(buf).writerows([PADCHEST_MASTER_COLUMNS, *master])
    with zipfile.ZipFile(root / "master_table.csv.zip", "w") as zf:
        zf.writestr("master_table.csv", buf.getvalue())
    whole = io.BytesIO()
    with zipfile.ZipFile(whole, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data_bytes in members.items():
            zf.writestr(name, data_bytes)
    blob = whole.getvalue()
    out = root / "Padchest_GR_files"
    out.mkdir(parents=True, exist_ok=True)
    step = -(-len(blob) // n_parts)
    for i in range(n_parts):  # plain byte slices, as released
        (out / f"PadChest_GR.zip.{i + 1:03d}").write_bytes(blob[i * step: (i + 1) * step])
    return rel


# ---------------------------------------------------------------------------------------------------------------
# CheXpert Plus: df_chexpert_plus_240401.csv + PNG/ tree.

CHEXPERT_COLUMNS = ["path_to_image", "path_to_dcm", "frontal_lateral", "ap_pa", "deid_patient_id",
                    "patient_report_date_order", "report", "section_narrative", "section_clinical_history",
                    "section_history", "section_comparison", "section_technique", "section_procedure_comments",
                    "section_findings", "section_impression", "section_end_of_impression", "section_summary",
                    "section_accession_number", "age", "sex", "race", "ethnicity", "interpreter_needed",
                    "insurance_type", "recent_bmi", "deceased", "split"]


def write_chexpert_release(root: Path, duplicates: bool = False) -> Release:
    """Patients 1-4 in train, 64541 in valid; patient00003/study1 has no findings section (impression only).

    `duplicates` (a robustness case: the CSV is not documented to repeat rows) repeats the frontal row of
    ``train_1_1``, adds a third image row to ``train_2_1`` whose split is ``valid``, and adds a train row whose
    ``path_to_image`` names no patient/study.

    Sources -- CheXpert Plus: the header of ``df_chexpert_plus_240401.csv`` as quoted by a public evaluation script
    (leading index column, then ``path_to_image, path_to_dcm, frontal_lateral, ap_pa, deid_patient_id,
    patient_report_date_order, report, section_narrative, section_clinical_history, section_history,
    section_comparison, section_technique, section_procedure_comments, section_findings, section_impression,
    section_end_of_impression, section_summary, section_accession_number, age, sex, race, ethnicity,
    interpreter_needed, insurance_type, recent_bmi, deceased, split``); Stanford-AIMI/chexpert-plus README (the CSV
    name); ``path_to_image`` like ``train/patient00001/study1/view1_frontal.jpg`` and PNGs under ``PNG/`` with
    ``.png`` (public loaders and ReXrank's CheXpert Plus entries ``valid/patient64545/study1/view1_frontal.png``);
    MambaXray-VL's ``dataset/data_helper.py`` (Event-AHU/Medical_Image_Analysis, CXPMRG_Bench_MambaXray_VL) and
    launch script for the split file: an R2Gen-style ``{train, val, test}`` annotation whose items have ``id``,
    ``report`` and ``image_path`` relative to ``PNG/``.
    """
    rel = Release(root)
    rows = []
    specs = [("train", 1, 1, True), ("train", 1, 2, True), ("train", 2, 1, True), ("train", 3, 1, False),
             ("train", 4, 1, True), ("valid", 64541, 1, True)]
    for split, patient, study, has_findings in specs:
        key = f"patient{patient:05d}/study{study}"
        rel.cases[f"{split}_{patient}_{study}"] = key
        for k, (fl, ap) in enumerate((("Frontal", "PA"), ("Lateral", "LL"))):
            path = f"{split}/{key}/view{k + 1}_{fl.lower()}.jpg"  # the CSV names .jpg; the PNG release has .png
            png(root / "PNG" / path.replace(".jpg", ".png"), 80 + 20 * k)
            findings = f"Findings of {key}: the lungs are clear." if has_findings else ""
            rows.append([path, path.replace(".jpg", ".dcm"), fl, ap, f"PAT{patient}", study,
                         f"NARRATIVE: ... FINDINGS: {findings} IMPRESSION: Normal.", "", f"History of {key}.", "",
                         "None.", "PA and lateral views.", "", findings, f"Impression of {key}.", "", "", "ACC1",
                         "54", "Female", "White", "Non-Hispanic", "", "Medicare", "", "", split])
    if duplicates:
        rows.insert(1, list(rows[0]))
        third = next(r for r in rows if r[0].startswith("train/patient00002/study1/"))
        rows.append(["train/patient00002/study1/view3_frontal.jpg", *third[1:-1], "valid"])
        rows.append(["train/view1_frontal.jpg", *third[1:]])
    write_csv(root / "df_chexpert_plus_240401.csv", CHEXPERT_COLUMNS, rows, index_column=True)
    return rel


def write_mambaxray_split(path: Path, entries: dict[str, list[str]]) -> Path:
    """An R2Gen-style split file as MambaXray-VL's data_helper reads it: split -> [{id, report, image_path}]."""
    data = {split: [{"id": p.split("/")[1] + "_" + p.split("/")[2], "report": "x", "image_path": [p]}
                    for p in paths] for split, paths in entries.items()}
    path.write_text(json.dumps(data))
    return path
