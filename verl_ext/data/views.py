"""View labels: normalisation of each dataset's spelling, frontal/lateral classes, prompt wording and image order.

Canonical labels (what `extra_info.view_positions` holds):

* frontal: ``PA``, ``AP``, and ``FRONTAL`` when a dataset says only "frontal" (IU-Xray, PadChest-GR);
* lateral: ``LATERAL``, ``LL``;
* anything else keeps its upper-cased label (``AP AXIAL``, ``SWIMMERS``, ``DECUBITUS`` ...), and a missing or
  meaningless label becomes ``UNKNOWN``.

Sources: MIT-LCP's ``VIEW_MAP`` (frontal = PA, AP; lateral = LATERAL, LL), ReXGradient's ``POSTERO_ANTERIOR`` /
``ANTERO_POSTERIOR`` spellings, MIMIC's ``ViewCodeSequence_CodeMeaning`` strings (``postero-anterior``, ``lateral``
...) used as a fallback for a missing ``ViewPosition`` (datasets.md §2.3, §3.2).
"""
from __future__ import annotations

import math

FRONTAL = "frontal"
LATERAL = "lateral"
OTHER = "other"

FRONTAL_VIEWS = ("PA", "AP", "FRONTAL")
LATERAL_VIEWS = ("LATERAL", "LL")

_ALIASES = {
    "POSTERO_ANTERIOR": "PA",
    "POSTERO-ANTERIOR": "PA",
    "POSTEROANTERIOR": "PA",
    "ANTERO_POSTERIOR": "AP",
    "ANTERO-POSTERIOR": "AP",
    "ANTEROPOSTERIOR": "AP",
    "LAT": "LATERAL",
    "LEFT LATERAL": "LL",
    "LEFT_LATERAL": "LL",
    "FRONT": "FRONTAL",
    "": "UNKNOWN",
    "NAN": "UNKNOWN",
    "NONE": "UNKNOWN",
    "NULL": "UNKNOWN",
}

# Rank inside a view class (lower first): PA before AP, LATERAL before LL (CheXagent's order, datasets.md §2.3).
_RANK = {"PA": 0, "AP": 1, "FRONTAL": 2, "LATERAL": 0, "LL": 1}

# How a canonical label is named in the prompt ("the current PA image", "the prior lateral image").
_PROMPT_NAMES = {"PA": "PA", "AP": "AP", "FRONTAL": "frontal", "LATERAL": "lateral", "LL": "left lateral",
                 "UNKNOWN": ""}


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def normalize_view(value, fallback=None) -> str:
    """Canonical label of a raw view value; `fallback` (e.g. MIMIC's ViewCodeSequence_CodeMeaning) is used when
    `value` is missing or unknown."""
    label = "UNKNOWN" if _is_missing(value) else " ".join(str(value).strip().upper().split())
    label = _ALIASES.get(label, label)
    if label == "UNKNOWN" and not _is_missing(fallback):
        label = normalize_view(fallback)
    return label


def view_class(label: str) -> str:
    """``frontal``, ``lateral`` or ``other`` for a canonical label."""
    if label in FRONTAL_VIEWS:
        return FRONTAL
    if label in LATERAL_VIEWS:
        return LATERAL
    return OTHER


def view_rank(label: str) -> int:
    """Order inside a class: PA < AP < FRONTAL, LATERAL < LL, then anything else."""
    return _RANK.get(label, 9)


def prompt_view_name(label: str) -> str:
    """The words used for a view in the prompt: "PA", "lateral", "AP axial"; "" when unknown."""
    if label in _PROMPT_NAMES:
        return _PROMPT_NAMES[label]
    return label.replace("_", " ").lower().replace("ap ", "AP ").replace("pa ", "PA ")
