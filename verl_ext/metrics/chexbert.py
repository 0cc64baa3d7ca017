"""CheXbert F1s from label vectors (pure numpy; no model).

Conventions (those of f1chexbert 0.0.2 / RadEval, the "official" implementation the paper cites):

* The 14 conditions, in CheXbert's head order: ``CONDITIONS``. The 5-class subset ``CONDITIONS_5`` = Atelectasis,
  Cardiomegaly, Consolidation, Edema, Pleural Effusion, taken in the order of the 14 (f1chexbert's
  ``np.where(np.isin(target_names, target_names_5))``): indices ``INDEX_5 = (1, 4, 5, 7, 9)``.
* Binarisation ("rrg" mode): positive (1) and uncertain (3) -> 1; negative (2) and blank (0) -> 0. "No Finding" is one
  of the 14 (its head has only blank/positive). ``binarize(..., uncertain="negative")`` gives the stricter variant.
* Corpus F1s = sklearn ``classification_report`` "micro avg" / "macro avg" f1-score over the binary columns, with
  ``zero_division=0``: a class with no true and no predicted positive has F1 0 and still counts in the macro mean.
  Computed here as ``F1 = 2tp / (2tp + fp + fn)`` (0 when the denominator is 0), which is the same number.
* Per-sample micro-F1-14 (the reward): the same formula over one pair's 14 labels; both vectors all-zero gives 0
  (what the authors' per-pair ``classification_report`` gives).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

CONDITIONS: tuple[str, ...] = (
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
    "No Finding",
)
CONDITIONS_5: tuple[str, ...] = ("Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion")
INDEX_5: tuple[int, ...] = tuple(i for i, c in enumerate(CONDITIONS) if c in CONDITIONS_5)

BLANK, POSITIVE, NEGATIVE, UNCERTAIN = 0, 1, 2, 3


def binarize(classes, uncertain: str = "positive") -> np.ndarray:
    """Raw CheXbert classes (0 blank, 1 pos, 2 neg, 3 uncertain) -> binary labels; ``uncertain`` in
    {"positive", "negative"}."""
    c = np.asarray(classes, dtype=np.int64)
    if uncertain == "positive":
        return ((c == POSITIVE) | (c == UNCERTAIN)).astype(np.int64)
    if uncertain == "negative":
        return (c == POSITIVE).astype(np.int64)
    raise ValueError(f"uncertain={uncertain!r}: expected 'positive' or 'negative'")


def _f1(tp, fp, fn) -> np.ndarray:
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    den = 2 * tp + fp + fn
    return np.divide(2 * tp, den, out=np.zeros_like(den), where=den > 0)


def _check(hyp, ref) -> tuple[np.ndarray, np.ndarray]:
    h = np.asarray(hyp, dtype=np.int64)
    r = np.asarray(ref, dtype=np.int64)
    if h.shape != r.shape:
        raise ValueError(f"label arrays differ in shape: hyp {h.shape} vs ref {r.shape}")
    if h.size and not np.isin(h, (0, 1)).all() or r.size and not np.isin(r, (0, 1)).all():
        raise ValueError("labels must be binary (0/1); binarize raw CheXbert classes first")
    return h, r


def sample_micro_f1(hyp: Sequence[int], ref: Sequence[int]) -> float:
    """Micro-F1 of one pair of binary label vectors (``2tp / (2tp + fp + fn)``; 0 when both are all-zero)."""
    h, r = _check(hyp, ref)
    tp = int(((h == 1) & (r == 1)).sum())
    fp = int(((h == 1) & (r == 0)).sum())
    fn = int(((h == 0) & (r == 1)).sum())
    return float(_f1(tp, fp, fn))


def sample_micro_f1_batch(hyp, ref) -> np.ndarray:
    """``sample_micro_f1`` for each row of ``[n, k]`` arrays."""
    h, r = _check(hyp, ref)
    tp = ((h == 1) & (r == 1)).sum(axis=1)
    fp = ((h == 1) & (r == 0)).sum(axis=1)
    fn = ((h == 0) & (r == 1)).sum(axis=1)
    return _f1(tp, fp, fn)


def corpus_f1(hyp, ref, columns: Sequence[int] | None = None) -> dict:
    """Corpus micro/macro F1 over binary columns (all, or ``columns``) of ``[n, k]`` arrays, plus per-class F1."""
    h, r = _check(hyp, ref)
    if h.ndim != 2:
        raise ValueError(f"expected [n, k] label arrays, got shape {h.shape}")
    if columns is not None:
        h, r = h[:, list(columns)], r[:, list(columns)]
    tp = ((h == 1) & (r == 1)).sum(axis=0)
    fp = ((h == 1) & (r == 0)).sum(axis=0)
    fn = ((h == 0) & (r == 1)).sum(axis=0)
    per_class = _f1(tp, fp, fn)
    return {
        "micro_f1": float(_f1(tp.sum(), fp.sum(), fn.sum())),
        "macro_f1": float(per_class.mean()) if per_class.size else 0.0,
        "per_class_f1": per_class.tolist(),
        "support": r.sum(axis=0).tolist(),
    }


def chexbert_scores(hyp, ref) -> dict:
    """The paper's four CheXbert columns from binary ``[n, 14]`` label arrays."""
    all14 = corpus_f1(hyp, ref)
    five = corpus_f1(hyp, ref, INDEX_5)
    return {
        "chexbert_micro_f1_14": all14["micro_f1"],
        "chexbert_macro_f1_14": all14["macro_f1"],
        "chexbert_micro_f1_5": five["micro_f1"],
        "chexbert_macro_f1_5": five["macro_f1"],
    }


def class_frequencies(ref) -> dict[str, float]:
    """Positive rate of each of the 14 conditions in binary reference labels ``[n, 14]``."""
    r = np.asarray(ref, dtype=np.int64)
    if r.ndim != 2 or r.shape[1] != len(CONDITIONS) or len(r) == 0:
        raise ValueError(f"expected non-empty [n, 14] binary labels, got shape {r.shape}")
    return {c: float(v) for c, v in zip(CONDITIONS, r.mean(axis=0))}


def inverse_frequency_reward(hyp: Sequence[int], ref: Sequence[int], frequencies: dict[str, float]) -> float:
    """The inverse-frequency CheXbert reward ("IF", paper Fig. 3), per pair, as the authors' ``WeightedCheXbert``:

    for each condition c with training prevalence f_c, the weights 1/f_c and 1/(1-f_c) normalised to sum to 1 give
    ``w_pos = 1 - f_c`` and ``w_neg = f_c``; the class term is
    ``(w_pos * [y=1 and y^=1] + w_neg * [y=0 and y^=0]) / 2``;
    the reward is the mean over the 14 conditions (in [0, 0.5]). A rare finding detected earns almost 0.5/14, a
    correct "absent" on it almost nothing. f_c = 0 or 1 gives that side weight 0 (the authors' convention).
    """
    h, r = _check(hyp, ref)
    if h.shape != (len(CONDITIONS),):
        raise ValueError(f"expected 14 labels, got shape {h.shape}")
    missing = [c for c in CONDITIONS if c not in frequencies]
    if missing:
        raise ValueError(
            f"class frequencies lack {missing}; compute them with python -m verl_ext.reward.class_frequencies"
        )
    total = 0.0
    for i, c in enumerate(CONDITIONS):
        f = float(frequencies[c])
        pos_w = 1.0 / f if f > 0 else 0.0
        neg_w = 1.0 / (1.0 - f) if f < 1 else 0.0
        s = pos_w + neg_w
        if s > 0:
            pos_w, neg_w = pos_w / s, neg_w / s
        pos_correct = 1.0 if (r[i] == 1 and h[i] == 1) else 0.0
        neg_correct = 1.0 if (r[i] == 0 and h[i] == 0) else 0.0
        total += (pos_correct * pos_w + neg_correct * neg_w) / 2
    return total / len(CONDITIONS)
