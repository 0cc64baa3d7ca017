"""Evaluate generated reports against references: the paper's Table 1 columns, plus per-sample scores.

CLI::

    python -m verl_ext.eval.evaluate --input rows.jsonl --out results/ \\
        --rate-ner /models/RaTE-NER-Deberta --biolord /models/BioLORD-2023-C \\
        --chexbert-checkpoint /models/chexbert.pth --chexbert-bert /models/bert-base-uncased \\
        --radgraph-cache /models/radgraph --radgraph-model-type radgraph-xl \\
        [--green-model /models/GREEN-radllama2-7b] [--skip green]

Input: ``.jsonl``, ``.json`` (a list), ``.csv`` or ``.parquet`` rows with an id, the generated report and the
reference report (column names: ``--id-col id --generated-col generated --reference-col reference``), and optionally
``data_source`` (``verl_ext.eval.generate`` writes it), which is kept so ``compare`` names the test set.

Before anything is loaded, every model path is checked with the loaders' own rules
(``verl_ext.clinical.models.check_model_paths``; e.g. ``--radgraph-cache`` must hold a ``<--radgraph-model-type>/``
folder), and the input is read once to check ids (unique) and references (non-empty). Rows are then scored
``--batch-size`` at a time under a progress bar and appended to ``per_sample.jsonl`` after each chunk; nothing but
the label vectors and scores of scored rows stays in memory. Rerunning the same command resumes: rows whose id is
already in ``per_sample.jsonl`` are skipped (a torn last line is dropped), as ``verl_ext.eval.generate`` does; a
rerun with other settings (``per_sample.jsonl.meta.json``) is refused unless ``--allow-settings-change``.

Outputs in ``--out``:

* ``table.json`` / ``table.csv``: the Table 1 columns (``verl_ext.metrics.aggregate.TABLE_COLUMNS``) + ``avg``,
  ``avg_columns``, ``n``, and ``notes`` (e.g. why GREEN was skipped, how many samples a metric could not score);
* ``per_sample.jsonl``: one JSON object per input row, in input order — the format other tools (comparison tables,
  bootstrap CIs) read; ``per_sample.csv`` holds the same with label vectors as 14-character 0/1 strings:

  | field                  | type              | meaning                                                         |
  |------------------------|-------------------|-----------------------------------------------------------------|
  | id                     | str               | the row id                                                      |
  | data_source            | str               | the test set, when the input has it                             |
  | generated, reference   | str               | the texts as given                                              |
  | chexbert_generated     | list[int] (14)    | binary CheXbert labels of the generated report (uncertain -> 1  |
  |                        |                   | unless --chexbert-uncertain negative); order ``CONDITIONS``     |
  | chexbert_reference     | list[int] (14)    | same for the reference                                          |
  | chexbert_micro_f1_14   | float             | per-sample micro-F1 over the 14 labels                          |
  | radgraph_f1            | float             | RadGraph F1, partial level (the Table 1 column)                 |
  | radgraph_f1_simple     | float             | simple level                                                    |
  | radgraph_f1_complete   | float             | complete level                                                  |
  | ratescore              | float or null     | RaTEScore; null when the reference has no RaTE entity          |
  | ratescore_status       | str               | ok, empty_generated (0), generated_without_entities (0),        |
  |                        |                   | reference_without_entities (null)                               |
  | green                  | float or null     | GREEN; null when skipped or the completion was unparseable      |
  | green_status           | str               | ok, unparseable, skipped                                        |

  Corpus numbers are recomputed from these records by ``verl_ext.metrics.aggregate.table_from_per_sample``, so a
  bootstrap resample of the records gives the resample's table. A metric that was skipped has its fields absent.

Python API: ``evaluate(rows, EvalConfig(...)) -> EvalResult`` (``.table``, ``.per_sample``, ``.notes``) and
``write_outputs(result, out_dir)``.

RaTEScore here follows the reward's guards, which differ from the package in two corner cases: an empty generated
report or one without entities scores 0 (the package: 0.5, and an empty one shifts every later pair), and a
reference without entities is not scored (the package: 0.5).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

from verl_ext.eval.resume import check_settings, meta_path, read_done_ids
from verl_ext.help_format import HelpFormatter
from verl_ext.metrics.aggregate import TABLE_COLUMNS, format_table, table_from_per_sample

logger = logging.getLogger(__name__)

METRICS = ("chexbert", "radgraph", "ratescore", "green")
#: The model family (``verl_ext.clinical.models.MODEL_FILES``) each metric loads; GREEN is checked on its own.
METRIC_MODELS = {"chexbert": "chexbert", "radgraph": "radgraph", "ratescore": "rate"}
#: The CLI flag of each ``ModelPaths`` key, for messages that name what to change.
MODEL_FLAGS = {"rate_ner": "--rate-ner", "biolord": "--biolord", "chexbert_checkpoint": "--chexbert-checkpoint",
               "chexbert_bert": "--chexbert-bert", "radgraph_cache": "--radgraph-cache",
               "radgraph_model_type": "--radgraph-model-type", "green_model": "--green-model"}
#: Per-sample fields the corpus table needs (the texts are left out of what stays in memory).
_TEXT_FIELDS = ("generated", "reference")


@dataclass
class EvalConfig:
    models: dict = field(default_factory=dict)
    """``verl_ext.clinical.models.ModelPaths`` fields."""
    device: str = "auto"
    skip: tuple[str, ...] = ()
    """Metrics not to compute: any of chexbert, radgraph, ratescore, green."""
    radgraph_lowercase: bool = False
    """False: radgraph 0.1.18 as released (case-sensitive tokens), comparable with published numbers."""
    chexbert_uncertain: str = "positive"
    green_model: Optional[str] = None
    green_max_length: int = 2048
    batch_size: int = 256
    """Rows scored per chunk (each chunk batches every model over its unique texts; results are written after it)."""


@dataclass
class EvalResult:
    table: dict
    per_sample: list[dict]
    notes: list[str] = field(default_factory=list)


def iter_records(path: str) -> Iterator[dict]:
    """The rows of an ``--input`` file as dicts, one at a time: .jsonl, .csv and .parquet (by record batches) are
    streamed; .json (a list) is parsed whole."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        with p.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
    elif suffix == ".json":
        yield from json.loads(p.read_text())
    elif suffix == ".csv":
        with open(p, newline="") as f:
            yield from csv.DictReader(f)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(p).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
    else:
        raise ValueError(f"--input {path!r}: expected .jsonl, .json, .csv or .parquet")


def read_records(path: str) -> list[dict]:
    """The rows of an ``--input`` file as dicts: .jsonl, .json (a list), .csv or .parquet."""
    return list(iter_records(path))


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def iter_rows(
    path: str, id_col: str = "id", generated_col: str = "generated", reference_col: str = "reference"
) -> Iterator[dict]:
    """Rows ``{"id", ["data_source",] "generated", "reference"}`` from .jsonl/.json/.csv/.parquet, one at a time."""
    for k, r in enumerate(iter_records(path)):
        missing = [c for c in (generated_col, reference_col) if c not in r]
        if missing:
            raise ValueError(
                f"{path}: row {k} lacks column(s) {missing} (have {sorted(r)}); see --generated-col/--reference-col"
            )
        row = {"id": str(r.get(id_col, k))}
        if _text(r.get("data_source")):
            row["data_source"] = str(r["data_source"])
        row["generated"], row["reference"] = _text(r[generated_col]), _text(r[reference_col])
        yield row


def read_rows(
    path: str, id_col: str = "id", generated_col: str = "generated", reference_col: str = "reference"
) -> list[dict]:
    """Rows ``{"id", ["data_source",] "generated", "reference"}`` from .jsonl/.json/.csv/.parquet."""
    return list(iter_rows(path, id_col, generated_col, reference_col))


def check_rows(rows: Iterable[dict]) -> list[str]:
    """The ids of `rows` in order; ``ValueError`` for a repeated id (resuming and ``compare`` key on ids) or an
    empty reference (nothing to score against), before any model is loaded."""
    ids, seen, empty, repeated = [], set(), [], []
    for r in rows:
        (repeated if r["id"] in seen else ids).append(r["id"])
        seen.add(r["id"])
        if not r["reference"].strip():
            empty.append(r["id"])
    if empty:
        raise ValueError(f"{len(empty)} row(s) have an empty reference (first ids: {empty[:5]}); fix the input")
    if repeated:
        raise ValueError(f"{len(repeated)} id(s) repeat (first: {repeated[:5]}); ids must be unique (see --id-col)")
    return ids


def model_needs(skip: Sequence[str]) -> set[str]:
    """The model families (``verl_ext.clinical.models.MODEL_FILES``) the metrics not in `skip` load."""
    return {family for metric, family in METRIC_MODELS.items() if metric not in skip}


def check_models(config: EvalConfig, names: Any = "") -> None:
    """Raise naming the setting (``names``: a ``ModelPaths`` key -> flag mapping, or a prefix) for any model path the
    metrics would fail to load from, with the loaders' own rules; nothing is loaded. A GREEN model that is given
    but absent is an error too (no GREEN model, or no vLLM/CUDA here, skips the column with a note)."""
    from verl_ext.clinical.models import ModelPaths, check_model_paths, require

    unknown = set(config.skip) - set(METRICS)
    if unknown:
        raise ValueError(f"skip: unknown metrics {sorted(unknown)}; choose from {METRICS}")
    if config.green_model and "green" not in config.skip:
        name = names.get("green_model", "green_model") if isinstance(names, dict) else "green_model"
        require(config.green_model, name, "GREEN model directory")
    check_model_paths(ModelPaths.from_dict(config.models), model_needs(config.skip), names)


class _Scoring:
    """The models of one evaluation, built on first use, and the scoring of one chunk of rows."""

    def __init__(self, config: EvalConfig, scorer: Any = None, green_scorer: Any = None):
        self.config = config
        self._scorer = scorer
        self.green_scorer = green_scorer
        self.green_skipped: Optional[str] = None
        if "green" not in config.skip and green_scorer is None:
            from verl_ext.clinical.green import GreenScorer

            ok, why = GreenScorer.availability(config.green_model)
            self.green_skipped = None if ok else why

    @property
    def scorer(self):
        if self._scorer is None:
            from verl_ext.clinical.scorer import ClinicalScorer, ClinicalScorerConfig

            self._scorer = ClinicalScorer(
                ClinicalScorerConfig.from_dict({"models": self.config.models, "device": self.config.device})
            )
        return self._scorer

    def score(self, chunk: list[dict], stage: Any = None) -> None:
        """Add every metric's per-sample fields to the records of `chunk` (in place); `stage(name)` is told which
        metric runs (the progress bar shows it)."""
        from verl_ext.metrics.chexbert import binarize, sample_micro_f1
        from verl_ext.metrics.radgraph import radgraph_f1_all

        config, stage = self.config, stage or (lambda name: None)
        gens = [r["generated"] for r in chunk]
        refs = [r["reference"] for r in chunk]
        texts = list(dict.fromkeys([t for t in gens if t.strip()] + refs))
        if "chexbert" not in config.skip:
            stage("CheXbert")
            # as f1chexbert: an empty generated report is labelled too (the model sees "[CLS] [SEP]")
            all_texts = list(dict.fromkeys(gens + refs))
            classes = self.scorer.chexbert_classes(all_texts)
            labels = dict(zip(all_texts, binarize(classes, uncertain=config.chexbert_uncertain)))
            for r in chunk:
                g = labels[r["generated"]].tolist()
                r["chexbert_generated"] = g
                r["chexbert_reference"] = labels[r["reference"]].tolist()
                r["chexbert_micro_f1_14"] = sample_micro_f1(g, r["chexbert_reference"])
        if "radgraph" not in config.skip:
            stage("RadGraph")
            anns = dict(zip(texts, self.scorer.radgraph_annotations(texts)))
            for r in chunk:
                if r["generated"].strip():
                    simple, partial, complete = radgraph_f1_all(
                        anns[r["generated"]], anns[r["reference"]], config.radgraph_lowercase
                    )
                else:
                    simple = partial = complete = 0.0
                r["radgraph_f1"], r["radgraph_f1_simple"], r["radgraph_f1_complete"] = partial, simple, complete
        if "ratescore" not in config.skip:
            stage("RaTEScore")
            analyses, _ = self.scorer.rate_analyses(texts)
            an = dict(zip(texts, analyses))
            for r in chunk:
                ref_a = an[r["reference"]]
                if not ref_a.entities:
                    r["ratescore"], r["ratescore_status"] = None, "reference_without_entities"
                elif not r["generated"].strip():
                    r["ratescore"], r["ratescore_status"] = 0.0, "empty_generated"
                elif not an[r["generated"]].entities:
                    r["ratescore"], r["ratescore_status"] = 0.0, "generated_without_entities"
                else:
                    r["ratescore"], r["ratescore_status"] = self.scorer.rate.ratescore(an[r["generated"]], ref_a), "ok"
        if "green" not in config.skip:
            if self.green_skipped is None:
                stage("GREEN")
            self._green(chunk)

    def _green(self, chunk: list[dict]) -> None:
        if self.green_skipped is not None:
            for r in chunk:
                r["green"], r["green_status"] = None, "skipped"
            return
        if self.green_scorer is None:
            from verl_ext.clinical.green import GreenScorer

            self.green_scorer = GreenScorer(self.config.green_model, max_length=self.config.green_max_length)
        results = self.green_scorer.score([r["reference"] for r in chunk], [r["generated"] for r in chunk])
        for r, g in zip(chunk, results):
            r["green"] = g.score
            r["green_status"] = "ok" if g.parsed else "unparseable"

    def notes(self, records: list[dict]) -> list[str]:
        """What the table's numbers leave out, from the per-sample records (so a resumed run reports them too)."""
        notes = []
        skip = self.config.skip
        if "ratescore" not in skip:
            bad = sum(1 for r in records if r.get("ratescore_status") == "reference_without_entities")
            if bad:
                notes.append(f"RaTE: {bad} reference(s) without RaTE entities were not scored")
        if "green" not in skip:
            if self.green_skipped is not None:
                notes.append(f"GREEN skipped: {self.green_skipped}")
            unparsed = sum(1 for r in records if r.get("green_status") == "unparseable")
            if unparsed:
                notes.append(f"GREEN: {unparsed} completion(s) could not be parsed and were left out of the mean")
            if records and not any(r.get("green") is not None for r in records) and self.green_skipped is None:
                notes.append("GREEN: no sample could be scored")
        return notes


def evaluate(rows: Sequence[dict], config: EvalConfig, scorer: Any = None, green_scorer: Any = None) -> EvalResult:
    """Score ``rows`` (dicts with id, generated, reference; optionally data_source) in memory. ``scorer``: a
    ``ClinicalScorer`` to reuse (else built from ``config.models``, whose paths are checked first);
    ``green_scorer``: a ``GreenScorer`` to use instead of building one. ``run`` is the streaming, resumable form."""
    if scorer is None:
        check_models(config)
    check_rows(rows)
    scoring = _Scoring(config, scorer, green_scorer)
    records = [dict(r) for r in rows]
    step = max(1, int(config.batch_size))
    for s in range(0, len(records), step):
        scoring.score(records[s : s + step])
    return EvalResult(table=table_from_per_sample(records), per_sample=records, notes=scoring.notes(records))


def _settings(config: EvalConfig, input_path: str, columns: tuple[str, str, str]) -> dict:
    """What changes the per-sample rows: a resumed run must match it (device and batch size do not count)."""
    d = asdict(config)
    for key in ("device", "batch_size"):
        d.pop(key)
    d["skip"] = sorted(d["skip"])
    d["input"] = str(Path(input_path).resolve())
    d["columns"] = list(columns)
    return d


def run(
    input_path: str,
    out_dir: str,
    config: EvalConfig,
    columns: tuple[str, str, str] = ("id", "generated", "reference"),
    *,
    allow_settings_change: bool = False,
    progress: bool = True,
    scorer: Any = None,
    green_scorer: Any = None,
) -> tuple[EvalResult, dict[str, str]]:
    """Score `input_path` into `out_dir`, resumably (see the module docstring); returns the result (its
    ``per_sample`` without the texts, which stay on disk) and the written paths."""
    from tqdm.auto import tqdm

    ids = check_rows(iter_rows(input_path, *columns))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_sample = out / "per_sample.jsonl"
    meta = meta_path(per_sample)
    settings = _settings(config, input_path, columns)
    check_settings(meta, settings, allow_settings_change)
    done = read_done_ids(per_sample)
    strangers = done - set(ids)
    if strangers:
        raise ValueError(f"{per_sample} holds {len(strangers)} id(s) that are not in {input_path} (e.g. "
                         f"{sorted(strangers)[:3]}); use a new --out")
    pending = len(ids) - len(done)
    logger.info("%d rows in %s: %d already scored in %s, %d to score", len(ids), input_path, len(done), per_sample,
                pending)
    scoring = _Scoring(config, scorer, green_scorer)
    meta.write_text(json.dumps({"settings": settings}, indent=2) + "\n")
    step = max(1, int(config.batch_size))
    with per_sample.open("a", encoding="utf-8") as fh, tqdm(total=pending, desc="evaluate", unit="study",
                                                            disable=not progress or not pending) as bar:
        chunk: list[dict] = []

        def flush() -> None:
            scoring.score(chunk, stage=lambda name: bar.set_postfix_str(name, refresh=True))
            for r in chunk:
                fh.write(json.dumps(r) + "\n")
            fh.flush()
            bar.update(len(chunk))
            chunk.clear()

        for row in iter_rows(input_path, *columns):
            if row["id"] not in done:
                chunk.append(row)
                if len(chunk) >= step:
                    flush()
        if chunk:
            flush()
    records = []
    with per_sample.open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            records.append({k: v for k, v in record.items() if k not in _TEXT_FIELDS})
    result = EvalResult(table=table_from_per_sample(records), per_sample=records, notes=scoring.notes(records))
    return result, write_outputs(result, out_dir, per_sample_written=True)


def write_outputs(result: EvalResult, out_dir: str, per_sample_written: bool = False) -> dict[str, str]:
    """``table.json``/``.csv`` and ``per_sample.jsonl``/``.csv`` in `out_dir`; with `per_sample_written`,
    ``per_sample.jsonl`` is already there (``run`` appends to it) and ``per_sample.csv`` is streamed from it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = dict(result.table, notes=list(result.notes))
    paths = {
        "table_json": out / "table.json",
        "table_csv": out / "table.csv",
        "per_sample_jsonl": out / "per_sample.jsonl",
        "per_sample_csv": out / "per_sample.csv",
    }
    paths["table_json"].write_text(json.dumps(table, indent=2) + "\n")
    cols = list(TABLE_COLUMNS) + ["avg", "n"]
    with open(paths["table_csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerow(["" if table.get(c) is None else table[c] for c in cols])
    if not per_sample_written:
        with open(paths["per_sample_jsonl"], "w") as f:
            for r in result.per_sample:
                f.write(json.dumps(r) + "\n")

    def records() -> Iterator[dict]:
        with open(paths["per_sample_jsonl"], encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)

    fields_: list[str] = []
    for r in records():
        fields_ += [k for k in r if k not in fields_]
    with open(paths["per_sample_csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields_)
        w.writeheader()
        for r in records():
            w.writerow({k: ("".join(map(str, v)) if isinstance(v, list) else v) for k, v in r.items()})
    return {k: str(v) for k, v in paths.items()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m verl_ext.eval.evaluate",
        description="Score generated radiology reports against references: CheXbert Micro/Macro-F1-14 and -5,\n"
        "RadGraph F1, RaTEScore, GREEN and their average (the paper's Table 1), with per-sample scores.\n"
        "Model paths are checked before anything loads; rerunning the same command resumes where it stopped.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--input", required=True, help="rows file: .jsonl, .json, .csv or .parquet")
    p.add_argument("--out", required=True, help="output directory (table.json, table.csv, per_sample.jsonl/.csv); "
                   "resumed when it holds per_sample.jsonl")
    p.add_argument("--id-col", default="id", help="input column with the study id (unique)")
    p.add_argument("--generated-col", default="generated", help="input column with the generated report")
    p.add_argument("--reference-col", default="reference", help="input column with the reference report")
    g = p.add_argument_group("models (local paths; never downloaded)")
    g.add_argument("--rate-ner", help="RaTE-NER model directory (Angelakeke/RaTE-NER-Deberta)")
    g.add_argument("--biolord", help="BioLORD model directory (FremyCompany/BioLORD-2023-C)")
    g.add_argument("--chexbert-checkpoint", help="chexbert.pth (StanfordAIMI/RRG_scorers)")
    g.add_argument("--chexbert-bert", help="bert-base-uncased directory (tokenizer + config)")
    g.add_argument(
        "--radgraph-cache",
        help="radgraph model_cache_dir, containing <model-type>/{config.json,vocabulary/,weights.th}",
    )
    g.add_argument(
        "--radgraph-model-type", default="radgraph-xl", choices=["radgraph", "radgraph-xl", "modern-radgraph-xl"],
        help="the folder of --radgraph-cache to load (the authors' evaluation model is radgraph-xl; the tiny test "
        "fixtures build radgraph)",
    )
    g.add_argument("--green-model", help="GREEN model directory (StanfordAIMI/GREEN-radllama2-7b); needs vLLM + CUDA")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--skip", default="", help="comma-separated metrics to skip: chexbert,radgraph,ratescore,green")
    p.add_argument(
        "--radgraph-lowercase",
        action="store_true",
        help="compare RadGraph tokens lower-cased (upstream fix after 0.1.18)",
    )
    p.add_argument("--chexbert-uncertain", default="positive", choices=["positive", "negative"],
                   help="CheXbert's uncertain label counts as positive (f1chexbert) or negative")
    p.add_argument("--batch-size", type=int, default=256, help="rows per scoring chunk (written after each)")
    p.add_argument("--allow-settings-change", action="store_true",
                   help="resume even though the settings differ from those of the existing per_sample.jsonl")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("verl_ext").setLevel(logging.INFO)
    skip = tuple(s.strip() for s in args.skip.split(",") if s.strip())
    models = {
        "rate_ner": args.rate_ner,
        "biolord": args.biolord,
        "chexbert_checkpoint": args.chexbert_checkpoint,
        "chexbert_bert": args.chexbert_bert,
        "radgraph_cache": args.radgraph_cache,
        "radgraph_model_type": args.radgraph_model_type,
    }
    cfg = EvalConfig(
        models=models,
        device=args.device,
        skip=skip,
        radgraph_lowercase=args.radgraph_lowercase,
        chexbert_uncertain=args.chexbert_uncertain,
        green_model=args.green_model,
        batch_size=args.batch_size,
    )
    try:
        check_models(cfg, MODEL_FLAGS)
        result, paths = run(args.input, args.out, cfg, (args.id_col, args.generated_col, args.reference_col),
                            allow_settings_change=args.allow_settings_change, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(result.table))
    for note in result.notes:
        print(f"note: {note}")
    print(f"n={result.table['n']}  wrote {', '.join(paths.values())}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
