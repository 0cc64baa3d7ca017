"""ReXGradient-160K -> verl parquet.

Inputs under ``--root``:

* ``metadata/{train,valid,test}_metadata_view_position.json`` (preferred: "proper view labels") or
  ``metadata/{split}_metadata.json``: a dict keyed by ``p<PatientID>_a<Accession>_s<StudyUID>`` with
  ``PatientID, StudyDate, Indication, Comparison, Findings, Impression, ImagePath: ["../deid_png/...png"],
  ImageViewPosition: [...]``;
* ``metadata/{split}_metadata.csv`` (optional): studies listed there but absent from the JSON are counted as input
  studies and dropped (``no_image_metadata``);
* ``deid_png/<PatientID>/<Accession>/studies/<StudyUID>/series/<SeriesUID>/instances/<SOP>.png``; ``ImagePath``
  entries are relative to ``metadata/``.

Rules: no prior linking (EditGRPO curates multi-view inputs only); a study with more than ``max_study_images``
images (default 6, counted before any view filter, as the paper's "cases containing more than six images were
excluded") is dropped; with ``views=frontal_lateral`` only PA/AP/LATERAL/LL images go into the prompt, with
``views=all`` every image does (which is what the paper's 1.69 images per sample suggests).
Context lines: INDICATION and COMPARISON (there is no TECHNIQUE section).
"""
from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from verl_ext.data.common import Tally, clean, output_split
from verl_ext.data.pipeline import ImageCandidate, Plan, PrepConfig, StudyJob
from verl_ext.data.views import OTHER, normalize_view, view_class

DATA_SOURCE = "rexgradient"
CONTEXT_FIELDS = ("indication", "comparison")
OFFICIAL_SPLITS = ("train", "valid", "test")


def _metadata_json(meta_dir: Path, split: str) -> Path | None:
    for name in (f"{split}_metadata_view_position.json", f"{split}_metadata.json"):
        if (meta_dir / name).is_file():
            return meta_dir / name
    return None


def plan_rexgradient(root: str | os.PathLike, cfg: PrepConfig) -> Plan:
    root = Path(root)
    meta_dir = root / "metadata"
    if not meta_dir.is_dir():
        raise FileNotFoundError(f"{meta_dir} not found (the ReXGradient-160K root holds metadata/ and deid_png/)")
    tally = Tally(cfg)
    keys: dict[str, list[str]] = defaultdict(list)
    records: dict[str, dict] = {}
    files_used = {}
    for official in OFFICIAL_SPLITS:
        path = _metadata_json(meta_dir, official)
        csv_path = meta_dir / f"{official}_metadata.csv"
        if path is None and not csv_path.is_file():
            continue
        split = output_split(official, cfg)
        data = json.loads(path.read_text()) if path is not None else {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object keyed by study id")
        files_used[official] = str(path) if path else None
        if csv_path.is_file():
            csv_ids = pd.read_csv(csv_path, usecols=lambda c: c == "id", dtype=str)
            for sid in csv_ids.get("id", pd.Series(dtype=str)).dropna():
                if sid not in data:
                    tally.study(split)
                    tally.drop(split, "no_image_metadata", f"{csv_path}: study {sid} has no JSON record")
        for sid, rec in data.items():
            tally.study(split)
            if not isinstance(rec, dict):
                tally.drop(split, "malformed_record", f"{path}: record {sid} is not an object")
                continue
            uid = f"{split}/{sid}"
            if uid in records:
                tally.drop(split, "duplicate_study", f"study {sid} listed twice")
                continue
            paths = rec.get("ImagePath") or []
            if isinstance(paths, str):
                paths = [paths]
            if cfg.max_study_images is not None and len(paths) > cfg.max_study_images:
                tally.drop(split, "too_many_images")
                continue
            records[uid] = {"rec": rec, "official": official, "json": path}
            keys[split].append(uid)

    def build_jobs(split: str, study_keys: Sequence[str], start: int) -> list[StudyJob]:
        jobs = []
        for i, uid in enumerate(study_keys):
            item = records[uid]
            rec, json_path = item["rec"], item["json"]
            sid = uid.split("/", 1)[1]
            paths = rec.get("ImagePath") or []
            if isinstance(paths, str):
                paths = [paths]
            views = rec.get("ImageViewPosition") or []
            if isinstance(views, str):
                views = [views]
            notes: Counter = Counter()
            if len(views) != len(paths):
                notes["view_list_length_mismatch"] += 1
            cands = []
            for k, p in enumerate(paths):
                view = normalize_view(views[k] if k < len(views) else None)
                if cfg.views == "frontal_lateral" and view_class(view) == OTHER:
                    notes[f"excluded_view:{view}"] += 1
                    continue
                absolute = os.path.normpath(json_path.parent / p) if p else ""
                rel = os.path.relpath(absolute, root) if absolute else ""
                cands.append(ImageCandidate(absolute, rel, view, "current", Path(p).stem if p else f"#{k}"))
            text = {"findings": clean(rec.get("Findings")), "impression": clean(rec.get("Impression")),
                    "indication": clean(rec.get("Indication")), "comparison": clean(rec.get("Comparison")),
                    "technique": ""}
            jobs.append(StudyJob(split=split, source_split=item["official"], index=start + i, study_id=sid,
                                 patient_id=clean(rec.get("PatientID")), candidates=cands, text=text,
                                 study_date=clean(rec.get("StudyDate")), notes=dict(notes)))
        return jobs

    return Plan(keys=dict(keys), build_jobs=build_jobs, dropped=dict(tally.dropped), notes=dict(tally.notes),
                input_studies=dict(tally.input_studies), info={"metadata_files": files_used})
