"""MIMIC-CXR on R2Gen's split (``--split-file annotation.json``): the protocol DEER and the R2Gen line of work
(R2Gen, PromptMRG, ...) train and test on, 270,790 / 2,130 / 3,858 train / val / test samples.

R2Gen's ``mimic_cxr/annotation.json`` (zhjohnchan/R2Gen, read by ``modules/datasets.py``) is ``{"train": [...],
"val": [...], "test": [...]}``; an item is ``{"id": <dicom_id>, "study_id", "subject_id", "report",
"image_path": ["p10/p10000032/s50414267/<dicom_id>.jpg"], "split"}``. R2Gen's sample unit is **one image**
(``MimiccxrSingleImageDataset`` opens ``image_path[0]``), so a study with three images is three samples with the
same report; here too: one row per item, its ``study_id`` being the item's ``id`` (the image), its ``patient_id`` the
subject. R2Gen links no priors, so none are added.

* target: the item's ``report`` (R2Gen's findings text, what its metrics compare against); the context lines
  (INDICATION / TECHNIQUE / COMPARISON) come from the official report of the item's study, as for the default split
  (a report that cannot be read is counted as ``context_report_missing`` / ``context_report_unreadable`` and the
  sample keeps its target without context);
* image: ``<mimic_cxr_jpg>/files/<image_path>`` (or ``<mimic_cxr_jpg>/<image_path>``); its view from
  ``mimic-cxr-2.0.0-metadata.csv.gz`` when the image is listed there (else ``UNKNOWN``); ``--views`` does not
  filter R2Gen's images (the split fixes them);
* splits: the file's (``val`` merged into train only with ``--merge-val-into-train``);
* counting: each item is one input sample; an ``id`` listed twice is noted as ``duplicate_record`` and used once,
  one listed in two splits is dropped once as ``inconsistent_split`` (``verl_ext.data.common.count_once``); an item
  without an image path or a study is one ``malformed_record``.
"""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from verl_ext.data.common import InputError, Tally, clean, count_once, output_split, read_csv_checked, read_json_checked
from verl_ext.data.pipeline import ImageCandidate, Plan, PrepConfig, StudyJob
from verl_ext.data.views import normalize_view

#: R2Gen's MIMIC-CXR split sizes (samples = images), for the reader info.
R2GEN_SIZES = {"train": 270790, "val": 2130, "test": 3858}


def read_r2gen_annotation(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """(official split, item) for every item of an R2Gen ``annotation.json``."""
    data = read_json_checked(path)
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: expected R2Gen's annotation.json, an object {{train: [...], val: [...], "
                         "test: [...]}}")
    out = []
    for split, items in data.items():
        if not isinstance(items, list):
            raise InputError(f"{path}: split {split!r} holds {type(items).__name__}, expected a list of items")
        out.extend((str(split), item) for item in items)
    return out


def plan_mimic_r2gen(jpg_root: str | os.PathLike, reports: str | os.PathLike, split_file: str | os.PathLike,
                     cfg: PrepConfig) -> Plan:
    from verl_ext.data.mimic import ReportLocator, _find_csv

    root = Path(jpg_root)
    locator = ReportLocator(reports)
    tally = Tally(cfg)
    views: dict[str, str] = {}
    try:
        meta_path = _find_csv(root, "mimic-cxr-2.0.0-metadata")
    except FileNotFoundError:
        meta_path = None
    if meta_path is not None:
        meta = read_csv_checked(meta_path, ("dicom_id", "ViewPosition"), dtype=str, keep_default_na=True)
        fallback = meta["ViewCodeSequence_CodeMeaning"] if "ViewCodeSequence_CodeMeaning" in meta else [None] * len(meta)
        views = {d: normalize_view(v, f) for d, v, f in zip(meta["dicom_id"], meta["ViewPosition"], fallback)}

    listed: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    order: list[str] = []
    malformed: list[str] = []
    for official, item in read_r2gen_annotation(split_file):
        paths = item.get("image_path") if isinstance(item, dict) else None
        paths = [paths] if isinstance(paths, str) else [p for p in (paths or []) if isinstance(p, str) and p]
        sample_id = clean(item.get("id")) if isinstance(item, dict) else ""
        if not paths or not sample_id or not clean(item.get("study_id")) or not clean(item.get("subject_id")):
            malformed.append(output_split(official, cfg) or "unknown")
            continue
        if sample_id not in listed:
            order.append(sample_id)
        listed[sample_id].append((output_split(official, cfg) or "unknown", item))
    for split in malformed:
        tally.study(split)
        tally.drop(split, "malformed_record", "an annotation item lacks id, study_id, subject_id or image_path")

    keys: dict[str, list[str]] = defaultdict(list)
    chosen: dict[str, dict] = {}
    for sample_id in order:
        entries = listed[sample_id]
        split = count_once(tally, sample_id, [s for s, _ in entries])
        if split is None:
            continue
        if split == "unknown":
            tally.drop(split, "unknown_split", f"sample {sample_id}: split not train/val/test")
            continue
        chosen[sample_id] = entries[0][1]
        keys[split].append(sample_id)

    def image_of(rel: str) -> str:
        under_files = root / "files" / rel
        return str(under_files if under_files.exists() or not (root / rel).exists() else root / rel)

    def build_jobs(split: str, sample_keys: Sequence[str], start: int) -> list[StudyJob]:
        jobs = []
        for i, sample_id in enumerate(sample_keys):
            item = chosen[sample_id]
            rel = item["image_path"] if isinstance(item["image_path"], str) else item["image_path"][0]
            dicom = Path(rel).stem
            subject, study = clean(item["subject_id"]), clean(item["study_id"])
            cand = ImageCandidate(image_of(rel), f"files/{rel}", views.get(dicom, "UNKNOWN"), "current", dicom)
            jobs.append(StudyJob(split=split, source_split=split, index=start + i, study_id=sample_id,
                                 patient_id=subject, candidates=[cand], report=locator.ref(subject, study),
                                 text={"findings": clean(item.get("report"))}))
        return jobs

    info = {"split_file": str(split_file), "protocol": "r2gen", "sample_unit": "image",
            "r2gen_sizes": R2GEN_SIZES, "reports": str(reports),
            "metadata": str(meta_path) if meta_path else None}
    return Plan(keys=dict(keys), build_jobs=build_jobs, dropped=dict(tally.dropped), notes=dict(tally.notes),
                input_studies=dict(tally.input_studies), info=info)
