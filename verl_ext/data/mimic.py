"""MIMIC-CXR (reports) + MIMIC-CXR-JPG (images, metadata, split) -> verl parquet.

Inputs:

* ``<jpg_root>/mimic-cxr-2.0.0-metadata.csv.gz`` (one row per image: ``dicom_id, subject_id, study_id,
  ViewPosition, StudyDate, StudyTime, ViewCodeSequence_CodeMeaning`` ...) and ``mimic-cxr-2.0.0-split.csv.gz``
  (``dicom_id, study_id, subject_id, split`` with train / validate / test; patient-disjoint);
* images ``<jpg_root>/files/pNN/pSUBJECT/sSTUDY/<dicom_id>.jpg``;
* reports ``<reports>/files/pNN/pSUBJECT/sSTUDY.txt`` or the same paths inside ``mimic-cxr-reports.zip`` (with or
  without a leading folder).

What happens here (metadata only; reports and images are read by the workers):

* an image's view is ``ViewPosition``, or ``ViewCodeSequence_CodeMeaning`` when that is missing; with
  ``views=frontal_lateral`` only PA/AP/LATERAL/LL images are candidates (others are counted per label);
* a study's split comes from its images' split rows; a study with none is dropped (``no_split``), one with
  conflicting rows is dropped (``inconsistent_split``); split rows for images absent from the metadata, metadata
  rows without a split row, and studies known only from the split file are counted;
* a study's time is its earliest image's (StudyDate, StudyTime) taken numerically; the prior is linked by
  `verl_ext.data.priors.link_priors` within the patient and split, over all studies of the patient (or only those
  with FINDINGS under ``prior_requires_findings``, which reads every report first);
* a study without any candidate image is dropped (``no_usable_view``) before its report is read;
* counting: a study is one ``study_id`` of the metadata (plus those known only from the split file), so each is
  counted once; a repeated metadata row (same ``dicom_id`` and ``study_id``) or split row (same ``dicom_id`` and
  ``split``) is noted as ``duplicate_record`` and used once, and an image whose split rows disagree makes its study
  ``inconsistent_split``. The official files are not documented to repeat rows; this is a robustness rule.
"""
from __future__ import annotations

import glob
import logging
import os
import zipfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from verl_ext.data.common import InputError, Tally, output_split, read_csv_checked
from verl_ext.data.pipeline import ImageCandidate, Plan, PrepConfig, ReportError, StudyJob, read_report
from verl_ext.data.priors import StudyTime, link_priors
from verl_ext.data.sections import extract_report_fields
from verl_ext.data.views import OTHER, normalize_view, view_class

logger = logging.getLogger(__name__)

DATA_SOURCE = "mimic_cxr"
CONTEXT_FIELDS = ("indication", "technique", "comparison")


def _find_csv(root: Path, stem: str) -> Path:
    hits = sorted(glob.glob(str(root / f"{stem}.csv*")))
    if not hits:
        raise FileNotFoundError(f"{stem}.csv.gz not found in {root} (the MIMIC-CXR-JPG root holds it)")
    return Path(hits[0])


def subject_dir(subject_id: str) -> str:
    return f"p{subject_id[:2]}/p{subject_id}"


class ReportLocator:
    """Where the report of a (subject, study) lives: an extracted folder or ``mimic-cxr-reports.zip``."""

    def __init__(self, reports: str | os.PathLike):
        path = Path(reports)
        self.zip_path = None
        self.prefix = ""
        if path.is_file():
            self.zip_path = str(path.resolve())
            try:
                zf = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as e:
                raise InputError(f"{path}: not a readable zip ({e}); pass mimic-cxr-reports.zip or the folder "
                                 f"holding files/") from e
            with zf:
                for name in zf.namelist():
                    i = name.find("files/p")
                    if i >= 0 and name.endswith(".txt"):
                        self.prefix = name[:i] + "files/"
                        break
                else:
                    raise FileNotFoundError(f"{path}: no files/pNN/pSUBJECT/sSTUDY.txt member")
        elif path.is_dir():
            self.root = path / "files" if (path / "files").is_dir() else path
        else:
            raise FileNotFoundError(f"reports not found: {path} (a folder containing files/, or the zip)")

    def ref(self, subject_id: str, study_id: str) -> tuple[str, ...]:
        rel = f"{subject_dir(subject_id)}/s{study_id}.txt"
        if self.zip_path:
            return ("zip", self.zip_path, self.prefix + rel)
        return ("file", str(self.root / rel))


def _has_findings(refs: list[tuple]) -> list[bool]:
    out = []
    for ref in refs:
        try:
            out.append(bool(extract_report_fields(read_report(ref)).findings))
        except ReportError:
            out.append(False)
    return out


def plan_mimic(jpg_root: str | os.PathLike, reports: str | os.PathLike, cfg: PrepConfig) -> Plan:
    root = Path(jpg_root)
    locator = ReportLocator(reports)
    tally = Tally(cfg)
    meta_path, split_path = _find_csv(root, "mimic-cxr-2.0.0-metadata"), _find_csv(root, "mimic-cxr-2.0.0-split")
    meta = read_csv_checked(meta_path, ("dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate",
                                        "StudyTime"),
                            dtype={"dicom_id": str, "subject_id": str, "study_id": str, "ViewPosition": str,
                                   "ViewCodeSequence_CodeMeaning": str}, keep_default_na=True)
    if "ViewCodeSequence_CodeMeaning" not in meta.columns:
        meta["ViewCodeSequence_CodeMeaning"] = np.nan
    split_df = read_csv_checked(split_path, ("dicom_id", "study_id", "subject_id", "split"),
                                dtype={"dicom_id": str, "study_id": str, "subject_id": str, "split": str})
    # Repeated rows (an image listed twice in the metadata, a split row given twice) would put one image twice
    # into a sample: the first row is kept and the repeats are noted as duplicate_record once the splits are known.
    meta_repeats = meta.duplicated(["dicom_id", "study_id"], keep="first")
    repeated_meta = meta.loc[meta_repeats, "study_id"].tolist()
    meta = meta.loc[~meta_repeats].copy()
    split_repeats = split_df.duplicated(["dicom_id", "split"], keep="first")
    repeated_split_rows = split_df.loc[split_repeats, "split"].tolist()
    split_df = split_df.loc[~split_repeats]
    meta["StudyDate"] = pd.to_numeric(meta["StudyDate"], errors="coerce")
    meta["StudyTime"] = pd.to_numeric(meta["StudyTime"], errors="coerce")

    # Split per image, then per study.
    split_of_dicom = dict(zip(split_df["dicom_id"], split_df["split"]))
    conflicting = split_df.groupby("dicom_id")["split"].nunique()
    for dicom in conflicting.index[conflicting > 1]:  # an image in two splits: its study is inconsistent
        split_of_dicom[dicom] = "<inconsistent>"
    meta["raw_split"] = meta["dicom_id"].map(split_of_dicom)
    meta_dicoms = set(meta["dicom_id"])
    orphan_rows = split_df[~split_df["dicom_id"].isin(meta_dicoms)]
    meta_studies = set(meta["study_id"])

    grouped = meta.dropna(subset=["raw_split"]).groupby("study_id")["raw_split"]
    n_values, first_value = grouped.nunique(), grouped.first()
    n_values = n_values.loc[first_value.index]
    study_split: dict[str, str] = {sid: (v if n == 1 else "<inconsistent>")
                                   for sid, n, v in zip(first_value.index, n_values, first_value)}

    def out_split_of(raw: str | None) -> str:
        if raw is None or raw == "<inconsistent>":
            return "unknown"
        return output_split(raw, cfg) or "unknown"

    for raw in repeated_split_rows:
        tally.note(out_split_of(raw), "duplicate_record", "a split row is repeated")

    # Studies known only from the split file: counted as input studies without image metadata.
    for study_id, grp in orphan_rows.groupby("study_id"):
        split = out_split_of(grp["split"].iloc[0])
        for _ in range(len(grp)):
            tally.note(split, "split_row_without_metadata", f"split row {grp['dicom_id'].iloc[0]} has no metadata")
        if study_id not in meta_studies:
            tally.study(split)
            tally.drop(split, "no_image_metadata", f"study {study_id} is in the split file only")

    # View labels.
    views = [normalize_view(v, f) for v, f in zip(meta["ViewPosition"], meta["ViewCodeSequence_CodeMeaning"])]
    meta["view"] = views
    from_fallback = meta["ViewPosition"].isna() & (meta["view"] != "UNKNOWN")

    # Study-level table: earliest (date, time) of the study's images, numerically.
    meta_sorted = meta.sort_values(["study_id", "StudyDate", "StudyTime"], na_position="last", kind="stable")
    first = meta_sorted.drop_duplicates("study_id", keep="first").set_index("study_id")

    studies: dict[str, dict] = {}
    for study_id, subject, date, tm in zip(first.index, first["subject_id"], first["StudyDate"], first["StudyTime"]):
        raw = study_split.get(study_id)
        studies[study_id] = {"subject": subject, "date": float(date), "time": float(tm), "split": out_split_of(raw),
                             "source_split": raw if raw and raw != "<inconsistent>" else ""}

    for study_id in repeated_meta:
        tally.note(studies[study_id]["split"], "duplicate_record", f"study {study_id}: a metadata row is repeated")

    # Images per study (candidates) and per-study notes.
    images: dict[str, list[tuple[str, str]]] = defaultdict(list)
    study_notes: dict[str, Counter] = defaultdict(Counter)
    for dicom, study_id, view, fb, raw_split in zip(meta["dicom_id"], meta["study_id"], meta["view"],
                                                     from_fallback, meta["raw_split"]):
        if fb:
            study_notes[study_id]["view_from_code_meaning"] += 1
        if isinstance(raw_split, float) and study_split.get(study_id) not in (None, "<inconsistent>"):
            study_notes[study_id]["metadata_row_without_split"] += 1
        if cfg.views == "frontal_lateral" and view_class(view) == OTHER:
            study_notes[study_id][f"excluded_view:{view}"] += 1
            continue
        images[study_id].append((dicom, view))

    # Plan-time drops and accounting.
    keys: dict[str, list[str]] = defaultdict(list)
    report_refs = {}
    for study_id, s in studies.items():
        split = s["split"]
        tally.study(split)
        if split == "unknown":
            raw = study_split.get(study_id)
            reason = "inconsistent_split" if raw == "<inconsistent>" else ("no_split" if raw is None
                                                                              else "unknown_split")
            tally.drop(split, reason, f"study {study_id}: {reason}")
            continue
        for reason, n in study_notes.get(study_id, {}).items():
            if reason == "metadata_row_without_split":
                tally.note(split, reason, f"study {study_id}: image without a split row", n)
        if not images.get(study_id):
            for reason, n in study_notes.get(study_id, {}).items():
                if reason != "metadata_row_without_split":
                    tally.note(split, reason, n=n)
            tally.drop(split, "no_usable_view")
            continue
        keys[split].append(study_id)
        report_refs[study_id] = locator.ref(s["subject"], study_id)

    eligible = None
    if cfg.prior_requires_findings:
        eligible = _studies_with_findings(
            {sid: locator.ref(s["subject"], sid) for sid, s in studies.items() if s["split"] != "unknown"}, cfg)

    order = [StudyTime(sid, s["subject"], s["split"] if s["split"] != "unknown" else f"?{sid}", s["date"], s["time"])
             for sid, s in studies.items()]
    prior_of, events = link_priors(order, eligible=eligible)
    if not cfg.include_prior:
        prior_of = {}
    for sid in events["unordered"]:
        if studies[sid]["split"] != "unknown":
            tally.note(studies[sid]["split"], "missing_study_datetime", f"study {sid} has no StudyDate/StudyTime")
    for sid in events["cross_split"]:
        tally.note(studies[sid]["split"], "prior_in_other_split_ignored")

    for split in keys:  # deterministic order: patient, then time
        keys[split].sort(key=lambda sid: (studies[sid]["subject"], studies[sid]["date"], studies[sid]["time"], sid))

    files_root = root / "files"

    def candidates_of(study_id: str, role: str) -> list[ImageCandidate]:
        subject = studies[study_id]["subject"]
        out = []
        for dicom, view in images.get(study_id, []):
            rel = f"files/{subject_dir(subject)}/s{study_id}/{dicom}.jpg"
            out.append(ImageCandidate(str(files_root / subject_dir(subject) / f"s{study_id}" / f"{dicom}.jpg"),
                                      rel, view, role, dicom))
        return out

    def build_jobs(split: str, study_keys: Sequence[str], start: int) -> list[StudyJob]:
        jobs = []
        for i, sid in enumerate(study_keys):
            s = studies[sid]
            prior = prior_of.get(sid)
            cands = candidates_of(sid, "current") + (candidates_of(prior, "prior") if prior else [])
            notes = {k: v for k, v in study_notes.get(sid, {}).items() if k != "metadata_row_without_split"}
            if prior and not images.get(prior):
                notes["prior_without_usable_view"] = 1
            date = "" if not np.isfinite(s["date"]) else f"{int(s['date']):08d}"
            jobs.append(StudyJob(split=split, source_split=s["source_split"], index=start + i, study_id=sid,
                                 patient_id=s["subject"], candidates=cands, prior_study_id=prior,
                                 report=report_refs[sid], study_date=date, notes=notes))
        return jobs

    info = {"metadata": str(meta_path), "split_file": str(split_path), "reports": str(reports),
            "images_in_metadata": int(len(meta)), "studies_in_metadata": int(len(studies)),
            "studies_with_prior_link": len(prior_of)}
    return Plan(keys=dict(keys), build_jobs=build_jobs, dropped=dict(tally.dropped), notes=dict(tally.notes),
                input_studies=dict(tally.input_studies), info=info)


def _studies_with_findings(refs: dict[str, tuple], cfg: PrepConfig) -> set[str]:
    """Read every report once to know which studies have FINDINGS (for ``prior_requires_findings``)."""
    ids = list(refs)
    chunks = [ids[i: i + 2000] for i in range(0, len(ids), 2000)]
    results: list[list[bool]]
    if cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers) as pool:
            results = list(pool.map(_has_findings, [[refs[s] for s in c] for c in chunks]))
    else:
        results = [_has_findings([refs[s] for s in c]) for c in chunks]
    return {sid for chunk, flags in zip(chunks, results) for sid, ok in zip(chunk, flags) if ok}
