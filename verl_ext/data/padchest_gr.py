"""PadChest-GR (grounded reports, English) -> verl parquet.

Inputs under ``--root``:

* ``grounded_reports_<date>.json`` (the newest by name): a list of ``{StudyID, ImageID, PreviousStudyID,
  PreviousImageID, findings: [{sentence_en, sentence_es, abnormal, boxes, labels, locations, progression}]}``;
* ``master_table.csv`` (or ``master_table.csv.zip``), long format: study-level ``split`` (train / validation /
  test), ``PatientID``, ``StudyDate_DICOM`` and the prior link ``prior_imageID``;
* PNGs anywhere below the root, looked up by file name: the current image (``Padchest_GR_files/...``) and prior
  images (``PadChest_GR_progression_prior_studies/...``, possibly nested).

The report (target) is every ``sentence_en`` of ``findings`` in JSON order, stripped, empty ones skipped, joined by
single spaces. Every GR study has one frontal image; the prior is the dataset's own link (JSON
``PreviousImageID``, else the master table's ``prior_imageID``), used when its file exists (missing ones are
counted, and the study is kept without a prior). A prior that is itself a GR study of another split is not used.
The validation split is merged into train by default (EditGRPO: 3,640 = train + validation). No context lines
exist in English, so the prompt has none. 16-bit PNGs are scaled by their maximum (`verl_ext.data.images`).
"""
from __future__ import annotations

import glob
import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from verl_ext.data.common import Tally, clean, output_split
from verl_ext.data.pipeline import ImageCandidate, Plan, PrepConfig, StudyJob

DATA_SOURCE = "padchest_gr"
CONTEXT_FIELDS: tuple[str, ...] = ()


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip()) \
        or (isinstance(v, str) and v.strip().lower() in ("nan", "none", "null"))


def report_text(findings) -> str:
    """English report of a GR study: its sentences in JSON order."""
    sentences = [clean(f.get("sentence_en")) for f in findings if isinstance(f, dict)]
    return " ".join(s for s in sentences if s)


def plan_padchest_gr(root: str | os.PathLike, cfg: PrepConfig) -> Plan:
    root = Path(root)
    reports = sorted(glob.glob(str(root / "grounded_reports_*.json")))
    if not reports:
        raise FileNotFoundError(f"grounded_reports_*.json not found in {root}")
    report_path = Path(reports[-1])
    master_path = next((p for p in (root / "master_table.csv", root / "master_table.csv.zip") if p.is_file()), None)
    if master_path is None:
        raise FileNotFoundError(f"master_table.csv not found in {root}")
    records = json.loads(report_path.read_text())
    if not isinstance(records, list):
        raise ValueError(f"{report_path}: expected a JSON list of studies")
    master = pd.read_csv(master_path, dtype=str, keep_default_na=True)
    for col in ("StudyID", "ImageID", "PatientID", "split"):
        if col not in master.columns:
            raise ValueError(f"{master_path}: missing column {col}")
    study_rows: dict[str, dict] = {}
    for row in master.to_dict("records"):
        sid = str(row["StudyID"]).strip()
        entry = study_rows.setdefault(sid, {"split": row.get("split"), "PatientID": row.get("PatientID"),
                                            "date": row.get("StudyDate_DICOM"), "prior": None})
        if entry["prior"] is None and not _missing(row.get("prior_imageID")):
            entry["prior"] = str(row["prior_imageID"]).strip()

    png: dict[str, str] = {}
    duplicates = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.lower().endswith(".png"):
                if f in png:
                    duplicates += 1
                    continue
                png[f] = os.path.join(dirpath, f)

    tally = Tally(cfg)
    keys: dict[str, list[str]] = defaultdict(list)
    studies: dict[str, dict] = {}
    gr_split: dict[str, str] = {}
    seen_json = set()
    for rec in records:
        if isinstance(rec, dict) and rec.get("StudyID") is not None:
            sid = str(rec["StudyID"]).strip()
            if sid in study_rows:
                gr_split[sid] = output_split(study_rows[sid]["split"], cfg) or "unknown"
    for rec in records:
        if not isinstance(rec, dict) or _missing(rec.get("StudyID")) or _missing(rec.get("ImageID")) \
                or not isinstance(rec.get("findings"), list):
            tally.study("unknown")
            tally.drop("unknown", "malformed_record", f"{report_path}: malformed record {str(rec)[:80]}")
            continue
        sid = str(rec["StudyID"]).strip()
        meta = study_rows.get(sid)
        split = (output_split(meta["split"], cfg) if meta else None) or "unknown"
        tally.study(split)
        if sid in seen_json:
            tally.drop(split, "duplicate_study", f"study {sid} listed twice")
            continue
        seen_json.add(sid)
        if meta is None:
            tally.drop(split, "no_split", f"study {sid} is not in {master_path.name}")
            continue
        if split == "unknown":
            tally.drop(split, "unknown_split", f"study {sid}: split {meta['split']!r}")
            continue
        studies[sid] = {"rec": rec, "meta": meta, "split": split}
        keys[split].append(sid)
    for sid, meta in study_rows.items():  # in the table but without a report
        if sid not in seen_json:
            split = output_split(meta["split"], cfg) or "unknown"
            tally.study(split)
            tally.drop(split, "report_missing", f"study {sid} has no record in {report_path.name}")

    def build_jobs(split: str, study_keys: Sequence[str], start: int) -> list[StudyJob]:
        jobs = []
        for i, sid in enumerate(study_keys):
            rec, meta = studies[sid]["rec"], studies[sid]["meta"]
            notes: Counter = Counter()
            image_id = str(rec["ImageID"]).strip()
            cands = [ImageCandidate(png.get(image_id, ""), os.path.relpath(png[image_id], root)
                                    if image_id in png else image_id, "FRONTAL", "current", image_id)]
            prior_image = None if _missing(rec.get("PreviousImageID")) else str(rec["PreviousImageID"]).strip()
            prior_image = prior_image or meta["prior"]
            prior_study = None if _missing(rec.get("PreviousStudyID")) else str(rec["PreviousStudyID"]).strip()
            if prior_image and cfg.include_prior:
                if prior_study and gr_split.get(prior_study, split) != split:
                    notes["prior_in_other_split_ignored"] += 1
                    prior_image = None
                elif prior_image not in png:
                    notes["prior_image_missing"] += 1
                    prior_image = None
            elif prior_image:
                prior_image = None
            prior_id = None
            if prior_image:
                cands.append(ImageCandidate(png[prior_image], os.path.relpath(png[prior_image], root), "FRONTAL",
                                            "prior", prior_image))
                prior_id = prior_study or Path(prior_image).stem
            text = {"findings": report_text(rec["findings"]), "impression": "", "indication": "", "technique": "",
                    "comparison": ""}
            jobs.append(StudyJob(split=split, source_split=clean(meta["split"]), index=start + i, study_id=sid,
                                 patient_id=clean(meta["PatientID"]), candidates=cands, prior_study_id=prior_id,
                                 text=text, study_date=clean(meta["date"]), notes=dict(notes)))
        return jobs

    info = {"reports": str(report_path), "master_table": str(master_path), "png_files": len(png),
            "duplicate_png_names": duplicates}
    return Plan(keys=dict(keys), build_jobs=build_jobs, dropped=dict(tally.dropped), notes=dict(tally.notes),
                input_studies=dict(tally.input_studies), info=info)
