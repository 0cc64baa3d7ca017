"""Example-based CheXpert-label precision / recall / F1: the clinical-efficacy (CE) columns of the MambaXray-VL
line of work (CXPMRG-Bench, Wang et al., 2024) that OraPO reports (its CheXpert Plus F1 0.341, P 0.237, R 0.832).

Per study i with binary labels over the 14 conditions (generated y^, reference y):
``P_i = TP_i / (TP_i + FP_i)``, ``R_i = TP_i / (TP_i + FN_i)``, ``F1_i = 2 TP_i / (2 TP_i + FP_i + FN_i)``, each 0
when its denominator is 0; the corpus values are the means over studies. This is the "example-based" variant of the
R2Gen-family ``compute_ce`` evaluation (that the reported F1 differs from the harmonic mean of the reported P and R
fits an average of per-study values, not a micro average). Differences to the published numbers can come from the
labeler: here the project's CheXbert labels (uncertain = positive by default), which may not be how those papers
binarised CheXpert's uncertain label.

The same definition is PromptMRG's example-based CE (``tp / (tp + (fp + fn) / 2)`` is this F1) that DEER reports:
``verl_ext.metrics.deer.ce_scores(mode="example")`` and the bootstrap of ``verl_ext.eval`` both call this module.
"""
from __future__ import annotations

import numpy as np

from verl_ext.metrics.chexbert import CONDITIONS

CE_METRICS: tuple[str, ...] = ("chexbert_ce_precision", "chexbert_ce_recall", "chexbert_ce_f1")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def example_based_prf(hyp, ref) -> dict[str, np.ndarray]:
    """Per-study P, R, F1 (each an ``(n,)`` array) from binary ``[n, 14]`` label arrays."""
    h = np.asarray(hyp, dtype=np.int64)
    r = np.asarray(ref, dtype=np.int64)
    if h.shape != r.shape or h.ndim != 2 or h.shape[1] != len(CONDITIONS):
        raise ValueError(f"expected two [n, 14] label arrays, got {h.shape} and {r.shape}")
    if not (np.isin(h, (0, 1)).all() and np.isin(r, (0, 1)).all()):
        raise ValueError("labels must be binary 0/1")
    tp = ((h == 1) & (r == 1)).sum(1).astype(np.float64)
    fp = ((h == 1) & (r == 0)).sum(1).astype(np.float64)
    fn = ((h == 0) & (r == 1)).sum(1).astype(np.float64)
    return {
        "chexbert_ce_precision": _ratio(tp, tp + fp),
        "chexbert_ce_recall": _ratio(tp, tp + fn),
        "chexbert_ce_f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def clinical_efficacy(hyp, ref) -> dict[str, float]:
    """Corpus CE precision, recall and F1 (means of the per-study values)."""
    return {k: float(v.mean()) if v.size else 0.0 for k, v in example_based_prf(hyp, ref).items()}
