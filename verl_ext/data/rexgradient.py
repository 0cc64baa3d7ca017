"""ReXGradient-160K -> verl parquet.

Inputs under ``--root``:

* ``metadata/{train,valid,test}_metadata_view_position.json`` (preferred: "proper view labels") or
  ``metadata/{split}_metadata.json``: a dict keyed by ``p<PatientID>_a<Accession>_s<StudyUID>`` with
  ``PatientID, StudyDate, Indication, Comparison, Findings, Impression, ImagePath: ["../deid_png/...png"],
  ImageViewPosition: [...]``;
* ``metadata/{split}_metadata.csv`` (optional): studies listed there but absent from the JSON are counted as input
  studies and dropped (``no_image_metadata``);
* ``deid_png/<PatientID>/<Accession>/studies/<StudyUID>/series/<SeriesUID>/instances/<SOP>.png``: the Hugging
  Face release ships ``deid_png.part*`` next to ``metadata/``; ``cat deid_png.part* > deid_png.tar && tar -xf
  deid_png.tar`` puts ``deid_png/`` **beside** ``metadata/``, which is what the ``../deid_png/...`` entries of
  ``ImagePath`` point at. Images are found by the part of each entry after ``deid_png/``, under ``--image-root``
  when given (the ``deid_png`` folder itself or its parent), else under ``<root>/deid_png``,
  ``<root>/metadata/deid_png`` or, when ``--root`` is the metadata folder itself, ``<root>/../deid_png``: the first
  of these that holds the first listed images. Parts that were never extracted stop the run with the command to
  extract them.

Rules: no prior linking (EditGRPO curates multi-view inputs only); a study with more than ``max_study_images``
images (default 6, counted before any view filter, as the paper's "cases containing more than six images were
excluded") is dropped; with ``views=frontal_lateral`` only PA/AP/LATERAL/LL images go into the prompt, with
``views=all`` every image does (which is what the paper's 1.69 images per sample suggests).
Counting: every distinct study key is one input study, whatever the number of its listings (a key repeated inside
a JSON file, or listed in the JSON or CSV of two splits). Extra listings are noted as ``duplicate_record`` and the
first JSON record is used (files read in the order train, valid, test); a study listed in two *output* splits is
dropped as ``inconsistent_split`` (under ``unknown``), so that it can neither leak between splits nor count twice.
No public source documents duplicates in the release; this is a robustness rule.
Context lines: INDICATION and COMPARISON (there is no TECHNIQUE section). A missing (NaN/null) entry inside
``ImagePath`` counts as a missing image, one inside ``ImageViewPosition`` as an ``UNKNOWN`` view.
"""
from __future__ import annotations

import glob
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from verl_ext.data.common import (InputError, Tally, clean, count_once, output_split, read_csv_checked,
                                  read_json_checked)
from verl_ext.data.pipeline import ImageCandidate, Plan, PrepConfig, StudyJob
from verl_ext.data.views import OTHER, normalize_view, view_class

DATA_SOURCE = "rexgradient"
CONTEXT_FIELDS = ("indication", "comparison")
OFFICIAL_SPLITS = ("train", "valid", "test")
_REPEATED_KEY = object()  # marks the extra listing of a key repeated inside one metadata JSON


def _metadata_json(meta_dir: Path, split: str) -> Path | None:
    for name in (f"{split}_metadata_view_position.json", f"{split}_metadata.json"):
        if (meta_dir / name).is_file():
            return meta_dir / name
    return None


def _as_list(value) -> list:
    """A JSON list field as a list: a bare string is one entry, null/NaN/other scalars are no entries."""
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return [value]
    return []


def image_subpath(entry) -> str | None:
    """The part of an ``ImagePath`` entry below ``deid_png/`` (``"../deid_png/A/B.png"`` -> ``"A/B.png"``); None for
    a missing (null/NaN/blank) entry."""
    if not isinstance(entry, str) or not entry.strip() or entry.strip().lower() in ("nan", "none", "null"):
        return None
    p = entry.strip().replace("\\", "/")
    if "deid_png/" in p:
        return p.split("deid_png/", 1)[1]
    while p.startswith(("../", "./")):
        p = p.split("/", 1)[1]
    return p.lstrip("/")


def _find_image_dir(root: Path, meta_dir: Path, image_root: str | os.PathLike | None, probes: list[str]) -> Path:
    """The ``deid_png`` folder (module docstring); `probes` are a few image sub-paths used to choose."""
    if image_root is not None:
        given = Path(image_root)
        if not given.is_dir():
            raise InputError(f"--image-root {given}: no such folder")
        candidates = [given / "deid_png", given] if (given / "deid_png").is_dir() else [given]
    else:
        candidates = [root / "deid_png", meta_dir / "deid_png", meta_dir.parent / "deid_png"]
    existing = [c for c in dict.fromkeys(candidates) if c.is_dir()]
    if not existing:
        parts = sorted(glob.glob(str(root / "deid_png.part*")) + glob.glob(str(root / "deid_png.tar*")))
        if parts:
            raise InputError(f"{root}: the images are still packed ({Path(parts[0]).name} ...); extract them beside "
                             f"metadata/ with: cd {root} && cat deid_png.part* > deid_png.tar && tar -xf deid_png.tar")
        raise InputError(f"no deid_png/ image folder found (looked in {', '.join(str(c) for c in candidates)}); "
                         f"pass --image-root")
    hits = [sum((c / p).is_file() for p in probes) for c in existing]
    return existing[max(range(len(existing)), key=lambda i: (hits[i], -i))]


def plan_rexgradient(root: str | os.PathLike, cfg: PrepConfig, image_root: str | os.PathLike | None = None) -> Plan:
    root = Path(root)
    meta_dir = root / "metadata"
    if not meta_dir.is_dir() and glob.glob(str(root / "*_metadata*.json")):
        meta_dir = root  # --root is the metadata folder itself
    if not meta_dir.is_dir():
        raise FileNotFoundError(f"{meta_dir} not found (the ReXGradient-160K root holds metadata/ and deid_png/)")
    tally = Tally(cfg)
    # study id -> its listings in input order: (output split, official split, record; None = CSV row only)
    listings: dict[str, list[tuple[str, str, object]]] = defaultdict(list)
    files_used = {}
    for official in OFFICIAL_SPLITS:
        path = _metadata_json(meta_dir, official)
        csv_path = meta_dir / f"{official}_metadata.csv"
        if path is None and not csv_path.is_file():
            continue
        split = output_split(official, cfg)
        repeated: list[str] = []
        data = read_json_checked(path, repeated_keys=repeated) if path is not None else {}
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a JSON object keyed by study id, got {type(data).__name__}")
        files_used[official] = str(path) if path else None
        for sid, rec in data.items():
            listings[sid].append((split, official, rec))
        for sid in repeated:  # a key repeated inside the JSON: the first record is kept
            listings[sid].append((split, official, _REPEATED_KEY))
        if csv_path.is_file():
            csv_ids = read_csv_checked(csv_path, ("id",), dtype=str)
            for sid in csv_ids["id"].dropna():
                if sid not in data:
                    listings[sid].append((split, official, None))

    keys: dict[str, list[str]] = defaultdict(list)
    records: dict[str, dict] = {}
    for sid, found in listings.items():
        split = count_once(tally, sid, [s for s, _, _ in found])
        if split is None:
            continue
        _, official, rec = next((f for f in found if f[2] is not None), found[0])  # a JSON record if any
        if rec is None:
            tally.drop(split, "no_image_metadata", f"{meta_dir}/{official}_metadata.csv: study {sid} has no JSON "
                                                   f"record")
            continue
        if not isinstance(rec, dict):
            tally.drop(split, "malformed_record", f"{files_used[official]}: record {sid} is not an object")
            continue
        paths = _as_list(rec.get("ImagePath"))
        if cfg.max_study_images is not None and len(paths) > cfg.max_study_images:
            tally.drop(split, "too_many_images")
            continue
        uid = f"{split}/{sid}"
        records[uid] = {"rec": rec, "official": official}
        keys[split].append(uid)

    probes = [sp for item in list(records.values())[:50] for sp in map(image_subpath, _as_list(item["rec"].get(
        "ImagePath"))) if sp][:50]
    image_dir = _find_image_dir(root, meta_dir, image_root, probes) if records else root / "deid_png"

    def build_jobs(split: str, study_keys: Sequence[str], start: int) -> list[StudyJob]:
        jobs = []
        for i, uid in enumerate(study_keys):
            item = records[uid]
            rec = item["rec"]
            sid = uid.split("/", 1)[1]
            paths = _as_list(rec.get("ImagePath"))
            views = _as_list(rec.get("ImageViewPosition"))
            notes: Counter = Counter()
            if len(views) != len(paths):
                notes["view_list_length_mismatch"] += 1
            cands = []
            for k, p in enumerate(paths):
                view = normalize_view(views[k] if k < len(views) and isinstance(views[k], str) else None)
                if cfg.views == "frontal_lateral" and view_class(view) == OTHER:
                    notes[f"excluded_view:{view}"] += 1
                    continue
                sub = image_subpath(p)
                if sub is None:  # counted here only, not again as image_missing
                    notes["image_path_missing"] += 1
                    continue
                cands.append(ImageCandidate(str(image_dir / sub), f"deid_png/{sub}", view, "current",
                                            Path(sub).stem))
            text = {"findings": clean(rec.get("Findings")), "impression": clean(rec.get("Impression")),
                    "indication": clean(rec.get("Indication")), "comparison": clean(rec.get("Comparison")),
                    "technique": ""}
            jobs.append(StudyJob(split=split, source_split=item["official"], index=start + i, study_id=sid,
                                 patient_id=clean(rec.get("PatientID")), candidates=cands, text=text,
                                 study_date=clean(rec.get("StudyDate")), notes=dict(notes)))
        return jobs

    return Plan(keys=dict(keys), build_jobs=build_jobs, dropped=dict(tally.dropped), notes=dict(tally.notes),
                input_studies=dict(tally.input_studies),
                info={"metadata_files": files_used, "image_dir": str(image_dir)})
