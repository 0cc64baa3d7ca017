"""CheXpert Plus -> verl parquet (the dataset DEER and OraPO train and report on).

Inputs under ``--root`` (the Stanford AIMI release):

* ``df_chexpert_plus_240401.csv`` (the newest ``df_chexpert_plus_*.csv`` by name): **one row per image** with
  ``path_to_image`` (``train/patient00001/study1/view1_frontal.jpg``), ``path_to_dcm``, ``frontal_lateral``
  (Frontal / Lateral), ``ap_pa`` (AP / PA / LL ...), ``deid_patient_id``, ``patient_report_date_order``, ``report``
  and its sections ``section_narrative, section_clinical_history, section_history, section_comparison,
  section_technique, section_procedure_comments, section_findings, section_impression, section_end_of_impression,
  section_summary, section_accession_number``, demographics, and ``split`` (``train`` / ``valid``; the release has no
  test split). A leading unnamed index column is ignored;
* images from ``PNG.zip``: ``PNG/<path_to_image with .png>`` (public loaders use ``<root>/PNG/`` or
  ``<root>/PNG/PNG/``; MambaXray-VL's README draws the folder as ``<root>/PNGs``); the CSV names ``.jpg`` files
  (CheXpert's naming), so each image is looked up as ``.png``, as written, then ``.jpg``. ``--image-root`` overrides
  the folder.

A study is ``patientNNNNN/studyM`` (the two folders of ``path_to_image``); its report is the one its image rows
share (rows that disagree are counted as ``report_rows_disagree`` and the first row wins). Each study is counted
once: a row repeating an image path is noted as ``duplicate_record`` and read once; a study whose rows name two
splits is dropped as ``inconsistent_split``; without ``--split-file``, a row whose path names no study counts as
one ``malformed_record`` study of its split. (Robustness rules: the release is not documented to repeat rows.)

Splits: by default the CSV's ``split`` column (``valid`` -> val). DEER follows MambaXray-VL's split
(CXPMRG-Bench, Wang et al., CVPR 2025: 40,463 / 5,780 / 11,562 train / val / test, findings as ground truth), which
the authors' code reads from an R2Gen-style annotation file (``configs/chexpert_annotation.json`` in their launch
script; ``{"train": [...], "val": [...], "test": [...]}`` with items ``{"id", "report", "image_path": [...]}``,
paths relative to ``PNG/``, read by their ``dataset/data_helper.py``). That file is not in their public repository
and could not be obtained here, so it cannot be built in: give your copy with ``--split-file``: then exactly the
listed studies are the input, each with the images the file lists (items naming the same study merge; a study in two
splits is dropped as ``inconsistent_split``; a listed study absent from the CSV is dropped as
``no_report_metadata``). A CSV split file with columns ``path_to_image`` (or ``study``) and ``split`` works too.

Target (``--target``): ``findings`` (default; MambaXray-VL/CXPMRG-Bench use the Findings section, and DEER follows
that protocol) or ``findings_impression`` (findings, then impression, joined by a space; a study is kept when either
exists). Context lines: INDICATION = ``section_clinical_history`` (else ``section_history``), TECHNIQUE =
``section_technique``, COMPARISON = ``section_comparison``. Views: ``ap_pa`` when it is PA/AP/LL, else
``frontal_lateral`` (FRONTAL / LATERAL). Priors: none by default (neither DEER nor OraPO links them); ``--prior``
adds the images of the patient's previous study, ordered by ``patient_report_date_order`` (the release's only time
order), among the input studies of the same split (`verl_ext.data.priors.link_priors`; a study without that value is
counted as ``missing_study_datetime`` and gets no prior); ``--max-images`` (default 2) must leave room for them.
"""
from __future__ import annotations

import glob
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from verl_ext.data.common import InputError, Tally, clean, output_split, read_csv_checked, read_json_checked
from verl_ext.data.pipeline import ImageCandidate, Plan, PrepConfig, StudyJob
from verl_ext.data.priors import StudyTime, link_priors
from verl_ext.data.views import OTHER, normalize_view, view_class

DATA_SOURCE = "chexpert_plus"
CONTEXT_FIELDS = ("indication", "technique", "comparison")
TEXT_COLUMNS = ("section_findings", "section_impression", "section_clinical_history", "section_history",
                "section_technique", "section_comparison")


def study_key(image_path: str) -> str | None:
    """``patientNNNNN/studyM`` of an image path (``train/patient00001/study1/view1_frontal.jpg``); None if the
    path does not have that shape."""
    parts = [p for p in str(image_path).replace("\\", "/").split("/") if p]
    for i in range(len(parts) - 2):
        if parts[i].startswith("patient") and parts[i + 1].startswith("study"):
            return f"{parts[i]}/{parts[i + 1]}"
    return None


def image_view(frontal_lateral, ap_pa) -> str:
    """Canonical view of one image from the CSV's two view columns."""
    fine = normalize_view(ap_pa)
    coarse = normalize_view(frontal_lateral)
    if view_class(fine) != OTHER and (coarse == "UNKNOWN" or view_class(fine) == view_class(coarse)):
        return fine
    return coarse


def _find_csv(root: Path) -> Path:
    hits = sorted(glob.glob(str(root / "df_chexpert_plus_*.csv")))
    if not hits:
        raise FileNotFoundError(f"df_chexpert_plus_*.csv not found in {root} (the CheXpert Plus root holds it)")
    return Path(hits[-1])


def _variants(rel: str) -> list[str]:
    stem, ext = os.path.splitext(rel)
    return list(dict.fromkeys([stem + ".png", rel, stem + ".jpg"]))


def _find_image_root(root: Path, image_root: str | os.PathLike | None, probes: list[str]) -> Path:
    if image_root is not None:
        if not Path(image_root).is_dir():
            raise InputError(f"--image-root {image_root}: no such folder")
        return Path(image_root)
    candidates = [c for c in (root / "PNG" / "PNG", root / "PNG", root / "PNGs", root) if c.is_dir()]
    hits = [sum(any((c / v).is_file() for v in _variants(p)) for p in probes) for c in candidates]
    if not any(hits) and glob.glob(str(root / "PNG*.zip")):
        raise InputError(f"{root}: the images are still packed in PNG.zip; extract it there (unzip PNG.zip) or pass "
                         f"--image-root")
    return candidates[max(range(len(candidates)), key=lambda i: (hits[i], -i))]


def read_split_file(path: str | os.PathLike) -> list[tuple[str, str, list[str]]]:
    """(official split, study key, listed image paths) per entry of a split file (module docstring)."""
    path = Path(path)
    out: list[tuple[str, str, list[str]]] = []
    if path.suffix.lower() == ".json":
        data = read_json_checked(path)
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected an R2Gen-style object {{train: [...], val: [...], test: [...]}}")
        for official, items in data.items():
            if not isinstance(items, list):
                raise InputError(f"{path}: split {official!r} holds {type(items).__name__}, expected a list")
            for item in items:
                paths = item.get("image_path") if isinstance(item, dict) else None
                paths = [paths] if isinstance(paths, str) else [p for p in (paths or []) if isinstance(p, str)]
                key = next((k for k in map(study_key, paths) if k), None)
                if key is None and isinstance(item, dict):
                    key = study_key(f"{item.get('id', '')}/x")
                if key is None:
                    raise InputError(f"{path}: item {str(item)[:80]} names no patientN/studyM image path")
                split = item.get("split") if isinstance(item, dict) and not official.strip() else official
                out.append((str(split), key, paths))
        return out
    df = read_csv_checked(path, ("split",), dtype=str)
    column = "path_to_image" if "path_to_image" in df.columns else "study" if "study" in df.columns else None
    if column is None:
        raise InputError(f"{path}: a split CSV needs a path_to_image or study column and a split column")
    for value, split in zip(df[column], df["split"]):
        key = study_key(value) if column == "path_to_image" else study_key(f"{value}/x")
        if key is None:
            raise InputError(f"{path}: {value!r} names no patientN/studyM")
        out.append((str(split), key, [value] if column == "path_to_image" else []))
    return out


def plan_chexpert_plus(root: str | os.PathLike, cfg: PrepConfig, image_root: str | os.PathLike | None = None,
                       split_file: str | os.PathLike | None = None, target: str = "findings") -> Plan:
    if target not in ("findings", "findings_impression"):
        raise ValueError(f"target {target!r}: findings or findings_impression")
    root = Path(root)
    csv_path = _find_csv(root)
    required = ["path_to_image", "section_findings"] + (["section_impression"] if target != "findings" else []) \
        + ([] if split_file else ["split"])
    df = read_csv_checked(csv_path, required, dtype=str, keep_default_na=True)
    if cfg.include_prior and "patient_report_date_order" not in df.columns:
        raise InputError(f"{csv_path}: --prior orders a patient's studies by patient_report_date_order, which this "
                         "CSV lacks")
    for col in ("frontal_lateral", "ap_pa", "deid_patient_id", "split", "patient_report_date_order", *TEXT_COLUMNS):
        if col not in df.columns:
            df[col] = None

    tally = Tally(cfg)
    rows_of: dict[str, list[dict]] = defaultdict(list)
    bad_rows: list[dict] = []
    seen_paths: set[str] = set()
    repeated: Counter = Counter()  # study -> rows repeating an image path already read
    for row in df[["path_to_image", "frontal_lateral", "ap_pa", "deid_patient_id", "split",
                   "patient_report_date_order", *TEXT_COLUMNS]].to_dict("records"):
        key = study_key(row["path_to_image"]) if isinstance(row["path_to_image"], str) else None
        if key is None:
            bad_rows.append(row)
            continue
        if row["path_to_image"] in seen_paths:
            repeated[key] += 1
            continue
        seen_paths.add(row["path_to_image"])
        rows_of[key].append(row)

    # Selected studies: (output split, source split, listed image paths or None = all of the study's rows).
    selected: dict[str, dict] = {}
    if split_file:
        conflicts = set()
        for official, key, paths in read_split_file(split_file):
            split = output_split(official, cfg) or "unknown"
            entry = selected.setdefault(key, {"split": split, "source": official, "paths": []})
            if entry["split"] != split:
                conflicts.add(key)
            entry["paths"] += [p for p in paths if p not in entry["paths"]]
        for key in conflicts:
            selected[key]["split"] = "<inconsistent>"
    else:
        for key, rows in rows_of.items():
            official = rows[0]["split"]
            splits = {output_split(r["split"], cfg) or "unknown" for r in rows}
            selected[key] = {"split": splits.pop() if len(splits) == 1 else "<inconsistent>",
                             "source": clean(official), "paths": []}
        for row in bad_rows:  # an image row that names no study: one input study it cannot be part of
            split = output_split(row["split"], cfg) or "unknown"
            tally.study(split)
            tally.drop(split, "malformed_record", f"{csv_path}: path_to_image {row['path_to_image']!r} names no "
                                                  f"patientN/studyM")

    keys: dict[str, list[str]] = defaultdict(list)
    studies: dict[str, dict] = {}
    for key, entry in selected.items():
        split = entry["split"]
        if split == "<inconsistent>":
            tally.study("unknown")
            tally.drop("unknown", "inconsistent_split", f"study {key} is listed in two splits")
            continue
        tally.study(split)
        if repeated[key]:
            tally.note(split, "duplicate_record", f"study {key}: an image row is repeated", n=repeated[key])
        if split == "unknown":
            tally.drop(split, "unknown_split", f"study {key}: split {entry['source']!r}")
            continue
        rows = rows_of.get(key)
        if not rows:
            tally.drop(split, "no_report_metadata", f"study {key} of the split file is not in {csv_path.name}")
            continue
        studies[key] = {"rows": rows, **entry}
        keys[split].append(key)

    def patient_of(key: str) -> str:
        return clean(studies[key]["rows"][0]["deid_patient_id"]) or key.split("/")[0]

    prior_of: dict[str, str] = {}
    if cfg.include_prior:
        order = []
        for key, s in studies.items():
            rank = pd.to_numeric(s["rows"][0]["patient_report_date_order"], errors="coerce")
            order.append(StudyTime(key, patient_of(key), s["split"], float(rank), 0.0))
        prior_of, events = link_priors(order)
        for key in events["unordered"]:
            tally.note(studies[key]["split"], "missing_study_datetime", f"study {key}: no patient_report_date_order")
        for key in events["cross_split"]:
            tally.note(studies[key]["split"], "prior_in_other_split_ignored")

    probes = [r["path_to_image"] for s in list(studies.values())[:20] for r in s["rows"][:1]]
    images_dir = _find_image_root(root, image_root, probes) if studies else root

    def text_of(rows: list[dict], notes: Counter) -> dict[str, str]:
        first = rows[0]
        if any(clean(r["section_findings"]) != clean(first["section_findings"]) or
               clean(r["section_impression"]) != clean(first["section_impression"]) for r in rows[1:]):
            notes["report_rows_disagree"] += 1
        findings, impression = clean(first["section_findings"]), clean(first["section_impression"])
        goal = findings if target == "findings" else " ".join(t for t in (findings, impression) if t)
        return {"findings": goal, "impression": impression,
                "indication": clean(first["section_clinical_history"]) or clean(first["section_history"]),
                "technique": clean(first["section_technique"]), "comparison": clean(first["section_comparison"])}

    def resolve(rel: str) -> str:
        for v in _variants(rel):
            if (images_dir / v).is_file():
                return v
        return _variants(rel)[0]

    def candidates_of(key: str, role: str, notes: Counter) -> list[ImageCandidate]:
        s = studies[key]
        by_path = {os.path.splitext(r["path_to_image"])[0]: r for r in s["rows"]}
        wanted = s["paths"] or [r["path_to_image"] for r in s["rows"]]
        cands = []
        for rel in wanted:
            row = by_path.get(os.path.splitext(rel)[0])
            if row is None:
                notes["split_file_image_not_in_csv"] += 1
            view = image_view(row["frontal_lateral"], row["ap_pa"]) if row else "UNKNOWN"
            if cfg.views == "frontal_lateral" and view_class(view) == OTHER:
                notes[f"excluded_view:{view}"] += 1
                continue
            found = resolve(rel)
            cands.append(ImageCandidate(str(images_dir / found), found, view, role, os.path.splitext(found)[0]))
        return cands

    def build_jobs(split: str, study_keys: Sequence[str], start: int) -> list[StudyJob]:
        jobs = []
        for i, key in enumerate(study_keys):
            s = studies[key]
            notes: Counter = Counter()
            prior = prior_of.get(key)
            cands = candidates_of(key, "current", notes) + (candidates_of(prior, "prior", Counter()) if prior else [])
            jobs.append(StudyJob(split=split, source_split=s["source"], index=start + i, study_id=key,
                                 patient_id=patient_of(key), candidates=cands, prior_study_id=prior,
                                 text=text_of(s["rows"], notes), notes=dict(notes)))
        return jobs

    info = {"csv": str(csv_path), "image_root": str(images_dir), "split_file": str(split_file) if split_file else None,
            "target": target, "studies_in_csv": len(rows_of), "csv_rows_without_study_path": len(bad_rows),
            "csv_studies_not_selected": len(set(rows_of) - set(selected)), "studies_with_prior_link": len(prior_of)}
    return Plan(keys=dict(keys), build_jobs=build_jobs, dropped=dict(tally.dropped), notes=dict(tally.notes),
                input_studies=dict(tally.input_studies), info=info)
