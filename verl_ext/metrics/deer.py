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
  mean over reports). Text (``tokenization``): "r2gen" (default) cleans both reports as R2Gen's tokenizer does
  (``verl_ext.metrics.r2gen_text``: lower-cased, punctuation stripped, " . " between sentences), the convention of
  the RRG papers' tables; "words" keeps every punctuation mark as a token (``verl_ext.metrics.bleu.tokenize``), so
  a comma more or less moves BLEU-4.

``deer_columns(generated, references, gen_labels, ref_labels, ce="example")`` returns the columns as a dict; the
command line (CheXbert labelling, optional RadGraph F1 and GREEN) is ``python -m verl_ext.eval.deer``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from verl_ext.metrics.clinical_efficacy import clinical_efficacy
from verl_ext.metrics.meteor import DEFAULT_TIMEOUT_S, meteor_scores

CE_MODES = ("example", "macro")
TOKENIZATIONS = ("r2gen", "words")
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


def nlg_text(report: str, tokenization: str = "r2gen") -> str:
    """``report`` as the NLG metrics read it: space-separated tokens (see the module docstring)."""
    if tokenization == "r2gen":
        from verl_ext.metrics.r2gen_text import r2gen_clean

        return " ".join(r2gen_clean(report).split())
    if tokenization == "words":
        from verl_ext.metrics.bleu import tokenize

        return " ".join(tokenize(report))
    raise ValueError(f"tokenization={tokenization!r}: expected one of {TOKENIZATIONS}")


def nlg_scores(generated: Sequence[str], references: Sequence[str], meteor_timeout_s: float = DEFAULT_TIMEOUT_S,
               tokenization: str = "r2gen") -> dict[str, float]:
    """Corpus BLEU-4, METEOR and ROUGE-L of pycocoevalcap (see the module docstring)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.rouge.rouge import Rouge

    if len(generated) != len(references):
        raise ValueError(f"{len(generated)} generated but {len(references)} references")
    if not generated:
        raise ValueError("no reports to score")
    hyp = [nlg_text(t, tokenization) for t in generated]
    ref = [nlg_text(t, tokenization) for t in references]
    empty = [i for i, r in enumerate(ref) if not r.strip(" .")]
    if empty:
        raise ValueError(f"{len(empty)} references have no words (first: row {empty[0]}); drop them before scoring")
    gts = {i: [r] for i, r in enumerate(ref)}
    res = {i: [h] for i, h in enumerate(hyp)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor, _ = meteor_scores(gts, res, timeout_s=meteor_timeout_s)
    rouge, _ = Rouge().compute_score(gts, res)
    return {"bleu4": float(bleu[3]), "meteor": meteor, "rouge_l": float(rouge)}


def deer_columns(generated: Sequence[str], references: Sequence[str], gen_labels, ref_labels,
                 ce: str = "example", meteor_timeout_s: float = DEFAULT_TIMEOUT_S,
                 tokenization: str = "r2gen") -> dict[str, float]:
    """All DEER columns; ``ce="macro"`` for CheXpert Plus (Table 2), "example" for MIMIC-CXR / IU-Xray."""
    out = dict(ce_scores(gen_labels, ref_labels, ce))
    out.update(nlg_scores(generated, references, meteor_timeout_s, tokenization))
    out["n"] = float(len(generated))
    return out
