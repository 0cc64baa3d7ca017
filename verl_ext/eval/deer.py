"""DEER's Table 1-3 evaluation (arXiv 2603.04022, Sec. 4 "Evaluation Metrics") from generated reports.

    python -m verl_ext.eval.deer --input gen.jsonl --chexbert-checkpoint chexbert.pth --chexbert-bert bert-base-uncased \\
        --out DIR [--ce macro] [--radgraph-cache DIR] [--green-model DIR] [--nlg-tokenization words]

Protocol: CE P/R/F1 on CheXbert labels (positive = class 1, PromptMRG's ``label == 1``; ``--ce example`` for
MIMIC-CXR / IU-Xray as PromptMRG, ``--ce macro`` for CheXpert Plus as MambaXray-VL), BLEU-4 / METEOR / ROUGE-L with
pycocoevalcap on R2Gen-cleaned text (``verl_ext.metrics.deer``), and the two model metrics of Table 1: RadGraph F1
(``RG``, with ``--radgraph-cache``: the partial level RG_ER, radgraph as released, i.e. case-sensitive) and GREEN
(``GN``, with ``--green-model``: needs vLLM and a GPU), computed by ``verl_ext.eval.evaluate``. Rows:
``verl_ext.eval.generate``'s JSON lines (``generated``, ``reference``). Writes ``deer_table.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from verl_ext.help_format import HelpFormatter
from verl_ext.metrics.deer import CE_MODES, COLUMNS, TOKENIZATIONS, deer_columns
from verl_ext.metrics.meteor import DEFAULT_TIMEOUT_S, require_java

HEADERS = {"ce_precision": "P", "ce_recall": "R", "ce_f1": "F1", "bleu4": "B-4", "meteor": "MTR", "rouge_l": "R-L",
           "radgraph_f1": "RG", "green": "GN"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m verl_ext.eval.deer", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--input", required=True, help="JSON lines with generated and reference (verl_ext.eval.generate)")
    p.add_argument("--chexbert-checkpoint", required=True)
    p.add_argument("--chexbert-bert", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ce", choices=CE_MODES, default="example",
                   help="example (MIMIC-CXR, IU-Xray; PromptMRG) or macro (CheXpert Plus; MambaXray-VL) "
                        "(default %(default)s)")
    p.add_argument("--nlg-tokenization", choices=TOKENIZATIONS, default="r2gen",
                   help="r2gen: R2Gen's report cleaning (punctuation stripped, lower-cased), as the RRG papers; "
                        "words: punctuation marks kept as tokens (default %(default)s)")
    p.add_argument("--radgraph-cache", help="radgraph model_cache_dir: adds the RadGraph F1 column (RG)")
    p.add_argument("--radgraph-model-type", default="radgraph-xl",
                   choices=["radgraph", "radgraph-xl", "modern-radgraph-xl"], help="(default %(default)s)")
    p.add_argument("--green-model", help="GREEN model directory: adds the GREEN column (GN); needs vLLM + CUDA")
    p.add_argument("--device", default="auto", help="(default %(default)s)")
    p.add_argument("--meteor-timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help="seconds METEOR's Java process may take before it is stopped (default %(default)s)")
    return p


def model_columns(rows: list[dict], radgraph_cache: Optional[str], radgraph_model_type: str,
                  green_model: Optional[str], device: str) -> tuple[dict, list[str]]:
    """RadGraph F1 and GREEN through ``verl_ext.eval.evaluate`` (only those asked for); (columns, notes)."""
    if not radgraph_cache and not green_model:
        return {}, []
    from verl_ext.eval.evaluate import EvalConfig, evaluate

    skip = ("chexbert", "ratescore") + (() if radgraph_cache else ("radgraph",)) + (() if green_model else ("green",))
    models = {"radgraph_cache": radgraph_cache, "radgraph_model_type": radgraph_model_type} if radgraph_cache else {}
    records = [{"id": str(i), "generated": r["generated"], "reference": r["reference"]} for i, r in enumerate(rows)]
    result = evaluate(records, EvalConfig(models=models, device=device, skip=skip, green_model=green_model))
    cols = {}
    if radgraph_cache:
        cols["radgraph_f1"] = result.table["radgraph_f1"]
    if green_model:
        cols["green"] = result.table["green"]
    return cols, list(result.notes)


def main(argv: Optional[list[str]] = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    from verl_ext.clinical.chexbert import CheXbertLabeler

    rows = [json.loads(line) for line in Path(a.input).read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [i for i, r in enumerate(rows) if not isinstance(r.get("generated"), str)
           or not isinstance(r.get("reference"), str) or not r["reference"].strip()]
    if bad:
        p.error(f"{len(bad)} rows lack a generated text or a non-empty reference (first: line {bad[0] + 1})")
    try:
        require_java()  # before CheXbert labels the whole file
    except RuntimeError as exc:
        p.error(str(exc))
    labeler = CheXbertLabeler(a.chexbert_checkpoint, a.chexbert_bert, device=a.device)
    gen, ref = [r["generated"] for r in rows], [r["reference"] for r in rows]
    table = deer_columns(gen, ref, labeler.labels(gen, "negative"), labeler.labels(ref, "negative"), ce=a.ce,
                         meteor_timeout_s=a.meteor_timeout, tokenization=a.nlg_tokenization)
    extra, notes = model_columns(rows, a.radgraph_cache, a.radgraph_model_type, a.green_model, a.device)
    table.update(extra)
    table["protocol"] = {"ce": a.ce, "nlg_tokenization": a.nlg_tokenization, "notes": notes}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "deer_table.json").write_text(json.dumps(table, indent=2) + "\n")
    cols = [c for c in (*COLUMNS, "radgraph_f1", "green") if c in table]
    cells = ["-" if table[c] is None else f"{table[c]:.3f}" for c in cols]
    md = ("| " + " | ".join(HEADERS[c] for c in cols) + " |\n|" + "---|" * len(cols) + "\n| " + " | ".join(cells)
          + " |\n")
    (out / "deer_table.md").write_text(md)
    print(md, end="")
    print(f"CE {a.ce}, NLG text {a.nlg_tokenization}, n={int(table['n'])}")
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
