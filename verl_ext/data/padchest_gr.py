"""PadChest-GR (grounded reports, English) -> verl parquet.

Inputs under ``--root`` (the BIMCV release):

* ``grounded_reports_<date>.json`` (the newest by name), in either shape public loaders read: a list of records
  ``{StudyID, ImageID, PreviousStudyID, PreviousImageID, findings: [{sentence_en, sentence_es, abnormal, boxes,
  extra_boxes, labels, locations, progression}]}``, or records without ``StudyID``/``ImageID`` -- a list whose
  records carry only one of the two, or an object keyed by ``StudyID`` or ``ImageID`` whose values are ``{findings,
  PreviousStudyID, PreviousImageID}``; the missing id comes from the master table. Finding elements may omit keys
  (negative sentences often have no boxes/labels);
* ``master_table.csv`` or the released ``master_table.csv.zip``, long format (one row per study and label):
  study-level ``split`` (train / validation / test), ``PatientID``, ``StudyDate_DICOM`` and the prior link
  ``prior_imageID``;
* images as released: ``Padchest_GR_files/PadChest_GR.zip.001`` ... ``.037`` (byte pieces of one zip; read in place
  through `verl_ext.data.archives`, nothing is extracted), any other ``*.zip`` / ``*.zip.NNN`` below the root, and
  PNGs already on disk (extracted copies, ``PadChest_GR_progression_prior_studies/...``). Images are looked up by
  file name; a file on disk wins over an archive member of the same name.

Every study is counted once, in its own split: a study is identified by its ``StudyID`` whichever shape names it; a
master-table study with no report record is dropped as ``report_missing``; a record whose study cannot be identified
(no ``StudyID``, no ``ImageID`` of the master table) is no study of its own -- it is counted as
``records_without_study_id`` in the reader info (an error under ``--strict``), and the study it was meant for is
counted in its split as ``report_missing`` (formerly it was a study of its own in an ``unknown`` split, so that study
was counted twice); a study whose master-table rows name two splits is dropped as ``inconsistent_split`` (a
robustness rule); a second record of a study is only noted (``duplicate_record``), the first one is used. The
report (target) is every ``sentence_en`` of ``findings`` in JSON order, stripped, empty ones skipped, joined by
single spaces. Every GR study has one frontal image; the prior is the dataset's own link (JSON ``PreviousImageID``,
else the master table's ``prior_imageID``), used when its image exists (missing ones are counted, and the study is
kept without a prior). A prior that is itself a GR study of another split is not used.
The validation split is merged into train by default (EditGRPO: 3,640 = train + validation). No context lines
exist in English, so the prompt has none. 16-bit PNGs are scaled by their maximum (`verl_ext.data.images`).
"""
from __future__ import annotations

import glob
import logging
import math
import os
import zipfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from verl_ext.data.archives import missing_parts, open_zip, split_zip_sets
from verl_ext.data.common import InputError, Tally, clean, output_split, read_csv_checked, read_json_checked
from verl_ext.data.pipeline import DataError, ImageCandidate, Plan, PrepConfig, StudyJob

logger = logging.getLogger(__name__)

DATA_SOURCE = "padchest_gr"
CONTEXT_FIELDS: tuple[str, ...] = ()


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip()) \
        or (isinstance(v, str) and v.strip().lower() in ("nan", "none", "null"))


def report_text(findings) -> str:
    """English report of a GR study: its sentences in JSON order."""
    sentences = [clean(f.get("sentence_en")) for f in findings if isinstance(f, dict)]
    return " ".join(s for s in sentences if s)


class ImageIndex:
    """File name -> where the image is: a path on disk, or (archive parts, member) inside a (split) zip."""

    def __init__(self, root: Path):
        self.root = root
        self.disk: dict[str, str] = {}
        self.members: dict[str, tuple[tuple[str, ...], str]] = {}
        self.duplicates = 0
        self.archives: list[str] = []
        for dirpath, _, files in os.walk(root):
            for f in files:
                if f.lower().endswith(".png"):
                    if f in self.disk:
                        self.duplicates += 1
                        continue
                    self.disk[f] = os.path.join(dirpath, f)
        singles = [(p,) for p in sorted(glob.glob(str(root / "**" / "*.zip"), recursive=True))
                   if not p.lower().endswith("master_table.csv.zip")]
        for parts in split_zip_sets(root) + singles:
            gaps = missing_parts(parts) if len(parts) > 1 or not parts[0].lower().endswith(".zip") else []
            if gaps:
                raise InputError(f"{parts[0][:-4]}: split archive incomplete, part(s) "
                                 f"{', '.join(f'{g:03d}' for g in gaps)} missing")
            try:
                with open_zip(parts) as zf:
                    names = zf.namelist()
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
                raise InputError(f"{parts[0]}{' (+%d parts)' % (len(parts) - 1) if len(parts) > 1 else ''}: not a "
                                 f"readable zip ({e}); an incomplete download?") from e
            self.archives.append(parts[0])
            for name in names:
                base = name.rsplit("/", 1)[-1]
                if base.lower().endswith(".png") and base not in self.members:
                    self.members[base] = (tuple(parts), name)

    def __contains__(self, name: str) -> bool:
        return name in self.disk or name in self.members

    def candidate(self, name: str, role: str) -> ImageCandidate:
        """An image candidate for file `name` (path "" when it is nowhere)."""
        if name in self.disk:
            return ImageCandidate(self.disk[name], os.path.relpath(self.disk[name], self.root), "FRONTAL", role, name)
        if name in self.members:
            parts, member = self.members[name]
            return ImageCandidate(f"{parts[0]}::{member}", member, "FRONTAL", role, name, archive=parts,
                                  member=member)
        return ImageCandidate("", name, "FRONTAL", role, name)


def _records(data, path: Path, image_to_study: dict[str, str], study_ids: set[str]) -> list[tuple[str | None, dict]]:
    """(StudyID or None, record) for both grounded-report shapes (module docstring)."""
    if isinstance(data, dict):
        pairs = []
        for key, rec in data.items():
            rec = dict(rec) if isinstance(rec, dict) else {"findings": rec}
            key = str(key).strip()
            if key in study_ids:
                rec.setdefault("StudyID", key)
            elif key in image_to_study or key.lower().endswith(".png"):
                rec.setdefault("ImageID", key)
            pairs.append(rec)
        data = pairs
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of study records or an object keyed by StudyID/ImageID, got "
                         f"{type(data).__name__}")
    out = []
    for rec in data:
        if not isinstance(rec, dict):
            out.append((None, {}))
            continue
        sid = None if _missing(rec.get("StudyID")) else str(rec["StudyID"]).strip()
        if sid is None and not _missing(rec.get("ImageID")):
            sid = image_to_study.get(str(rec["ImageID"]).strip())
        out.append((sid, rec))
    return out


def plan_padchest_gr(root: str | os.PathLike, cfg: PrepConfig) -> Plan:
    root = Path(root)
    reports = sorted(glob.glob(str(root / "grounded_reports_*.json")))
    if not reports:
        raise FileNotFoundError(f"grounded_reports_*.json not found in {root}")
    report_path = Path(reports[-1])
    master_path = next((p for p in (root / "master_table.csv", root / "master_table.csv.zip") if p.is_file()), None)
    if master_path is None:
        raise FileNotFoundError(f"master_table.csv(.zip) not found in {root}")
    data = read_json_checked(report_path)
    master = read_csv_checked(master_path, ("StudyID", "ImageID", "PatientID", "split"), dtype=str,
                              keep_default_na=True)
    study_rows: dict[str, dict] = {}
    image_to_study: dict[str, str] = {}
    for row in master.to_dict("records"):
        if _missing(row["StudyID"]):
            continue
        sid = str(row["StudyID"]).strip()
        entry = study_rows.setdefault(sid, {"split": row.get("split"), "PatientID": row.get("PatientID"),
                                            "date": row.get("StudyDate_DICOM"), "prior": None,
                                            "image": None if _missing(row["ImageID"]) else str(row["ImageID"]).strip()})
        entry.setdefault("splits", set()).add(output_split(row.get("split"), cfg) or "unknown")
        if entry["image"]:
            image_to_study.setdefault(entry["image"], sid)
        if entry["prior"] is None and not _missing(row.get("prior_imageID")):
            entry["prior"] = str(row["prior_imageID"]).strip()
    records = _records(data, report_path, image_to_study, set(study_rows))
    images = ImageIndex(root)

    tally = Tally(cfg)
    keys: dict[str, list[str]] = defaultdict(list)
    studies: dict[str, dict] = {}
    gr_split = {sid: next(iter(m["splits"])) if len(m["splits"]) == 1 else "unknown" for sid, m in study_rows.items()}
    seen: set[str] = set()
    unidentified = 0
    for sid, rec in records:
        if sid is None:
            unidentified += 1
            if cfg.strict:
                raise DataError(f"{report_path}: a record names no study of {master_path.name}: {str(rec)[:80]}")
            continue
        if not isinstance(rec.get("findings"), list):
            split = gr_split.get(sid, "unknown")
            if sid in seen:
                tally.note(split, "duplicate_record", f"study {sid} listed twice")
                continue
            seen.add(sid)
            tally.study(split)
            tally.drop(split, "malformed_record", f"{report_path}: malformed record {str(rec)[:80]}")
            continue
        meta = study_rows.get(sid)
        split = gr_split.get(sid, "unknown")
        if sid in seen:  # the study is counted once, at its first record
            tally.note(split, "duplicate_record", f"study {sid} listed twice")
            continue
        seen.add(sid)
        tally.study(split)
        if meta is None:
            tally.drop(split, "no_split", f"study {sid} is not in {master_path.name}")
            continue
        if split == "unknown":
            reason = "inconsistent_split" if len(meta["splits"]) > 1 else "unknown_split"
            tally.drop(split, reason, f"study {sid}: split {meta['split']!r} ({reason})")
            continue
        image_id = None if _missing(rec.get("ImageID")) else str(rec["ImageID"]).strip()
        studies[sid] = {"rec": rec, "meta": meta, "split": split, "image": image_id or meta["image"]}
        keys[split].append(sid)
    for sid, meta in study_rows.items():  # in the table but without a report record
        if sid not in seen:
            tally.study(gr_split[sid])
            tally.drop(gr_split[sid], "report_missing", f"study {sid} has no record in {report_path.name}")

    def build_jobs(split: str, study_keys: Sequence[str], start: int) -> list[StudyJob]:
        jobs = []
        for i, sid in enumerate(study_keys):
            study = studies[sid]
            rec, meta = study["rec"], study["meta"]
            notes: Counter = Counter()
            cands = [images.candidate(study["image"] or f"{sid}.png", "current")]
            prior_image = None if _missing(rec.get("PreviousImageID")) else str(rec["PreviousImageID"]).strip()
            prior_image = prior_image or meta["prior"]
            prior_study = None if _missing(rec.get("PreviousStudyID")) else str(rec["PreviousStudyID"]).strip()
            if prior_image and cfg.include_prior:
                if prior_study and gr_split.get(prior_study, split) != split:
                    notes["prior_in_other_split_ignored"] += 1
                    prior_image = None
                elif prior_image not in images:
                    notes["prior_image_missing"] += 1
                    prior_image = None
            else:
                prior_image = None
            prior_id = None
            if prior_image:
                cands.append(images.candidate(prior_image, "prior"))
                prior_id = prior_study or Path(prior_image).stem
            text = {"findings": report_text(rec["findings"]), "impression": "", "indication": "", "technique": "",
                    "comparison": ""}
            jobs.append(StudyJob(split=split, source_split=clean(meta["split"]), index=start + i, study_id=sid,
                                 patient_id=clean(meta["PatientID"]), candidates=cands, prior_study_id=prior_id,
                                 text=text, study_date=clean(meta["date"]), notes=dict(notes)))
        return jobs

    info = {"reports": str(report_path), "master_table": str(master_path), "png_files": len(images.disk),
            "archive_pngs": len(images.members), "archives": images.archives,
            "duplicate_png_names": images.duplicates, "records_without_study_id": unidentified}
    if unidentified:
        logger.warning("%s: %d record(s) name no study of %s (no StudyID/ImageID found there); counted as "
                       "records_without_study_id, their studies as report_missing", report_path.name, unidentified,
                       master_path.name)
    return Plan(keys=dict(keys), build_jobs=build_jobs, dropped=dict(tally.dropped), notes=dict(tally.notes),
                input_studies=dict(tally.input_studies), info=info)
