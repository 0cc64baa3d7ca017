"""Training-set CheXbert class frequencies for the inverse-frequency reward (paper Fig. 3, "IF").

    python -m verl_ext.reward.class_frequencies --input data/mimic/train.parquet --out freqs.json \\
        --chexbert-checkpoint /models/chexbert.pth --chexbert-bert /models/bert-base-uncased

Reads the reference reports (``--column``; default ``reward_model.ground_truth``, the verl parquet layout, with
``reference`` and ``ground_truth`` tried next), labels them with CheXbert (uncertain = positive, as the reward), and
writes ``{"frequencies": {condition: positive rate}, "n": ..., "source": ..., "uncertain": ...}``. Pass the file as
``+reward.reward_kwargs.class_frequencies=freqs.json`` with the ``chexbert_inverse_frequency`` component.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from verl_ext.eval.evaluate import read_records
from verl_ext.help_format import HelpFormatter
from verl_ext.metrics.chexbert import class_frequencies


def _get(row: dict, dotted: str) -> Any:
    cur: Any = row
    for part in dotted.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return None
    return cur


def read_references(path: str, column: Optional[str] = None) -> list[str]:
    rows = read_records(path)
    candidates = [column] if column else ["reward_model.ground_truth", "reference", "ground_truth"]
    for col in candidates:
        values = [_get(r, col) for r in rows]
        if rows and all(isinstance(v, str) for v in values):
            return values
    raise ValueError(f"{path}: no text column among {candidates} in every row; pass --column")


def compute(
    references: list[str],
    checkpoint: str,
    bert_dir: str,
    device: str = "auto",
    uncertain: str = "positive",
    batch_size: int = 64,
) -> dict:
    from verl_ext.clinical.chexbert import CheXbertLabeler

    labeler = CheXbertLabeler(checkpoint, bert_dir, device=device, batch_size=batch_size)
    labels = labeler.labels(references, uncertain=uncertain)
    return {"frequencies": class_frequencies(labels), "n": len(references), "uncertain": uncertain}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m verl_ext.reward.class_frequencies", description=__doc__.split("\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--input", required=True, help="training rows: .parquet (verl layout), .jsonl, .json or .csv")
    p.add_argument("--out", required=True, help="output JSON")
    p.add_argument("--column", help="reference text column (dotted for nested: reward_model.ground_truth)")
    p.add_argument("--chexbert-checkpoint", required=True, help="chexbert.pth (StanfordAIMI/RRG_scorers)")
    p.add_argument("--chexbert-bert", required=True, help="bert-base-uncased tokenizer/config directory")
    p.add_argument("--device", default="auto", help="CheXbert device: auto, cpu, cuda, cuda:N")
    p.add_argument("--uncertain", default="positive", choices=["positive", "negative"],
                   help="CheXbert's uncertain label counts as positive or negative")
    p.add_argument("--batch-size", type=int, default=64, help="reports per CheXbert batch")
    args = p.parse_args(argv)
    refs = read_references(args.input, args.column)
    out = compute(refs, args.chexbert_checkpoint, args.chexbert_bert, args.device, args.uncertain, args.batch_size)
    out["source"] = str(args.input)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["frequencies"], indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
