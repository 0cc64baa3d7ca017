"""ReXrank's test sets as released: the test-JSON reader, the two boards' references, rows for generation, and
the prediction files (ReXrank's submission JSON, ``verl_ext.eval.generate``'s JSON lines).

See ``verl_ext.eval.rexrank`` for the protocol; the schema facts are from rajpurkarlab/ReXrank (``README.md``,
``data/*.json``, ``example_files/evaluation_script.md`` and ``merversa_inference.py``).
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BOARDS = ("findings", "findings_impression")
DATASETS = ("mimic_cxr", "iu_xray", "chexpert_plus")
#: Context lines each dataset's training prompts carry (verl_ext.data.prompt); CheXpert Plus follows IU-Xray.
CONTEXT_FIELDS = {"mimic_cxr": ("indication", "technique", "comparison"), "iu_xray": ("indication", "comparison"),
                  "chexpert_plus": ("indication", "comparison")}
FINDINGS_IMPRESSION_INSTRUCTION = (
    "Please provide the findings and the impression of the current study, written as "
    "\"Findings: ... Impression: ...\". If there are prior studies available, please incorporate relevant details "
    "from those as well in your analysis."
)
#: Fields every study of the released test JSONs has (plus key_image_path, context, report, split).
REQUIRED_KEYS = ("image_path", "frontal_lateral", "section_findings", "section_impression")


class RexrankError(ValueError):
    """Input that does not follow ReXrank's format, or a misconfiguration; the message names the file/setting."""


# ------------------------------------------------------------------------------------------------------ test JSONs


@dataclass
class RexrankStudy:
    study_id: str
    image_paths: list[str]
    key_image_path: str | None
    views: list[str | None]
    """One label per image; all None when the file's ``frontal_lateral`` does not list one per image."""
    findings: str | None
    impression: str | None
    context: str | None
    split: str | None = None
    raw: dict = field(default_factory=dict, repr=False)
    views_misaligned: bool = False
    """The released ``frontal_lateral`` has another length than ``image_path`` (46 of IU-Xray's 590 test
    studies): which label belongs to which image is unknown, so every view is taken as unknown."""


def _text(value: Any) -> str | None:
    """A section's text; NaN / None / blank (ReXrank's missing sections) -> None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value)
    return text if text.strip() else None


def read_test_json(path: str | os.PathLike) -> list[RexrankStudy]:
    """The studies of a ReXrank test JSON, in file order; schema errors name the study and the key."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))  # json accepts the files' bare NaN
    except (OSError, json.JSONDecodeError) as err:
        raise RexrankError(f"{path}: cannot read a ReXrank test JSON ({err})") from None
    if not isinstance(data, dict) or not data:
        raise RexrankError(f"{path}: expected a non-empty JSON object {{study_id: study}}")
    studies = []
    for sid, entry in data.items():
        where = f"{path} study {sid!r}"
        if not isinstance(entry, dict):
            raise RexrankError(f"{where}: expected an object, got {type(entry).__name__}")
        missing = [k for k in REQUIRED_KEYS if k not in entry]
        if missing:
            raise RexrankError(f"{where}: missing {missing} (ReXrank's fields: {', '.join(REQUIRED_KEYS)}, "
                               f"key_image_path, context, report, split)")
        images, views = entry["image_path"], entry["frontal_lateral"]
        if not isinstance(images, list) or not images or not all(isinstance(p, str) and p for p in images):
            raise RexrankError(f"{where}: image_path must be a non-empty list of paths")
        if not isinstance(views, list):
            raise RexrankError(f"{where}: frontal_lateral must be a list of view labels")
        misaligned = len(views) != len(images)
        studies.append(RexrankStudy(
            study_id=str(sid), image_paths=list(images), key_image_path=_text(entry.get("key_image_path")),
            views=[None] * len(images) if misaligned else [_text(v) for v in views],
            findings=_text(entry["section_findings"]), impression=_text(entry["section_impression"]),
            context=_text(entry.get("context")), split=_text(entry.get("split")), raw=entry,
            views_misaligned=misaligned))
    return studies


def board_reference(study: RexrankStudy, board: str) -> str | None:
    """The reference of `study` on `board`; None = the study is not on that board."""
    if board == "findings":
        return study.findings.strip() if study.findings else None
    if board == "findings_impression":
        return f"Findings: {study.findings} Impression: {study.impression}"
    raise RexrankError(f"board {board!r}: expected one of {BOARDS}")


def board_study_ids(studies: list[RexrankStudy], board: str) -> list[str]:
    """The ids of the studies on `board` (the set every published row of that board was scored on)."""
    return [s.study_id for s in studies if board_reference(s, board) is not None]


_CONTEXT_LABELS = re.compile(r"(Age|Gender|Indication|Comparison)\s*:", re.IGNORECASE)


def parse_context(text: str | None) -> dict[str, str]:
    """``"Age:50-60.Gender:M.Indication: ... Comparison: ..."`` -> ``{"age", "gender", "indication", "comparison"}``
    (values stripped of a trailing period-free remainder; ``nan`` = absent)."""
    if not text:
        return {}
    text = re.sub(r"</?context>", "", text)
    marks = list(_CONTEXT_LABELS.finditer(text))
    out = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        value = text[m.end():end].strip()
        if m.group(1).lower() in ("age", "gender"):
            value = value.rstrip(".")
        if value and value.lower() != "nan":
            out[m.group(1).lower()] = value
    return out


def image_file(root: str | os.PathLike, rel: str, image_map: dict[str, str] | None = None) -> Path:
    """``img_root_dir + image_path`` (ReXrank's join): a leading ``/`` is part of the relative path. With
    `image_map` (ReXrank path -> path under `root`, e.g. IU-Xray's ``CXR3030_IM-1405/0.png`` -> the Open-i file
    name), the mapped path is used; an unmapped path is treated as missing."""
    if image_map is not None:
        mapped = image_map.get(rel)
        return Path(root) / (mapped if mapped is not None else f"<unmapped:{rel}>")
    return Path(root) / rel.lstrip("/")


def read_image_map(path: str | os.PathLike) -> dict[str, str]:
    """A two-column CSV ``rexrank_path,local_path`` (header required) for image layouts that differ from ReXrank's."""
    import csv

    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"rexrank_path", "local_path"} <= set(reader.fieldnames):
            raise RexrankError(f"--image-map {path}: expected the columns rexrank_path,local_path")
        return {row["rexrank_path"]: row["local_path"].lstrip("/") for row in reader}


@dataclass
class Prepared:
    rows: list[dict]
    excluded: dict[str, list[str]]
    """reason -> study ids left out (``no_findings`` on the findings board, ``missing_image`` when allowed)."""
    unknown_views: list[str] = field(default_factory=list)
    """Studies on the board whose views could not be aligned with their images (named "the current image")."""


def prepare_rows(studies: list[RexrankStudy], *, dataset: str, image_root: str | os.PathLike, board: str,
                 use_context: bool = True, key_image_only: bool = False, min_pixels: int = 262_144,
                 max_pixels: int = 401_408, context_fields: tuple[str, ...] | None = None,
                 instruction: str | None = None, allow_missing_images: bool = False,
                 image_map: dict[str, str] | None = None) -> Prepared:
    """Data-prep rows (``verl_ext.data.schema``, path images) of the studies on `board`.

    Defaults: all images of a study in the JSON's order, the paper's pixel budget (App. E), the dataset's context
    lines. A missing image file is an error naming the first few (a wrong ``--image-root`` is the usual cause)
    unless `allow_missing_images`, which leaves those studies out and reports them.
    """
    from verl_ext.data.prompt import INSTRUCTION_BODY, ImageSlot, build_prompt
    from verl_ext.data.schema import make_row
    from verl_ext.data.views import normalize_view

    if board not in BOARDS:
        raise RexrankError(f"--board {board!r}: expected one of {BOARDS}")
    root = Path(image_root)
    if not root.is_dir():
        raise RexrankError(f"--image-root {image_root}: no such directory")
    fields_ = (CONTEXT_FIELDS.get(dataset, ("indication", "comparison")) if context_fields is None
               else tuple(context_fields)) if use_context else ()
    if instruction is None and board == "findings_impression":
        instruction = FINDINGS_IMPRESSION_INSTRUCTION
    rows, excluded, unknown = [], {"no_findings": [], "missing_image": []}, []
    missing_files: list[str] = []
    for index, st in enumerate(studies):
        reference = board_reference(st, board)
        if reference is None:
            excluded["no_findings"].append(st.study_id)
            continue
        if key_image_only:
            key = st.key_image_path or st.image_paths[0]
            # README: key_image_path is "the frontal image from the study"
            label = st.views[st.image_paths.index(key)] if key in st.image_paths else None
            pairs = [(key, label or "FRONTAL")]
        else:
            pairs = list(zip(st.image_paths, st.views))
        files = [image_file(root, p, image_map) for p, _ in pairs]
        absent = [str(f) for f in files if not f.is_file()]
        if absent:
            missing_files.extend(absent)
            excluded["missing_image"].append(st.study_id)
            continue
        views = [normalize_view(v) for _, v in pairs]
        context = parse_context(st.context)
        prompt = build_prompt([ImageSlot("current", v) for v in views], context, fields_)
        if instruction:
            prompt = prompt.replace(INSTRUCTION_BODY, instruction)
        extra = {"split": st.split or "test", "index": index, "dataset": dataset, "study_id": st.study_id,
                 "n_images": len(files), "image_roles": ["current"] * len(files), "view_positions": views,
                 "image_paths": [str(f) for f in files], "source_split": st.split,
                 "indication": context.get("indication"), "comparison": context.get("comparison"),
                 "findings": st.findings,
                 "impression": st.impression}
        images = [{"image": str(f.resolve()), "min_pixels": min_pixels, "max_pixels": max_pixels} for f in files]
        if st.views_misaligned and not key_image_only:
            unknown.append(st.study_id)
        rows.append(make_row(data_source=dataset, prompt_text=prompt, findings=reference, images=images,
                             extra_info=extra))
    if missing_files and not allow_missing_images:
        raise RexrankError(f"{len(excluded['missing_image'])} studies have image files missing under "
                           f"--image-root {image_root} (e.g. {missing_files[:3]}); fix the root or pass "
                           f"--allow-missing-images to leave them out (the board is then not comparable)")
    return Prepared(rows=rows, excluded={k: v for k, v in excluded.items() if v}, unknown_views=unknown)


def write_parquet(rows: list[dict], path: str | os.PathLike) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from verl_ext.data.schema import row_schema

    if not rows:
        raise RexrankError("no study is on this board; nothing to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=row_schema("path")), path)
    return path


# ----------------------------------------------------------------------------------------------------- predictions


def read_generations(path: str | os.PathLike, board: str) -> list[dict]:
    """``{"id", "generated", "reference"}`` rows from ``verl_ext.eval.generate``'s JSON lines, or from a ReXrank
    prediction JSON (``{study_id: {..., "model_prediction"}}``; references then come from its sections)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        rows = []
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                r = json.loads(line)
                if "id" not in r or "generated" not in r or r.get("reference") is None:
                    raise RexrankError(f"{path}: line {n} lacks id / generated / reference")
                rows.append({"id": str(r["id"]), "generated": r["generated"] or "", "reference": r["reference"]})
        return rows
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise RexrankError(f"{path}: expected .jsonl generations or a ReXrank prediction JSON object")
    rows = []
    for st, (sid, entry) in zip(read_test_json(path), data.items()):
        if "model_prediction" not in entry:
            raise RexrankError(f"{path} study {sid!r}: no model_prediction")
        ref = board_reference(st, board)
        if ref is not None:
            rows.append({"id": st.study_id, "generated": _text(entry["model_prediction"]) or "", "reference": ref})
    return rows


def write_prediction_json(studies: list[RexrankStudy], generations: list[dict], path: str | os.PathLike) -> Path:
    """ReXrank's submission format: the test JSON's entries plus ``model_prediction`` (studies generated only)."""
    by_id = {g["id"]: g["generated"] for g in generations}
    out = {st.study_id: dict(st.raw, model_prediction=by_id[st.study_id]) for st in studies if st.study_id in by_id}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
