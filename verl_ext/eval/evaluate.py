"""Evaluate generated reports against references: the paper's Table 1 columns, plus per-sample scores.

CLI::

    python -m verl_ext.eval.evaluate --input rows.jsonl --out results/ \\
        --rate-ner /models/RaTE-NER-Deberta --biolord /models/BioLORD-2023-C \\
        --chexbert-checkpoint /models/chexbert.pth --chexbert-bert /models/bert-base-uncased \\
        --radgraph-cache /models/radgraph --radgraph-model-type radgraph-xl \\
        [--green-model /models/GREEN-radllama2-7b] [--skip green]

Input: ``.jsonl``, ``.json`` (a list), ``.csv`` or ``.parquet`` rows with an id, the generated report and the
reference report (column names: ``--id-col id --generated-col generated --reference-col reference``).

Outputs in ``--out``:

* ``table.json`` / ``table.csv``: the Table 1 columns (``verl_ext.metrics.aggregate.TABLE_COLUMNS``) + ``avg``,
  ``avg_columns``, ``n``, and ``notes`` (e.g. why GREEN was skipped, how many samples a metric could not score);
* ``per_sample.jsonl``: one JSON object per input row, in input order — the format other tools (comparison tables,
  bootstrap CIs) read; ``per_sample.csv`` holds the same with label vectors as 14-character 0/1 strings:

  | field                  | type              | meaning                                                         |
  |------------------------|-------------------|-----------------------------------------------------------------|
  | id                     | str               | the row id                                                      |
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from verl_ext.metrics.aggregate import TABLE_COLUMNS, format_table, table_from_per_sample

logger = logging.getLogger(__name__)

METRICS = ("chexbert", "radgraph", "ratescore", "green")


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
    """Rows scored per chunk (each chunk batches every model over its unique texts)."""


@dataclass
class EvalResult:
    table: dict
    per_sample: list[dict]
    notes: list[str] = field(default_factory=list)


def read_records(path: str) -> list[dict]:
    """The rows of an ``--input`` file as dicts: .jsonl, .json (a list), .csv or .parquet (through pandas)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    if suffix == ".json":
        return json.loads(p.read_text())
    if suffix == ".csv":
        with open(p, newline="") as f:
            return list(csv.DictReader(f))
    if suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(p).to_dict(orient="records")
    raise ValueError(f"--input {path!r}: expected .jsonl, .json, .csv or .parquet")


def read_rows(
    path: str, id_col: str = "id", generated_col: str = "generated", reference_col: str = "reference"
) -> list[dict]:
    """Rows ``{"id", "generated", "reference"}`` from .jsonl/.json/.csv/.parquet."""
    raw = read_records(path)
    rows = []
    for k, r in enumerate(raw):
        missing = [c for c in (generated_col, reference_col) if c not in r]
        if missing:
            raise ValueError(
                f"{path}: row {k} lacks column(s) {missing} (have {sorted(r)}); see --generated-col/--reference-col"
            )
        gen = r[generated_col]
        ref = r[reference_col]
        rows.append(
            {
                "id": str(r.get(id_col, k)),
                "generated": "" if gen is None or (isinstance(gen, float) and gen != gen) else str(gen),
                "reference": "" if ref is None or (isinstance(ref, float) and ref != ref) else str(ref),
            }
        )
    return rows


def evaluate(rows: Sequence[dict], config: EvalConfig, scorer: Any = None, green_scorer: Any = None) -> EvalResult:
    """Score ``rows`` (dicts with id, generated, reference). ``scorer``: a ``ClinicalScorer`` to reuse (else built
    from ``config.models``); ``green_scorer``: a ``GreenScorer`` to use instead of building one."""
    from verl_ext.clinical.scorer import ClinicalScorer, ClinicalScorerConfig
    from verl_ext.metrics.chexbert import binarize, sample_micro_f1
    from verl_ext.metrics.radgraph import radgraph_f1_all

    unknown = set(config.skip) - set(METRICS)
    if unknown:
        raise ValueError(f"skip: unknown metrics {sorted(unknown)}; choose from {METRICS}")
    notes: list[str] = []
    empty_refs = [r["id"] for r in rows if not r["reference"].strip()]
    if empty_refs:
        raise ValueError(
            f"{len(empty_refs)} row(s) have an empty reference (first ids: {empty_refs[:5]}); fix the input"
        )
    if scorer is None:
        scorer = ClinicalScorer(ClinicalScorerConfig.from_dict({"models": config.models, "device": config.device}))
    records = [{"id": r["id"], "generated": r["generated"], "reference": r["reference"]} for r in rows]
    step = max(1, int(config.batch_size))
    for s in range(0, len(records), step):
        chunk = records[s : s + step]
        gens = [r["generated"] for r in chunk]
        refs = [r["reference"] for r in chunk]
        texts = list(dict.fromkeys([t for t in gens if t.strip()] + refs))
        if "chexbert" not in config.skip:
            # as f1chexbert: an empty generated report is labelled too (the model sees "[CLS] [SEP]")
            all_texts = list(dict.fromkeys(gens + refs))
            labels = dict(
                zip(all_texts, binarize(scorer.chexbert_classes(all_texts), uncertain=config.chexbert_uncertain))
            )
            for r in chunk:
                g = labels[r["generated"]].tolist()
                r["chexbert_generated"] = g
                r["chexbert_reference"] = labels[r["reference"]].tolist()
                r["chexbert_micro_f1_14"] = sample_micro_f1(g, r["chexbert_reference"])
        if "radgraph" not in config.skip:
            anns = dict(zip(texts, scorer.radgraph_annotations(texts)))
            for r in chunk:
                if r["generated"].strip():
                    simple, partial, complete = radgraph_f1_all(
                        anns[r["generated"]], anns[r["reference"]], config.radgraph_lowercase
                    )
                else:
                    simple = partial = complete = 0.0
                r["radgraph_f1"], r["radgraph_f1_simple"], r["radgraph_f1_complete"] = partial, simple, complete
        if "ratescore" not in config.skip:
            analyses, _ = scorer.rate_analyses(texts)
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
                    r["ratescore"], r["ratescore_status"] = scorer.rate.ratescore(an[r["generated"]], ref_a), "ok"
    if "ratescore" not in config.skip:
        bad = sum(1 for r in records if r["ratescore_status"] == "reference_without_entities")
        if bad:
            notes.append(f"RaTE: {bad} reference(s) without RaTE entities were not scored")
    if "green" not in config.skip:
        _run_green(records, config, green_scorer, notes)
    table = table_from_per_sample(records)
    if table["green"] is None and "green" not in config.skip and not any("GREEN" in n for n in notes):
        notes.append("GREEN: no sample could be scored")
    return EvalResult(table=table, per_sample=records, notes=notes)


def _run_green(records: list[dict], config: EvalConfig, green_scorer: Any, notes: list[str]) -> None:
    from verl_ext.clinical.green import GreenScorer

    if green_scorer is None:
        ok, why = GreenScorer.availability(config.green_model)
        if not ok:
            notes.append(f"GREEN skipped: {why}")
            for r in records:
                r["green"], r["green_status"] = None, "skipped"
            return
        green_scorer = GreenScorer(config.green_model, max_length=config.green_max_length)
    results = green_scorer.score([r["reference"] for r in records], [r["generated"] for r in records])
    unparsed = 0
    for r, g in zip(records, results):
        r["green"] = g.score
        r["green_status"] = "ok" if g.parsed else "unparseable"
        unparsed += not g.parsed
    if unparsed:
        notes.append(f"GREEN: {unparsed} completion(s) could not be parsed and were left out of the mean")


def write_outputs(result: EvalResult, out_dir: str) -> dict[str, str]:
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
    with open(paths["per_sample_jsonl"], "w") as f:
        for r in result.per_sample:
            f.write(json.dumps(r) + "\n")
    fields_: list[str] = []
    for r in result.per_sample:
        for k in r:
            if k not in fields_:
                fields_.append(k)
    with open(paths["per_sample_csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields_)
        w.writeheader()
        for r in result.per_sample:
            w.writerow({k: ("".join(map(str, v)) if isinstance(v, list) else v) for k, v in r.items()})
    return {k: str(v) for k, v in paths.items()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m verl_ext.eval.evaluate",
        description="Score generated radiology reports against references: CheXbert Micro/Macro-F1-14 and -5, "
        "RadGraph F1, RaTEScore, GREEN and their average (the paper's Table 1), with per-sample scores.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--input", required=True, help="rows file: .jsonl, .json, .csv or .parquet")
    p.add_argument("--out", required=True, help="output directory (table.json, table.csv, per_sample.jsonl/.csv)")
    p.add_argument("--id-col", default="id")
    p.add_argument("--generated-col", default="generated")
    p.add_argument("--reference-col", default="reference")
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
        "--radgraph-model-type", default="radgraph-xl", choices=["radgraph", "radgraph-xl", "modern-radgraph-xl"]
    )
    g.add_argument("--green-model", help="GREEN model directory (StanfordAIMI/GREEN-radllama2-7b); needs vLLM + CUDA")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--skip", default="", help="comma-separated metrics to skip: chexbert,radgraph,ratescore,green")
    p.add_argument(
        "--radgraph-lowercase",
        action="store_true",
        help="compare RadGraph tokens lower-cased (upstream fix after 0.1.18)",
    )
    p.add_argument("--chexbert-uncertain", default="positive", choices=["positive", "negative"])
    p.add_argument("--batch-size", type=int, default=256, help="rows per scoring chunk")
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
    rows = read_rows(args.input, args.id_col, args.generated_col, args.reference_col)
    result = evaluate(rows, cfg)
    paths = write_outputs(result, args.out)
    print(format_table(result.table))
    for note in result.notes:
        print(f"note: {note}")
    print(f"n={result.table['n']}  wrote {', '.join(paths.values())}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
