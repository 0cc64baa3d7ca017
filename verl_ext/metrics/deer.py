"""DEER's evaluation columns (arXiv 2603.04022, Sec. 4 "Evaluation Metrics"; Tables 1-3).

* CE metrics on CheXbert labels (positive = class 1, as PromptMRG's ``label == 1``):
  - MIMIC-CXR and IU-Xray: PromptMRG's **example-based** precision, recall and F1 — per report
    ``tp / (tp + fp)``, ``tp / (tp + fn)``, ``tp / (tp + (fp + fn) / 2)`` over the 14 labels (0 when undefined),
    averaged over reports (``verl_ext.metrics.clinical_efficacy``, the same columns OraPO reports);
  - CheXpert Plus: MambaXray-VL's **macro** P/R/F1 over the 14 labels (scikit-learn's
    ``precision_recall_fscore_support(average="macro", zero_division=0)``).
* NLG metrics, as the R2Gen line of work (PromptMRG included) computes them with ``pycocoevalcap``: corpus BLEU-4
  (``Bleu(4)``, closest reference length), METEOR (``Meteor``: the bundled Java METEOR 1.5, run by
  ``verl_ext.metrics.meteor``; needs ``java`` on PATH, else a ``RuntimeError``) and ROUGE-L (``Rouge``, beta 1.2,
  mean over reports). Tokenisation: lower-cased words and punctuation marks (``verl_ext.metrics.bleu.tokenize``),
  joined by single spaces, as R2Gen feeds its decoded tokens.

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

from verl_ext.help_format import HelpFormatter
from verl_ext.metrics.clinical_efficacy import clinical_efficacy
from verl_ext.metrics.meteor import DEFAULT_TIMEOUT_S, meteor_scores, require_java

CE_MODES = ("example", "macro")
COLUMNS = ("ce_precision", "ce_recall", "ce_f1", "bleu4", "meteor", "rouge_l")


def ce_scores(gen_labels, ref_labels, mode: str = "example") -> dict[str, float]:
    """Precision, recall and F1 on binary ``[n, 14]`` CheXbert labels (``mode``: "example" or "macro")."""
    if mode not in CE_MODES:
        raise ValueError(f"mode={mode!r}: expected one of {CE_MODES}")
    if mode == "example":
        ce = clinical_efficacy(gen_labels, ref_labels)
        return {"ce_precision": ce["chexbert_ce_precision"], "ce_recall": ce["chexbert_ce_recall"],
                "ce_f1": ce["chexbert_ce_f1"]}
    from sklearn.metrics import precision_recall_fscore_support

    h, r = np.asarray(gen_labels, dtype=np.int64), np.asarray(ref_labels, dtype=np.int64)
    if h.shape != r.shape or h.ndim != 2:
        raise ValueError(f"label arrays must both be [n, k]; got {h.shape} and {r.shape}")
    p, rec, f1, _ = precision_recall_fscore_support(r, h, average="macro", zero_division=0)
    return {"ce_precision": float(p), "ce_recall": float(rec), "ce_f1": float(f1)}


def nlg_scores(generated: Sequence[str], references: Sequence[str],
               meteor_timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, float]:
    """Corpus BLEU-4, METEOR and ROUGE-L of pycocoevalcap (see the module docstring)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.rouge.rouge import Rouge

    from verl_ext.metrics.bleu import tokenize

    if len(generated) != len(references):
        raise ValueError(f"{len(generated)} generated but {len(references)} references")
    if not generated:
        raise ValueError("no reports to score")
    hyp = [" ".join(tokenize(t)) for t in generated]
    ref = [" ".join(tokenize(t)) for t in references]
    empty = [i for i, r in enumerate(ref) if not r]
    if empty:
        raise ValueError(f"{len(empty)} references have no words (first: row {empty[0]}); drop them before scoring")
    gts = {i: [r] for i, r in enumerate(ref)}
    res = {i: [h] for i, h in enumerate(hyp)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor, _ = meteor_scores(gts, res, timeout_s=meteor_timeout_s)
    rouge, _ = Rouge().compute_score(gts, res)
    return {"bleu4": float(bleu[3]), "meteor": meteor, "rouge_l": float(rouge)}


def deer_columns(generated: Sequence[str], references: Sequence[str], gen_labels, ref_labels,
                 ce: str = "example", meteor_timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, float]:
    """All DEER columns; ``ce="macro"`` for CheXpert Plus (Table 2), "example" for MIMIC-CXR / IU-Xray."""
    out = dict(ce_scores(gen_labels, ref_labels, ce))
    out.update(nlg_scores(generated, references, meteor_timeout_s))
    out["n"] = float(len(generated))
    return out


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m verl_ext.metrics.deer", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--input", required=True, help="JSON lines with generated and reference (verl_ext.eval.generate)")
    p.add_argument("--chexbert-checkpoint", required=True)
    p.add_argument("--chexbert-bert", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ce", choices=CE_MODES, default="example",
                   help="example (MIMIC-CXR, IU-Xray; PromptMRG) or macro (CheXpert Plus; MambaXray-VL)")
    p.add_argument("--device", default="auto", help="CheXbert device: auto, cpu, cuda, cuda:N")
    p.add_argument("--meteor-timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help="seconds METEOR's Java process may take before it is stopped")
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
                         meteor_timeout_s=a.meteor_timeout)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "deer_table.json").write_text(json.dumps(table, indent=2) + "\n")
    cells = [f"{table[c]:.3f}" for c in COLUMNS]
    md = "| P | R | F1 | B-4 | MTR | R-L |\n|---|---|---|---|---|---|\n| " + " | ".join(cells) + " |\n"
    (out / "deer_table.md").write_text(md)
    print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
