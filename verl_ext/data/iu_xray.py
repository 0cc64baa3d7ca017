"""IU-Xray (R2Gen split) -> verl parquet.

Inputs under ``--root``:

* ``annotation.json`` = ``{"train": [...], "val": [...], "test": [...]}`` with items ``{"id": "CXR2384_IM-0942",
  "report": <FINDINGS>, "image_path": ["CXR2384_IM-0942/0.png", "CXR2384_IM-0942/1.png"], "split": ...}`` and
  images under ``images/`` (R2Gen's ``iu_xray.zip``). The R2Gen split is the one EditGRPO and ReXrank use;
  EditGRPO's 2,365 train samples are R2Gen train + val, so val is merged into train by default;
* optional Kaggle files (``indiana_reports.csv``: ``uid, ..., indication, comparison, findings, impression``;
  ``indiana_projections.csv``: ``uid, filename, projection``), found in ``--kaggle-dir`` (default: the root);
* optional OpenI XML reports ``ecgen-radiology/<uid>.xml`` (``AbstractText Label="INDICATION"|"COMPARISON"``),
  found in ``--openi-dir`` (default: ``<root>/ecgen-radiology``).

The target is R2Gen's ``report`` (the FINDINGS section). INDICATION and COMPARISON come from the Kaggle reports,
else from the OpenI XML (there is no TECHNIQUE section). R2Gen ids come as ``CXR<uid>_IM-<xxxx>``,
``CXR<uid>_IM-<xxxx>-<yyyy>`` and ``CXR<uid>_<k>_IM-<xxxx>`` (the OpenI image id without its last group, e.g.
``CXR1_1_IM-0001``); each joins Kaggle rows on ``uid`` and Kaggle file names ``<uid>_IM-<xxxx>-<yyyy>.dcm.png``.
A split key of annotation.json that is not a split name (one public copy has a blank test key) is resolved per
item from the item's own ``split`` field (counted as ``split_from_item_field``).

Counting: every distinct R2Gen ``id`` is one input study, however often annotation.json lists it; extra listings
are noted as ``duplicate_record`` and the first is used; an id listed in two output splits (train and test, or
train and val without ``--merge-val-into-train``) is dropped once as ``inconsistent_split`` (under ``unknown``),
so it cannot leak across splits. An item without an ``id`` cannot be matched to others and counts as one study
(``malformed_record``). No public copy is documented to repeat ids; this is a robustness rule.

Views: R2Gen carries none, and ``0.png`` is not always frontal. When the Kaggle projections list exactly as many
files for the study as R2Gen has images, and they are not all one view, the labels are assigned to R2Gen's images
in the order of the Kaggle file names (an assumption: R2Gen kept the original image order, as ReXrank's labels
for the same images imply). Otherwise the views stay ``UNKNOWN`` (counted), and the prompt says "the current
image". Images are put in canonical order (frontal first) when the views are known. No priors exist.
"""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path


from verl_ext.data.common import (InputError, Tally, clean, count_once, output_split, read_csv_checked,
                                  read_json_checked)
from verl_ext.data.pipeline import ImageCandidate, Plan, PrepConfig, StudyJob
from verl_ext.data.views import normalize_view

DATA_SOURCE = "iu_xray"
CONTEXT_FIELDS = ("indication", "comparison")
R2GEN_ID = re.compile(r"^CXR(\d+)(?:_\d+)?_(IM-\d+)")


def _find_annotation(root: Path) -> Path:
    for p in (root / "annotation.json", root / "iu_xray" / "annotation.json"):
        if p.is_file():
            return p
    raise FileNotFoundError(f"annotation.json not found in {root} (R2Gen's iu_xray folder holds it)")


def _openi_context(xml_path: Path) -> dict[str, str] | None:
    try:
        tree = ET.parse(xml_path)
    except (OSError, ET.ParseError):
        return None
    out = {}
    for node in tree.iter("AbstractText"):
        label = (node.get("Label") or "").strip().lower()
        if label in ("indication", "comparison", "findings", "impression"):
            out[label] = clean("".join(node.itertext()))
    return out


def plan_iu_xray(root: str | os.PathLike, cfg: PrepConfig, kaggle_dir: str | os.PathLike | None = None,
                 openi_dir: str | os.PathLike | None = None) -> Plan:
    root = Path(root)
    ann_path = _find_annotation(root)
    image_root = ann_path.parent / "images"
    ann = read_json_checked(ann_path)
    if not isinstance(ann, dict):
        raise InputError(f"{ann_path}: expected a JSON object {{train: [...], val: [...], test: [...]}}, got "
                         f"{type(ann).__name__}")
    kaggle = Path(kaggle_dir) if kaggle_dir else root
    openi = Path(openi_dir) if openi_dir else root / "ecgen-radiology"

    reports: dict[str, dict] = {}
    if (kaggle / "indiana_reports.csv").is_file():
        df = read_csv_checked(kaggle / "indiana_reports.csv", ("uid", "indication", "comparison"), dtype=str)
        for uid, ind, comp in zip(df["uid"], df["indication"], df["comparison"]):
            reports[str(uid).strip()] = {"indication": clean(ind), "comparison": clean(comp)}
    projections: dict[str, list[tuple[str, str]]] = defaultdict(list)
    if (kaggle / "indiana_projections.csv").is_file():
        df = read_csv_checked(kaggle / "indiana_projections.csv", ("uid", "filename", "projection"), dtype=str)
        for uid, fname, proj in zip(df["uid"], df["filename"], df["projection"]):
            projections[str(uid).strip()].append((str(fname), proj))
    has_openi = openi.is_dir()

    tally = Tally(cfg)
    # study id -> its listings in input order: (output split or "unknown", official split, item, split from the
    # item's own field)
    listings: dict[str, list[tuple[str, str, dict, bool]]] = defaultdict(list)
    for official, entries in ann.items():
        key_split = output_split(official, cfg)
        if not isinstance(entries, list):
            raise InputError(f"{ann_path}: split {official!r} holds {type(entries).__name__}, expected a list")
        for item in entries:
            split, source, from_item = key_split, official, False
            if split is None and isinstance(item, dict) and output_split(item.get("split"), cfg):
                split, source, from_item = output_split(item["split"], cfg), str(item["split"]), True
            if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"].strip():
                if from_item:
                    tally.note(split, "split_from_item_field")
                tally.study(split or "unknown")  # cannot be identified: one study per item
                tally.drop(split or "unknown", "unknown_split" if split is None else "malformed_record",
                           f"{ann_path}: item without id in {official!r}")
                continue
            listings[item["id"].strip()].append((split or "unknown", source, item, from_item))

    keys: dict[str, list[str]] = defaultdict(list)
    items: dict[str, dict] = {}
    for sid, found in listings.items():
        split = count_once(tally, sid, [f[0] for f in found])
        if split is None:
            continue
        if split == "unknown":
            tally.drop(split, "unknown_split", f"study {sid}: annotation split {found[0][1]!r}")
            continue
        _, source, item, from_item = found[0]
        if from_item:
            tally.note(split, "split_from_item_field")
        uid = f"{split}/{sid}"
        items[uid] = {"item": item, "official": source}
        keys[split].append(uid)

    def views_for(study_id: str, n: int, notes: Counter) -> list[str]:
        m = R2GEN_ID.match(study_id)
        if not m or not projections:
            notes["views_unknown:no_projection_file" if not projections else "views_unknown:unparsed_id"] += 1
            return ["UNKNOWN"] * n
        uid, im = m.group(1), m.group(2)
        rows = sorted(p for p in projections.get(uid, []) if p[0].startswith(f"{uid}_{im}-"))
        if len(rows) != n:
            notes["views_unknown:projection_count_mismatch"] += 1
            return ["UNKNOWN"] * n
        labels = [normalize_view(p) for _, p in rows]
        if n > 1 and len(set(labels)) == 1:
            notes["views_unknown:all_same_projection"] += 1
            return ["UNKNOWN"] * n
        return labels

    def build_jobs(split: str, study_keys: Sequence[str], start: int) -> list[StudyJob]:
        jobs = []
        for i, uid in enumerate(study_keys):
            item, official = items[uid]["item"], items[uid]["official"]
            sid = uid.split("/", 1)[1]
            notes: Counter = Counter()
            paths = [p for p in (item.get("image_path") or []) if isinstance(p, str) and p.strip()]
            views = views_for(sid, len(paths), notes)
            cands = [ImageCandidate(str(image_root / p), f"images/{p}", v, "current", f"{sid}/{Path(p).stem}")
                     for p, v in zip(paths, views)]
            m = R2GEN_ID.match(sid)
            num = m.group(1) if m else ""
            ctx = reports.get(num)
            if ctx is None and has_openi and num:
                ctx = _openi_context(openi / f"{num}.xml")
            if ctx is None:
                notes["no_context_source"] += 1
                ctx = {}
            text = {"findings": clean(item.get("report")), "impression": "", "technique": "",
                    "indication": ctx.get("indication", ""), "comparison": ctx.get("comparison", "")}
            jobs.append(StudyJob(split=split, source_split=official, index=start + i, study_id=sid,
                                 patient_id=f"CXR{num}" if num else sid, candidates=cands, text=text,
                                 notes=dict(notes)))
        return jobs

    info = {"annotation": str(ann_path), "kaggle_reports": bool(reports), "kaggle_projections": bool(projections),
            "openi_xml": has_openi}
    return Plan(keys=dict(keys), build_jobs=build_jobs, dropped=dict(tally.dropped), notes=dict(tally.notes),
                input_studies=dict(tally.input_studies), info=info)
