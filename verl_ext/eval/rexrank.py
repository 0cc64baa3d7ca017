"""ReXrank's evaluation protocol: its test JSONs -> generations -> its metrics -> tables and a leaderboard row.

    python -m verl_ext.eval.rexrank prepare --test-json ReXRank_MIMICCXR_test.json --dataset mimic_cxr \\
        --image-root /data/mimic-cxr-jpg/files --board findings --out rexrank/inputs/mimic_findings.parquet
    python -m verl_ext.eval.rexrank run --model models/editgrpo --name EditGRPO --test-json ... --dataset mimic_cxr \\
        --image-root ... --board findings --board findings_impression --out rexrank/ [scorer model paths]
    python -m verl_ext.eval.rexrank score --run EditGRPO=gen.jsonl --run SFT=gen_sft.jsonl --dataset mimic_cxr \\
        --board findings --out rexrank/ [scorer model paths]

**Test sets as released** (rajpurkarlab/ReXrank ``data/``): a JSON object ``{study_id: study}`` whose study has
``image_path`` (list, relative to the dataset's image root: MIMIC-CXR ``/p10/p10046166/s50051329/...jpg`` under
``files``, IU-Xray ``CXR3030_IM-1405/0.png`` under ``images``, CheXpert Plus ``valid/patient64620/...png`` under
``PNG``), ``key_image_path`` (the frontal image for single-image models), ``frontal_lateral`` (one view label per
image, NaN allowed), ``section_findings`` / ``section_impression`` (NaN when absent), ``context`` ("Age:50-60.Gender:
M.Indication: ... Comparison: ..."), ``report`` and ``split``. ReXrank's inference scripts join root and path by
string concatenation (``img_root_dir + image_path``), so a leading ``/`` is relative too.

**Boards.** ``findings``: the reference is ``section_findings``; studies without findings are not on this board
(MIMIC-CXR's test JSON: all 2,347 have findings). ``findings_impression``: the reference is ReXrank's
``f"Findings: {findings} Impression: {impression}"`` (``example_files/evaluation_script.md``; a missing section is
written ``None`` there, as here), and the prompt asks for both sections (`FINDINGS_IMPRESSION_INSTRUCTION`).

**Inputs to the model** (the submission guideline: all images of a study for multi-image models, the frontal one
otherwise; the context is optional): ``prepare`` writes a data-prep parquet (``verl_ext.data.schema``, path
images) whose prompt is the training prompt (``verl_ext.data.prompt.build_prompt``: one ``<image>`` per image, the
views named from ``frontal_lateral``, and INDICATION / COMPARISON lines parsed from ``context``, or none with
``--no-context``), so ``verl_ext.eval.generate`` runs on it unchanged.

**Scores** (``verl_ext.metrics.rexrank`` says how each is defined): BLEU-2, BERTScore (bert-score,
distilroberta-base from a local directory, baseline-rescaled), SembScore (CheXbert [CLS] cosine), RadGraph (mean of
entity and relation F1; RadGraph v1 ``radgraph`` model by default, the DyGIE++ checkpoint CXR-Report-Metric uses),
1/RadCliQ-v1, RaTEScore, GREEN (needs vLLM + CUDA; skipped with a note otherwise). Each study is one bootstrap
unit: ``tables.md``, ``summary.csv``, ``differences.csv`` and ``metrics.png`` come out as in
``verl_ext.eval.compare`` (one table per test set and board), ``per_study/<set>/<run>.jsonl`` holds every study's
scores, and ``leaderboard_<set>.csv`` puts each run among the published rows in ReXrank's results-CSV format,
ranked by 1/RadCliQ-v1 as rexrank.ai ranks (``--leaderboard``: a results CSV, or ``auto`` for the snapshot shipped in
``verl_ext/eval/resources/rexrank/``).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from verl_ext.metrics import rexrank as rx

logger = logging.getLogger(__name__)

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
#: ReXrank's published results CSVs shipped as a snapshot (gh-pages ``results/``, Sep 2025).
RESOURCES = Path(__file__).with_name("resources") / "rexrank"
SNAPSHOTS = {
    ("mimic_cxr", "findings"): "findings_result_mimiccxr.csv",
    ("mimic_cxr", "findings_impression"): "result_mimiccxr.csv",
    ("iu_xray", "findings"): "findings_result_iu_xray.csv",
    ("iu_xray", "findings_impression"): "result_iu_xray.csv",
    ("chexpert_plus", "findings"): "findings_result_chexpertplus.csv",
    ("chexpert_plus", "findings_impression"): "result_chexpertplus.csv",
}
REQUIRED_KEYS = ("image_path", "frontal_lateral", "section_findings", "section_impression")
#: Per-study metrics whose board value is their mean; 1/RadCliQ-v1 is derived from the mean RadCliQ-v1.
MEAN_COLUMNS = (rx.BLEU, rx.BERTSCORE, rx.SEMBSCORE, rx.RADGRAPH, rx.RATESCORE, rx.GREEN)
METRICS = ("bleu", "bertscore", "sembscore", "radgraph", "ratescore", "green")


class RexrankError(ValueError):
    """Input that does not follow ReXrank's format, or a misconfiguration; the message names the file/setting."""


# ------------------------------------------------------------------------------------------------------ test JSONs


@dataclass
class RexrankStudy:
    study_id: str
    image_paths: list[str]
    key_image_path: str | None
    views: list[str | None]
    findings: str | None
    impression: str | None
    context: str | None
    split: str | None = None
    raw: dict = field(default_factory=dict, repr=False)


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
        if not isinstance(views, list) or len(views) != len(images):
            raise RexrankError(f"{where}: frontal_lateral must list one view per image ({len(images)})")
        studies.append(RexrankStudy(
            study_id=str(sid), image_paths=list(images), key_image_path=_text(entry.get("key_image_path")),
            views=[_text(v) for v in views], findings=_text(entry["section_findings"]),
            impression=_text(entry["section_impression"]), context=_text(entry.get("context")),
            split=_text(entry.get("split")), raw=entry))
    return studies


def board_reference(study: RexrankStudy, board: str) -> str | None:
    """The reference of `study` on `board`; None = the study is not on that board."""
    if board == "findings":
        return study.findings.strip() if study.findings else None
    if board == "findings_impression":
        return f"Findings: {study.findings} Impression: {study.impression}"
    raise RexrankError(f"board {board!r}: expected one of {BOARDS}")


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


def image_file(root: str | os.PathLike, rel: str) -> Path:
    """``img_root_dir + image_path`` (ReXrank's join): a leading ``/`` is part of the relative path."""
    return Path(root) / rel.lstrip("/")


@dataclass
class Prepared:
    rows: list[dict]
    excluded: dict[str, list[str]]
    """reason -> study ids left out (``no_findings`` on the findings board, ``missing_image`` when allowed)."""


def prepare_rows(studies: list[RexrankStudy], *, dataset: str, image_root: str | os.PathLike, board: str,
                 use_context: bool = True, key_image_only: bool = False, min_pixels: int = 262_144,
                 max_pixels: int = 401_408, context_fields: tuple[str, ...] | None = None,
                 instruction: str | None = None, allow_missing_images: bool = False) -> Prepared:
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
    rows, excluded = [], {"no_findings": [], "missing_image": []}
    missing_files: list[str] = []
    for index, st in enumerate(studies):
        reference = board_reference(st, board)
        if reference is None:
            excluded["no_findings"].append(st.study_id)
            continue
        if key_image_only:
            key = st.key_image_path or st.image_paths[0]
            pairs = [(key, st.views[st.image_paths.index(key)] if key in st.image_paths else "FRONTAL")]
        else:
            pairs = list(zip(st.image_paths, st.views))
        files = [image_file(root, p) for p, _ in pairs]
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
        rows.append(make_row(data_source=dataset, prompt_text=prompt, findings=reference, images=images,
                             extra_info=extra))
    if missing_files and not allow_missing_images:
        raise RexrankError(f"{len(excluded['missing_image'])} studies have image files missing under "
                           f"--image-root {image_root} (e.g. {missing_files[:3]}); fix the root or pass "
                           f"--allow-missing-images to leave them out (the board is then not comparable)")
    return Prepared(rows=rows, excluded={k: v for k, v in excluded.items() if v})


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


# --------------------------------------------------------------------------------------------------------- scoring


@dataclass
class ScoreConfig:
    """Model locations (local paths only) and what to compute."""

    chexbert_checkpoint: str | None = None
    chexbert_bert: str | None = None
    radgraph_cache: str | None = None
    radgraph_model_type: str = "radgraph"
    """v1 (labels OBS-DP/OBS-DA/OBS-U/ANAT-DP): the PhysioNet RadGraph checkpoint CXR-Report-Metric runs."""
    rate_ner: str | None = None
    biolord: str | None = None
    bertscore_model: str | None = None
    """A local copy of distilroberta-base."""
    green_model: str | None = None
    device: str = "auto"
    skip: tuple[str, ...] = ()
    bertscore_batch_size: int = 256
    green_max_length: int = 2048

    def check(self) -> None:
        """Fail before any model loads when a needed path is not set."""
        unknown = set(self.skip) - set(METRICS)
        if unknown:
            raise RexrankError(f"--skip: unknown metrics {sorted(unknown)}; choose from {METRICS}")
        need = {"bertscore": [("bertscore_model", self.bertscore_model)],
                "sembscore": [("chexbert_checkpoint", self.chexbert_checkpoint), ("chexbert_bert", self.chexbert_bert)],
                "radgraph": [("radgraph_cache", self.radgraph_cache)],
                "ratescore": [("rate_ner", self.rate_ner), ("biolord", self.biolord)]}
        for metric, keys in need.items():
            if metric in self.skip:
                continue
            for key, value in keys:
                if not value:
                    raise RexrankError(f"{metric} needs --{key.replace('_', '-')} (a local path), or --skip {metric}")
                if not Path(value).exists():
                    raise RexrankError(f"--{key.replace('_', '-')} {value}: does not exist")


class RexrankScorer:
    """Scores rows with ReXrank's metrics; every model is built on first use and reused across calls."""

    def __init__(self, config: ScoreConfig, green_scorer: Any = None):
        config.check()
        self.config = config
        self._clinical = None
        self._bert = None
        self._encoder = None
        self._green = green_scorer
        self.notes: list[str] = []

    @property
    def clinical(self):
        if self._clinical is None:
            from verl_ext.clinical.scorer import ClinicalScorer, ClinicalScorerConfig

            c = self.config
            models = {"rate_ner": c.rate_ner, "biolord": c.biolord, "chexbert_checkpoint": c.chexbert_checkpoint,
                      "chexbert_bert": c.chexbert_bert, "radgraph_cache": c.radgraph_cache,
                      "radgraph_model_type": c.radgraph_model_type}
            self._clinical = ClinicalScorer(ClinicalScorerConfig.from_dict({"models": models, "device": c.device}))
        return self._clinical

    def score(self, rows: list[dict]) -> list[dict]:
        """Per-study records: the board's columns, ``RadCliQ-v1``, RadGraph entity/relation F1 and statuses."""
        from tqdm.auto import tqdm

        c = self.config
        empty_refs = [r["id"] for r in rows if not str(r["reference"]).strip()]
        if empty_refs:
            raise RexrankError(f"{len(empty_refs)} studies have an empty reference (e.g. {empty_refs[:3]})")
        records = [{"id": r["id"], "generated": str(r["generated"]), "reference": str(r["reference"])} for r in rows]
        gens = [r["generated"] for r in records]
        refs = [r["reference"] for r in records]
        steps = [m for m in METRICS if m not in c.skip]
        with tqdm(total=len(steps), desc="rexrank metrics", unit="metric") as bar:
            if "bleu" in steps:
                for r in records:
                    r[rx.BLEU] = rx.bleu2(r["generated"], r["reference"])
                bar.update()
            if "bertscore" in steps:
                if self._bert is None:
                    from verl_ext.clinical.bertscore import BertScorer

                    self._bert = BertScorer(c.bertscore_model, device=c.device, batch_size=c.bertscore_batch_size)
                for r, f1 in zip(records, self._bert.score(gens, refs)):
                    r[rx.BERTSCORE] = float(f1)
                bar.update()
            if "sembscore" in steps:
                if self._encoder is None:
                    from verl_ext.clinical.chexbert_embed import CheXbertEncoder

                    self._encoder = CheXbertEncoder(c.chexbert_checkpoint, c.chexbert_bert, device=c.device)
                texts = list(dict.fromkeys(gens + refs))
                vectors = dict(zip(texts, self._encoder.embeddings(texts)))
                for r in records:
                    r[rx.SEMBSCORE] = float(rx.cosine(vectors[r["generated"]], vectors[r["reference"]])[0])
                bar.update()
            if "radgraph" in steps:
                texts = list(dict.fromkeys([t for t in gens if t.strip()] + refs))
                anns = dict(zip(texts, self.clinical.radgraph_annotations(texts)))
                empty = {"entities": {}}
                for r in records:
                    hyp = anns[r["generated"]] if r["generated"].strip() else empty
                    ent, rel, combined = rx.radgraph_scores(hyp, anns[r["reference"]])
                    r["radgraph_entity_f1"], r["radgraph_relation_f1"], r[rx.RADGRAPH] = ent, rel, combined
                bar.update()
            if "ratescore" in steps:
                self._ratescore(records)
                bar.update()
            if "green" in steps:
                self._run_green(records)
                bar.update()
        if records and all(k in records[0] for k in rx.RADCLIQ_V1_FEATURES):
            values = rx.radcliq_v1(*[[r[k] for r in records] for k in rx.RADCLIQ_V1_FEATURES])
            for r, v in zip(records, values):
                r[rx.RADCLIQ_V1] = float(v)
        elif records:
            self.notes.append("1/RadCliQ-v1 not computed: it needs BLEU, BertScore, SembScore and RadGraph")
        return records

    def _ratescore(self, records: list[dict]) -> None:
        texts = list(dict.fromkeys([r["generated"] for r in records if r["generated"].strip()]
                                   + [r["reference"] for r in records]))
        analyses, _ = self.clinical.rate_analyses(texts)
        an = dict(zip(texts, analyses))
        fallback = 0
        for r in records:
            gen = an.get(r["generated"]) if r["generated"].strip() else None
            ref = an[r["reference"]]
            value = None if gen is None else self.clinical.rate.ratescore(gen, ref)
            if value is None:  # a side without entities (or an empty report): the package's 0.5
                value, status = rx.RATESCORE_NO_ENTITY, "no_entities"
                fallback += 1
            else:
                status = "ok"
            r[rx.RATESCORE], r["ratescore_status"] = float(value), status
        if fallback:
            self.notes.append(f"RaTEScore: {fallback} studies had a report without RaTE entities and score "
                              f"{rx.RATESCORE_NO_ENTITY}, as the RaTEScore package scores them")

    def _run_green(self, records: list[dict]) -> None:
        from verl_ext.clinical.green import GreenScorer

        if self._green is None:
            ok, why = GreenScorer.availability(self.config.green_model)
            if not ok:
                self.notes.append(f"GREEN skipped: {why}")
                return
            self._green = GreenScorer(self.config.green_model, max_length=self.config.green_max_length)
        results = self._green.score([r["reference"] for r in records], [r["generated"] for r in records])
        bad = 0
        for r, g in zip(records, results):
            r[rx.GREEN] = g.score if g.parsed else None
            r["green_status"] = "ok" if g.parsed else "unparseable"
            bad += not g.parsed
        if bad:
            self.notes.append(f"GREEN: {bad} completions could not be parsed and are left out of the mean")


# ------------------------------------------------------------------------------------------- bootstrap and tables


def study_scores(records: list[dict]):
    """``StudyScores`` of one run on one board: the mean columns present, and RadCliQ-v1."""
    from verl_ext.eval.bootstrap import StudyScores

    cols = [c for c in (*MEAN_COLUMNS, rx.RADCLIQ_V1) if any(r.get(c) is not None for r in records)]
    values = {c: np.array([np.nan if r.get(c) is None else float(r[c]) for r in records]) for c in cols}
    return StudyScores(ids=[r["id"] for r in records], values=values)


def board_metrics(scores) -> list[str]:
    """The board's columns this input supports, in ReXrank's order."""
    have = set(scores.values)
    out = []
    for col in rx.BOARD_COLUMNS:
        if col in have or (col == rx.INV_RADCLIQ_V1 and rx.RADCLIQ_V1 in have):
            out.append(col)
    return out


def _board_values(scores, weights=None) -> dict[str, np.ndarray]:
    from verl_ext.eval.bootstrap import corpus_metrics

    means = corpus_metrics(scores, weights)
    out = {}
    for col in board_metrics(scores):
        if col == rx.INV_RADCLIQ_V1:
            mean = means[rx.RADCLIQ_V1]
            out[col] = np.divide(1.0, mean, out=np.full_like(mean, np.nan), where=mean != 0)
        else:
            out[col] = means[col]
    return out


def bootstrap_board(scores, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Point value + percentile CI of every board column (``verl_ext.eval.bootstrap``'s resampling of studies)."""
    from verl_ext.eval.bootstrap import Estimate, _interval, resample_counts

    point = _board_values(scores)
    draws = {m: [] for m in point}
    for w in resample_counts(len(scores), n_boot, seed):
        for m, v in _board_values(scores, w).items():
            draws[m].append(v)
    result = {}
    for m, parts in draws.items():
        samples = np.concatenate(parts)
        lo, hi = _interval(samples, alpha)
        finite = samples[np.isfinite(samples)]
        source = scores.values.get(m)
        n = len(scores) if source is None else int((~np.isnan(source)).sum())
        result[m] = Estimate(float(point[m][0]), lo, hi, float(finite.std(ddof=1)) if finite.size > 1 else 0.0, n)
    return result


def paired_board(run, baseline, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """run − baseline per board column on their common studies, the same resamples for both."""
    from verl_ext.eval.bootstrap import Difference, _interval, resample_counts

    common = sorted(set(run.ids.tolist()) & set(baseline.ids.tolist()))
    a, b = run.subset(common), baseline.subset(common)
    metrics = [m for m in board_metrics(a) if m in board_metrics(b)]
    pa, pb = _board_values(a), _board_values(b)
    deltas = {m: [] for m in metrics}
    for w in resample_counts(len(common), n_boot, seed):
        va, vb = _board_values(a, w), _board_values(b, w)
        for m in metrics:
            deltas[m].append(va[m] - vb[m])
    out = {}
    for m in metrics:
        samples = np.concatenate(deltas[m])
        lo, hi = _interval(samples, alpha)
        samples = samples[np.isfinite(samples)]
        p = min(1.0, 2 * min(float((samples <= 0).mean()), float((samples >= 0).mean()))) if samples.size else 1.0
        out[m] = Difference(float(pa[m][0] - pb[m][0]), lo, hi, p, len(common))
    return out


def build_report(runs: dict[str, dict[str, list[dict]]], *, baseline: str | None = None, n_boot: int = 1000,
                 seed: int = 0, alpha: float = 0.05):
    """``verl_ext.eval.compare.Report`` of {run: {test set: per-study records}}, restricted per test set to the
    studies every run has (a warning says how many were dropped)."""
    from verl_ext.eval.compare import DatasetResult, Report

    names = list(runs)
    baseline = baseline or names[0]
    if baseline not in runs:
        raise RexrankError(f"--baseline {baseline!r} is not one of the runs {names}")
    sets = list(dict.fromkeys(s for r in runs.values() for s in r))
    results = []
    for test_set in sets:
        present = [n for n in names if test_set in runs[n]]
        scores = {n: study_scores(runs[n][test_set]) for n in present}
        shared = sorted(set.intersection(*(set(s.ids.tolist()) for s in scores.values())))
        if not shared:
            raise RexrankError(f"{test_set}: the runs share no study id")
        dropped = {n: len(s) - len(shared) for n, s in scores.items() if len(s) != len(shared)}
        if dropped:
            logger.warning("%s: restricted to the %d studies every run has (dropped %s)", test_set, len(shared),
                           dropped)
        scores = {n: s.subset(shared) for n, s in scores.items()}
        metric_sets = [board_metrics(s) for s in scores.values()]
        metrics = [m for m in metric_sets[0] if all(m in ms for ms in metric_sets)]
        res = DatasetResult(test_set, None, metrics, present, len(shared), dropped)
        for n in present:
            est = bootstrap_board(scores[n], n_boot, seed, alpha)
            res.estimates[n] = {m: est[m] for m in metrics}
        if baseline in scores:
            for n in present:
                if n != baseline:
                    diff = paired_board(scores[n], scores[baseline], n_boot, seed, alpha)
                    res.differences[n] = {m: diff[m] for m in metrics}
        results.append(res)
    return Report(baseline, names, results, n_boot, seed, alpha)


# ----------------------------------------------------------------------------------------------------- leaderboard


def read_results_csv(path: str | os.PathLike) -> list[dict]:
    """Rows of a ReXrank results CSV (``results/*result_*.csv``)."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in ("Model Name", rx.RANK_BY) if c not in header]
        if missing:
            raise RexrankError(f"{path}: not a ReXrank results CSV (no {missing} column; header {header})")
        return [{k: (v or "") for k, v in row.items() if k is not None} for row in reader]


def snapshot_path(dataset: str, board: str) -> Path | None:
    name = SNAPSHOTS.get((dataset, board))
    return RESOURCES / name if name else None


def _fmt(value: float | None) -> str:
    return "" if value is None or not np.isfinite(value) else f"{round(float(value), 3):g}"


def leaderboard(published: list[dict], ours: dict[str, dict[str, float]], *, date: str = "",
                institution: str = "", url: str = "") -> list[dict]:
    """Published rows plus one row per run (``ours``: run -> column -> value), in ReXrank's CSV format, ranked by
    1/RadCliQ-v1 (higher first; rows without it last). Our rows carry ``"ours": True``."""
    rows = [dict(r, ours=False) for r in published]
    for name, values in ours.items():
        row = {c: "" for c in rx.RESULTS_HEADER}
        row.update({"Date": date, "Model Name": name, "Institution": institution, "Model URL": url, "ours": True})
        row.update({c: _fmt(values.get(c)) for c in rx.BOARD_COLUMNS if c in values})
        rows.append(row)

    rows.sort(key=_rank_key)  # stable: ties keep the published order, ours after
    for rank, row in enumerate(rows, 1):
        row["Rank"] = str(rank)
    return rows


def _rank_key(row: dict) -> tuple[bool, float]:
    try:
        value = float(row.get(rx.RANK_BY) or "nan")
    except ValueError:
        value = float("nan")
    return (math.isnan(value), 0.0 if math.isnan(value) else -value)


def write_leaderboard(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rx.RESULTS_HEADER), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def leaderboard_markdown(test_set: str, rows: list[dict], source: str) -> str:
    cols = [rx.RANK_BY] + [c for c in rx.BOARD_COLUMNS if c != rx.RANK_BY and c != rx.FINERADSCORE]
    lines = [f"## Where it would stand: {test_set}", "",
             f"Published rows: {source}; ranked by {rx.RANK_BY} as rexrank.ai ranks. Our rows in bold.", "",
             "| Rank | Model | Institution | " + " | ".join(cols) + " |", "|" + "---|" * (3 + len(cols))]
    for r in rows:
        cells = [r["Rank"], r["Model Name"], r.get("Institution", "")] + [r.get(c, "") or "—" for c in cols]
        if r.get("ours"):
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------- pipeline


INTRO = ("ReXrank's metrics (verl_ext.metrics.rexrank) with {level}% percentile bootstrap CIs ({n_boot} resamples "
         "of studies, seed {seed}); 1/RadCliQ-v1 is 1/mean(RadCliQ-v1) in every resample. Differences are run − "
         "{baseline} on the same studies (paired bootstrap); `*` marks p < {alpha:g}.")


def write_outputs(report, records: dict[str, dict[str, list[dict]]], out: str | os.PathLike, *,
                  leaderboards: dict[str, tuple[list[dict], str]] | None = None, notes: list[str] | None = None,
                  date: str = "", institution: str = "", url: str = "") -> dict[str, Path]:
    """tables.md / summary.csv / differences.csv / metrics.png (as ``verl_ext.eval.compare``), per-study JSON lines,
    and ``leaderboard_<set>.csv`` for each test set that has published rows."""
    from verl_ext.eval import compare

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for run, sets in records.items():
        for test_set, recs in sets.items():
            path = out / "per_study" / test_set.replace("/", "_") / f"{run}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    intro = INTRO.format(level=round(100 * (1 - report.alpha)), n_boot=report.n_boot, seed=report.seed,
                         baseline=report.baseline, alpha=report.alpha)
    text = compare.markdown(report, title="ReXrank evaluation", intro=intro)
    if notes:
        text += "\nNotes:\n\n" + "".join(f"* {n}\n" for n in notes)
    for res in report.datasets:
        published, source = (leaderboards or {}).get(res.dataset, (None, ""))
        if published is None:
            continue
        ours = {run: {m: e.value for m, e in res.estimates[run].items()} for run in res.runs}
        rows = leaderboard(published, ours, date=date, institution=institution, url=url)
        path = out / f"leaderboard_{res.dataset.replace('/', '_')}.csv"
        write_leaderboard(rows, path)
        files[path.name] = path
        text += "\n" + leaderboard_markdown(res.dataset, rows, source)
    (out / "tables.md").write_text(text + "\n", encoding="utf-8")
    compare.write_csv(report, out)
    compare.plot(report, out / "metrics.png")
    for name in ("tables.md", "summary.csv", "differences.csv", "metrics.png"):
        files[name] = out / name
    return files


def _leaderboard_source(spec: str, dataset: str, board: str) -> tuple[list[dict], str] | None:
    if spec == "none":
        return None
    if spec == "auto":
        path = snapshot_path(dataset, board)
        if path is None or not path.is_file():
            logger.warning("no published ReXrank rows shipped for %s / %s; pass --leaderboard CSV", dataset, board)
            return None
        return read_results_csv(path), f"ReXrank results snapshot {path.name} (gh-pages, Sep 2025)"
    return read_results_csv(spec), spec


def score_and_report(generations: dict[str, dict[str, str]], *, dataset: str, config: ScoreConfig,
                     out: str | os.PathLike, baseline: str | None = None, n_boot: int = 1000, seed: int = 0,
                     alpha: float = 0.05, leaderboard_spec: str = "auto", green_scorer: Any = None,
                     date: str = "", institution: str = "", url: str = "") -> dict[str, Path]:
    """{run: {board: generations file}} -> scores -> `write_outputs`. The test set of a board is
    ``<dataset>/<board>``."""
    config.check()
    scorer = RexrankScorer(config, green_scorer=green_scorer)
    records: dict[str, dict[str, list[dict]]] = {}
    leaderboards = {}
    for run, per_board in generations.items():
        for b, path in per_board.items():
            rows = read_generations(path, b)
            if not rows:
                raise RexrankError(f"{path}: no generations")
            test_set = f"{dataset}/{b}"
            records.setdefault(run, {})[test_set] = scorer.score(rows)
            src = _leaderboard_source(leaderboard_spec, dataset, b) if leaderboard_spec else None
            if src is not None:
                leaderboards[test_set] = src
    report = build_report(records, baseline=baseline, n_boot=n_boot, seed=seed, alpha=alpha)
    return write_outputs(report, records, out, leaderboards=leaderboards, notes=list(dict.fromkeys(scorer.notes)),
                         date=date, institution=institution, url=url)


# ------------------------------------------------------------------------------------------------------------ CLI


def _add_prepare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--test-json", required=True,
                   help="ReXrank test JSON, e.g. data/mimic-cxr/ReXRank_MIMICCXR_test.json")
    p.add_argument("--dataset", required=True, choices=DATASETS, help="which test set (context lines, leaderboard)")
    p.add_argument("--image-root", required=True,
                   help="local image root (MIMIC-CXR-JPG files/, IU-Xray images/, CheXpert Plus PNG/)")
    p.add_argument("--no-context", action="store_true", help="leave the context (indication, comparison) out")
    p.add_argument("--key-image-only", action="store_true", help="only key_image_path (single-image models)")
    p.add_argument("--min-pixels", type=int, default=262_144, help="per-image pixel budget (paper App. E)")
    p.add_argument("--max-pixels", type=int, default=401_408)
    p.add_argument("--allow-missing-images", action="store_true",
                   help="leave studies with missing image files out (reported) instead of failing")


def _add_score_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scorer models (local paths; never downloaded)")
    g.add_argument("--bertscore-model", help="distilroberta-base directory")
    g.add_argument("--chexbert-checkpoint", help="chexbert.pth (StanfordAIMI/RRG_scorers)")
    g.add_argument("--chexbert-bert", help="bert-base-uncased directory (tokenizer + config)")
    g.add_argument("--radgraph-cache",
                   help="radgraph model_cache_dir with <model-type>/{config.json,vocabulary/,weights.th}")
    g.add_argument("--radgraph-model-type", default="radgraph",
                   choices=["radgraph", "radgraph-xl", "modern-radgraph-xl"])
    g.add_argument("--rate-ner", help="RaTE-NER directory (Angelakeke/RaTE-NER-Deberta)")
    g.add_argument("--biolord", help="BioLORD directory (FremyCompany/BioLORD-2023-C)")
    g.add_argument("--green-model", help="GREEN-radllama2-7b directory (needs vLLM + CUDA)")
    p.add_argument("--device", default="auto")
    p.add_argument("--skip", default="", help=f"comma-separated metrics to skip: {','.join(METRICS)}")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--baseline", default=None, help="run the others are compared with (default: the first)")
    p.add_argument("--leaderboard", default="auto",
                   help="published rows: 'auto' (shipped snapshot), a ReXrank results CSV, or 'none'")
    p.add_argument("--date", default="", help="Date column of our leaderboard rows")
    p.add_argument("--institution", default="")
    p.add_argument("--model-url", default="")


def _score_config(a) -> ScoreConfig:
    return ScoreConfig(chexbert_checkpoint=a.chexbert_checkpoint, chexbert_bert=a.chexbert_bert,
                       radgraph_cache=a.radgraph_cache, radgraph_model_type=a.radgraph_model_type,
                       rate_ner=a.rate_ner, biolord=a.biolord, bertscore_model=a.bertscore_model,
                       green_model=a.green_model, device=a.device,
                       skip=tuple(s.strip() for s in a.skip.split(",") if s.strip()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m verl_ext.eval.rexrank", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="ReXrank test JSON -> test parquet for verl_ext.eval.generate")
    _add_prepare_args(p)
    p.add_argument("--board", required=True, choices=BOARDS)
    p.add_argument("--out", required=True, help="output parquet")
    s = sub.add_parser("score", help="generations -> ReXrank metrics, tables, leaderboard rows")
    s.add_argument("--run", action="append", required=True, metavar="NAME=PATH",
                   help="generations (.jsonl of verl_ext.eval.generate, or a ReXrank prediction JSON); repeat")
    s.add_argument("--dataset", required=True, choices=DATASETS)
    s.add_argument("--board", required=True, choices=BOARDS)
    s.add_argument("--out", required=True, help="output directory")
    _add_score_args(s)
    r = sub.add_parser("run", help="prepare + generate + score one model on one or both boards")
    _add_prepare_args(r)
    r.add_argument("--board", action="append", choices=BOARDS, help="repeat for both (default: findings)")
    r.add_argument("--model", required=True, help="Hugging Face model directory")
    r.add_argument("--name", default=None, help="run name in tables and leaderboard (default: model dir name)")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--backend", default="auto", choices=["auto", "vllm", "hf"])
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument("--max-new-tokens", type=int, default=1024)
    r.add_argument("--limit", type=int, default=None, help="generate for at most N studies (smoke tests)")
    _add_score_args(r)
    return parser


def _parse_runs(specs: list[str]) -> dict[str, str]:
    runs = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise RexrankError(f"--run {spec!r}: expected NAME=PATH")
        runs[name.strip()] = path.strip()
    return runs


def run_protocol(a) -> dict[str, Path]:
    """The ``run`` subcommand."""
    from verl_ext.eval.generate import GenerateConfig
    from verl_ext.eval.generate import run as generate

    cfg = _score_config(a)
    cfg.check()  # before any model loads
    studies = read_test_json(a.test_json)
    out = Path(a.out)
    name = a.name or Path(a.model).name
    gens = {}
    for board in a.board or ["findings"]:
        prepared = prepare_rows(studies, dataset=a.dataset, image_root=a.image_root, board=board,
                                use_context=not a.no_context, key_image_only=a.key_image_only,
                                min_pixels=a.min_pixels, max_pixels=a.max_pixels,
                                allow_missing_images=a.allow_missing_images)
        for reason, ids in prepared.excluded.items():
            logger.warning("%s board: %d studies left out (%s), e.g. %s", board, len(ids), reason, ids[:3])
        parquet = write_parquet(prepared.rows, out / "inputs" / f"{a.dataset}_{board}.parquet")
        gen_path = out / "generations" / f"{name}_{a.dataset}_{board}.jsonl"
        counts = generate(GenerateConfig(model=a.model, data=[str(parquet)], out=str(gen_path), backend=a.backend,
                                         batch_size=a.batch_size, max_new_tokens=a.max_new_tokens, limit=a.limit))
        logger.info("generated %s", counts)
        write_prediction_json(studies, read_generations(gen_path, board),
                              out / "predictions" / f"{name}_{a.dataset}_{board}.json")
        gens[board] = str(gen_path)
    return score_and_report({name: gens}, dataset=a.dataset, config=cfg, out=out / "scores",
                            baseline=None, n_boot=a.n_boot, seed=a.seed, alpha=a.alpha,
                            leaderboard_spec=a.leaderboard, date=a.date, institution=a.institution, url=a.model_url)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    a = build_parser().parse_args(argv)
    try:
        if a.cmd == "prepare":
            prepared = prepare_rows(read_test_json(a.test_json), dataset=a.dataset, image_root=a.image_root,
                                    board=a.board, use_context=not a.no_context, key_image_only=a.key_image_only,
                                    min_pixels=a.min_pixels, max_pixels=a.max_pixels,
                                    allow_missing_images=a.allow_missing_images)
            path = write_parquet(prepared.rows, a.out)
            print(json.dumps({"rows": len(prepared.rows), "excluded": {k: len(v) for k, v in prepared.excluded.items()},
                              "out": str(path)}, indent=2))
            return 0
        if a.cmd == "score":
            runs = {n: {a.board: p} for n, p in _parse_runs(a.run).items()}
            files = score_and_report(runs, dataset=a.dataset, config=_score_config(a), out=a.out,
                                     baseline=a.baseline, n_boot=a.n_boot, seed=a.seed, alpha=a.alpha,
                                     leaderboard_spec=a.leaderboard, date=a.date, institution=a.institution,
                                     url=a.model_url)
        else:
            files = run_protocol(a)
    except (RexrankError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((Path(files["tables.md"])).read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in files.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
