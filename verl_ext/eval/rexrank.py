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
(MIMIC-CXR's test JSON: all 2,347 have findings). ReXrank's published script shows only the findings + impression
reference; that the findings board scores against the bare findings section follows from the board's name (the
ReXrank-metric repository itself could not be read for this). ``findings_impression``: the reference is ReXrank's
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
1/RadCliQ-v1, RaTEScore, GREEN (needs vLLM + CUDA; skipped with a note otherwise). The versions default to what the
leaderboard's columns were computed with, and the notes say which were used: RaTEScore with RaTEScore 0.5.0's weight
set (``--rate-weights``: negation weight 0.3612; 0.6.0's "long" uses 0.8717), GREEN as its reference code
(``--green-chat/--green-unparseable/--green-multiline``, ``verl_ext.metrics.green.GreenProtocol``). A run whose
studies differ from the board's (``--test-json``, or a board of known size) is flagged NOT COMPARABLE in the log, at
the top of ``tables.md`` and in its leaderboard row. Each study is one bootstrap
unit: ``tables.md``, ``summary.csv``, ``differences.csv`` and ``metrics.png`` come out as in
``verl_ext.eval.compare`` (one table per test set and board; ``metrics.png`` draws 1/RadCliQ-v1 on its own axis),
``per_study/<set>_<board>/<run>.jsonl`` holds every study's
scores, and ``leaderboard_<set>_<board>.csv`` puts each run among the published rows in ReXrank's results-CSV format,
ranked by 1/RadCliQ-v1 as rexrank.ai ranks (``--leaderboard``: a results CSV, or ``auto`` for the snapshot shipped in
``verl_ext/eval/resources/rexrank/``).

Modules: ``verl_ext.eval.rexrank_data`` (test JSONs, boards, rows, prediction files), ``verl_ext.eval.rexrank_board``
(bootstrap, tables, leaderboard), this one (scoring with the models, the pipeline, the CLI).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verl_ext.eval.rexrank_board import (
    BOARD_REFERENCE,
    KNOWN_BOARD_STUDIES,
    build_report,
    coverage_problem,
    read_results_csv,
    snapshot_path,
    write_outputs,
)
from verl_ext.eval.rexrank_data import (
    BOARDS,
    DATASETS,
    RexrankError,
    board_study_ids,
    prepare_rows,
    read_generations,
    read_image_map,
    read_test_json,
    write_parquet,
    write_prediction_json,
)
from verl_ext.metrics import rexrank as rx

logger = logging.getLogger(__name__)

METRICS = ("bleu", "bertscore", "sembscore", "radgraph", "ratescore", "green")


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
    rate_weights: str = "0.5.0"
    """RaTEScore weight set (``verl_ext.clinical.rate.WEIGHT_SETS``). "0.5.0": negation weight 0.3612, the RaTEScore
    release ReXrank's RaTEScore column was computed with; "long": RaTEScore 0.6.0's default (0.8717)."""
    green_chat: str = "user_assistant"
    """GREEN prompt: "user_assistant" (the GREEN reference code: user turn + empty assistant turn) or "user"."""
    green_unparseable: str = "zero"
    """A GREEN completion without its sections: "zero" (reference code) or "drop" (left out of the mean); counted."""
    green_multiline: bool = False
    """Read the matched-findings count on any line of its section (the reference reads it at the start only)."""

    def green_protocol(self):
        from verl_ext.metrics.green import GreenProtocol

        return GreenProtocol(chat=self.green_chat, unparseable=self.green_unparseable, multiline=self.green_multiline)

    def protocol_notes(self) -> list[str]:
        """What the output must say about the metric versions it used."""
        from verl_ext.clinical.rate import affinity_matrix

        notes = []
        if "ratescore" not in self.skip:
            neg = affinity_matrix(self.rate_weights)[("NEG", "WEIGHT")]
            board = " (the leaderboard's: RaTEScore 0.5.0)" if self.rate_weights == "0.5.0" else (
                "; NOT the leaderboard's RaTEScore 0.5.0 weights (--rate-weights 0.5.0)")
            notes.append(f"RaTEScore weight set {self.rate_weights} (negation weight {neg:.4g}){board}")
        if "green" not in self.skip:
            p = self.green_protocol()
            reference = p == type(p)()
            notes.append(f"GREEN protocol: chat={p.chat}, unparseable={p.unparseable}, multiline={p.multiline}"
                         + (" (the GREEN reference code, as the leaderboard)" if reference else
                            " (NOT the GREEN reference code the leaderboard used)"))
        return notes

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
        if "green" not in self.skip and self.green_model and not Path(self.green_model).is_dir():
            raise RexrankError(f"--green-model {self.green_model}: no such directory")
        from verl_ext.clinical.rate import WEIGHT_SETS

        if self.rate_weights not in WEIGHT_SETS and not Path(self.rate_weights).is_file():
            raise RexrankError(f"--rate-weights {self.rate_weights}: expected one of {WEIGHT_SETS} or a JSON file")
        try:
            self.green_protocol()
        except ValueError as err:
            raise RexrankError(str(err)) from None


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
            self._clinical = ClinicalScorer(ClinicalScorerConfig.from_dict(
                {"models": models, "device": c.device, "rate_affinity": c.rate_weights}))
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
        self._green.protocol = self.config.green_protocol()
        results = self._green.score([r["reference"] for r in records], [r["generated"] for r in records])
        bad = 0
        for r, g in zip(records, results):
            r[rx.GREEN] = g.score
            r["green_status"] = "unparseable" if g.parse_failed else "ok"
            bad += g.parse_failed
        if bad:
            how = ("score 0, as the GREEN reference code scores them" if self._green.protocol.unparseable == "zero"
                   else "are left out of the mean")
            self.notes.append(f"GREEN: {bad} completions could not be parsed and {how} (green_status)")


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
                     date: str = "", institution: str = "", url: str = "",
                     notes: list[str] | None = None,
                     board_studies: dict[str, list[str]] | None = None) -> dict[str, Path]:
    """{run: {board: generations file}} -> scores -> `write_outputs`. The test set of a board is
    ``<dataset>/<board>``; `notes` are added to the tables' notes. ``board_studies``: board -> the ids of the
    board's studies (from the test JSON); a run that covers another set is flagged loudly (log, tables, leaderboard
    CSV), as is one whose study count differs from a board of known size."""
    config.check()
    leaderboards = {}  # read before any model loads: a wrong --leaderboard fails here
    boards = list(dict.fromkeys(b for per_board in generations.values() for b in per_board))
    if leaderboard_spec not in ("auto", "none", "") and len(boards) > 1:
        raise RexrankError(f"--leaderboard {leaderboard_spec}: one results CSV cannot serve the boards {boards}; "
                           f"use 'auto' or score one board at a time")
    for b in boards:
        src = _leaderboard_source(leaderboard_spec, dataset, b) if leaderboard_spec else None
        if src is not None:
            leaderboards[f"{dataset}/{b}"] = src
    inputs = {(run, b): read_generations(path, b) for run, per_board in generations.items()
              for b, path in per_board.items()}
    empty = [generations[run][b] for (run, b), rows in inputs.items() if not rows]
    if empty:
        raise RexrankError(f"no generations in {empty}")
    coverage: dict[str, dict[str, str]] = {}
    unchecked = []
    for (run, b), rows in inputs.items():
        known = (board_studies or {}).get(b)
        why = coverage_problem(dataset, b, [r["id"] for r in rows], known)
        if why:
            coverage.setdefault(f"{dataset}/{b}", {})[run] = why
            logger.warning("NOT COMPARABLE with the published %s/%s rows: run %s %s", dataset, b, run, why)
        elif known is None and (dataset, b) not in KNOWN_BOARD_STUDIES:
            unchecked.append(f"{run} on {b}")
    board_notes = [f"{dataset}/{b}: reference text = {BOARD_REFERENCE[b]}" for b in boards]
    if unchecked:
        board_notes.append(f"Study coverage not checked for {', '.join(unchecked)}: pass --test-json to compare the "
                           f"scored studies with the board's")
    scorer = RexrankScorer(config, green_scorer=green_scorer)
    records: dict[str, dict[str, list[dict]]] = {}
    for (run, b), rows in inputs.items():
        records.setdefault(run, {})[f"{dataset}/{b}"] = scorer.score(rows)
    report = build_report(records, baseline=baseline, n_boot=n_boot, seed=seed, alpha=alpha)
    all_notes = board_notes + config.protocol_notes() + (notes or []) + scorer.notes
    return write_outputs(report, records, out, leaderboards=leaderboards, notes=list(dict.fromkeys(all_notes)),
                         date=date, institution=institution, url=url, coverage=coverage)


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
    p.add_argument("--image-map", default=None,
                   help="CSV rexrank_path,local_path when local image names differ from ReXrank's (e.g. IU-Xray)")
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
    v = p.add_argument_group("metric versions (defaults: what the leaderboard's columns were computed with)")
    v.add_argument("--rate-weights", default="0.5.0",
                   help="RaTEScore weight set: 0.5.0 (negation weight 0.3612, RaTEScore 0.5.0, the leaderboard's), "
                        "long (RaTEScore 0.6.0's default, 0.8717), short, or a JSON file (default: %(default)s)")
    v.add_argument("--green-chat", default="user_assistant", choices=["user_assistant", "user"],
                   help="GREEN prompt: the reference code's user turn + empty assistant turn, or the user turn only "
                        "(default: %(default)s)")
    v.add_argument("--green-unparseable", default="zero", choices=["zero", "drop"],
                   help="a GREEN completion without its sections: 0 as the reference code, or left out of the mean "
                        "(counted either way; default: %(default)s)")
    v.add_argument("--green-multiline", action="store_true",
                   help="read the matched-findings count on any line of its section (the reference code reads it at "
                        "the start only)")
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
                       skip=tuple(s.strip() for s in a.skip.split(",") if s.strip()), rate_weights=a.rate_weights,
                       green_chat=a.green_chat, green_unparseable=a.green_unparseable,
                       green_multiline=a.green_multiline)


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
    s.add_argument("--test-json", default=None,
                   help="the board's ReXrank test JSON: checks that each run covers exactly the board's studies "
                        "(without it only a board of known size is checked)")
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
    gens, notes = {}, []
    board_ids = {board: board_study_ids(studies, board) for board in a.board or ["findings"]}
    for board in a.board or ["findings"]:
        prepared = prepare_rows(studies, dataset=a.dataset, image_root=a.image_root, board=board,
                                use_context=not a.no_context, key_image_only=a.key_image_only,
                                min_pixels=a.min_pixels, max_pixels=a.max_pixels,
                                allow_missing_images=a.allow_missing_images,
                                image_map=read_image_map(a.image_map) if a.image_map else None)
        for reason, ids in prepared.excluded.items():
            logger.warning("%s board: %d studies left out (%s), e.g. %s", board, len(ids), reason, ids[:3])
        if prepared.unknown_views:
            logger.warning("%s board: %d studies list another number of views than images; their views are "
                           "named unknown (e.g. %s)", board, len(prepared.unknown_views), prepared.unknown_views[:3])
        parquet = write_parquet(prepared.rows, out / "inputs" / f"{a.dataset}_{board}.parquet")
        gen_path = out / "generations" / f"{name}_{a.dataset}_{board}.jsonl"
        counts = generate(GenerateConfig(model=a.model, data=[str(parquet)], out=str(gen_path), backend=a.backend,
                                         batch_size=a.batch_size, max_new_tokens=a.max_new_tokens, limit=a.limit))
        logger.info("generated %s", counts)
        generated = read_generations(gen_path, board)
        write_prediction_json(studies, generated, out / "predictions" / f"{name}_{a.dataset}_{board}.json")
        gens[board] = str(gen_path)
    return score_and_report({name: gens}, dataset=a.dataset, config=cfg, out=out / "scores",
                            baseline=None, n_boot=a.n_boot, seed=a.seed, alpha=a.alpha,
                            leaderboard_spec=a.leaderboard, date=a.date, institution=a.institution, url=a.model_url,
                            notes=notes, board_studies=board_ids)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    a = build_parser().parse_args(argv)
    try:
        if a.cmd == "prepare":
            prepared = prepare_rows(read_test_json(a.test_json), dataset=a.dataset, image_root=a.image_root,
                                    board=a.board, use_context=not a.no_context, key_image_only=a.key_image_only,
                                    min_pixels=a.min_pixels, max_pixels=a.max_pixels,
                                    allow_missing_images=a.allow_missing_images,
                                image_map=read_image_map(a.image_map) if a.image_map else None)
            path = write_parquet(prepared.rows, a.out)
            print(json.dumps({"rows": len(prepared.rows), "excluded": {k: len(v) for k, v in prepared.excluded.items()},
                              "unknown_views": len(prepared.unknown_views), "out": str(path)}, indent=2))
            return 0
        if a.cmd == "score":
            runs = {n: {a.board: p} for n, p in _parse_runs(a.run).items()}
            board_ids = {a.board: board_study_ids(read_test_json(a.test_json), a.board)} if a.test_json else None
            files = score_and_report(runs, dataset=a.dataset, config=_score_config(a), out=a.out,
                                     baseline=a.baseline, n_boot=a.n_boot, seed=a.seed, alpha=a.alpha,
                                     leaderboard_spec=a.leaderboard, date=a.date, institution=a.institution,
                                     url=a.model_url, board_studies=board_ids)
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
