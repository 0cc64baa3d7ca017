"""DEER's evaluation columns (arXiv 2603.04022, Sec. 4 "Evaluation Metrics"; Tables 1-3).

* CE metrics on CheXbert labels (positive = class 1, as PromptMRG's ``label == 1``):
  - MIMIC-CXR and IU-Xray: PromptMRG's **example-based** precision, recall and F1 — per report
    ``tp / (tp + fp)``, ``tp / (tp + fn)``, ``tp / (tp + (fp + fn) / 2)`` over the 14 labels (0 when undefined),
    averaged over reports: scikit-learn's ``precision_recall_fscore_support(average="samples", zero_division=0)``;
  - CheXpert Plus: MambaXray-VL's **macro** P/R/F1 over the 14 labels (``average="macro"``, ``zero_division=0``).
* NLG metrics, as the R2Gen line of work (PromptMRG included) computes them: corpus BLEU-4 (uniform weights, no
  smoothing), METEOR and ROUGE-L of ``pycocoevalcap`` when it is installed (Java METEOR 1.5), otherwise BLEU-4 and
  ROUGE-L from ``nltk`` / ``rouge-score`` and METEOR reported as missing — never silently replaced by another metric.
  Tokenisation: lower-cased words and punctuation marks (``verl_ext.metrics.bleu.tokenize``).

``deer_columns(generated, references, gen_labels, ref_labels, ce="example")`` returns the columns as a dict;
``python -m verl_ext.metrics.deer --input gen.jsonl --chexbert-checkpoint ... --chexbert-bert ... --out DIR
[--ce macro]`` labels ``verl_ext.eval.generate``'s rows with CheXbert and writes ``deer_table.json`` / ``.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

CE_MODES = ("example", "macro")
COLUMNS = ("ce_precision", "ce_recall", "ce_f1", "bleu4", "meteor", "rouge_l")


def ce_scores(gen_labels, ref_labels, mode: str = "example") -> dict[str, float]:
    """Precision, recall and F1 on binary ``[n, 14]`` CheXbert labels (``mode``: "example" or "macro")."""
    from sklearn.metrics import precision_recall_fscore_support

    if mode not in CE_MODES:
        raise ValueError(f"mode={mode!r}: expected one of {CE_MODES}")
    h, r = np.asarray(gen_labels, dtype=np.int64), np.asarray(ref_labels, dtype=np.int64)
    if h.shape != r.shape or h.ndim != 2:
        raise ValueError(f"label arrays must both be [n, k]; got {h.shape} and {r.shape}")
    p, rec, f1, _ = precision_recall_fscore_support(r, h, average="samples" if mode == "example" else "macro",
                                                    zero_division=0)
    return {"ce_precision": float(p), "ce_recall": float(rec), "ce_f1": float(f1)}


def nlg_scores(generated: Sequence[str], references: Sequence[str]) -> dict[str, Optional[float]]:
    """Corpus BLEU-4, METEOR and ROUGE-L (see the module docstring for which implementation)."""
    from verl_ext.metrics.bleu import tokenize

    if len(generated) != len(references):
        raise ValueError(f"{len(generated)} generated but {len(references)} references")
    hyp = [" ".join(tokenize(t)) for t in generated]
    ref = [" ".join(tokenize(t)) for t in references]
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.meteor.meteor import Meteor
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError:
        return _nlg_without_coco(hyp, ref)
    gts = {i: [r] for i, r in enumerate(ref)}
    res = {i: [h] for i, h in enumerate(hyp)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor, _ = Meteor().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    return {"bleu4": float(bleu[3]), "meteor": float(meteor), "rouge_l": float(rouge)}


def _nlg_without_coco(hyp: list[str], ref: list[str]) -> dict[str, Optional[float]]:
    from nltk.translate.bleu_score import corpus_bleu

    bleu4 = corpus_bleu([[r.split()] for r in ref], [h.split() for h in hyp], weights=(0.25,) * 4)
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        rouge_l = None
    else:
        scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_SplitTokenizer())
        rouge_l = float(np.mean([scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyp, ref)])) if hyp else 0.0
    return {"bleu4": float(bleu4), "meteor": None, "rouge_l": rouge_l}


class _SplitTokenizer:
    """rouge-score tokenizer for text already tokenised by `verl_ext.metrics.bleu.tokenize`."""

    def tokenize(self, text: str) -> list[str]:
        return text.split()


def deer_columns(generated: Sequence[str], references: Sequence[str], gen_labels, ref_labels,
                 ce: str = "example") -> dict[str, Optional[float]]:
    """All DEER columns; ``ce="macro"`` for CheXpert Plus (Table 2), "example" for MIMIC-CXR / IU-Xray."""
    out: dict[str, Optional[float]] = dict(ce_scores(gen_labels, ref_labels, ce))
    out.update(nlg_scores(generated, references))
    out["n"] = float(len(generated))
    return out


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m verl_ext.metrics.deer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="JSON lines with generated and reference (verl_ext.eval.generate)")
    p.add_argument("--chexbert-checkpoint", required=True)
    p.add_argument("--chexbert-bert", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ce", choices=CE_MODES, default="example",
                   help="example (MIMIC-CXR, IU-Xray; PromptMRG) or macro (CheXpert Plus; MambaXray-VL)")
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    from verl_ext.clinical.chexbert import CheXbertLabeler

    rows = [json.loads(line) for line in Path(a.input).read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [i for i, r in enumerate(rows) if not isinstance(r.get("generated"), str)
           or not isinstance(r.get("reference"), str) or not r["reference"].strip()]
    if bad:
        p.error(f"{len(bad)} rows lack a generated text or a non-empty reference (first: line {bad[0] + 1})")
    labeler = CheXbertLabeler(a.chexbert_checkpoint, a.chexbert_bert, device=a.device)
    gen, ref = [r["generated"] for r in rows], [r["reference"] for r in rows]
    table = deer_columns(gen, ref, labeler.labels(gen, "negative"), labeler.labels(ref, "negative"), ce=a.ce)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "deer_table.json").write_text(json.dumps(table, indent=2) + "\n")
    cells = ["-" if table[c] is None else f"{table[c]:.3f}" for c in COLUMNS]
    md = "| P | R | F1 | B-4 | MTR | R-L |\n|---|---|---|---|---|---|\n| " + " | ".join(cells) + " |\n"
    (out / "deer_table.md").write_text(md)
    print(md, end="")
    if table["meteor"] is None:
        print("METEOR not computed: install pycocoevalcap (Java METEOR 1.5) for the R2Gen-protocol NLG metrics")
    return 0


if __name__ == "__main__":
    sys.exit(main())
