"""Small helpers shared by the dataset readers: split names, text cleaning, plan-time tallies."""
from __future__ import annotations

import math
from collections import Counter, defaultdict

from verl_ext.data.pipeline import PROBLEM_REASONS, DataError, PrepConfig

# Official split spellings -> output split.
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validate": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}


def output_split(raw, cfg: PrepConfig) -> str | None:
    """`train` / `val` / `test` for an official split value (val becomes train under merge); None if unknown."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    split = SPLIT_ALIASES.get(str(raw).strip().lower())
    if split == "val" and cfg.merge_val_into_train:
        return "train"
    return split


def clean(value) -> str:
    """A text field as one line: None/NaN -> "", whitespace collapsed."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return " ".join(str(value).split())


class Tally:
    """Plan-time drops and notes per output split, with ``--strict`` enforcement."""

    def __init__(self, cfg: PrepConfig):
        self.cfg = cfg
        self.dropped: dict[str, Counter] = defaultdict(Counter)
        self.notes: dict[str, Counter] = defaultdict(Counter)
        self.input_studies: Counter = Counter()

    def study(self, split: str) -> None:
        """Count one input study of `split`."""
        self.input_studies[split] += 1

    def drop(self, split: str, reason: str, message: str = "") -> None:
        if self.cfg.strict and reason in PROBLEM_REASONS:
            raise DataError(message or reason)
        self.dropped[split][reason] += 1

    def note(self, split: str, reason: str, message: str = "", n: int = 1) -> None:
        if self.cfg.strict and reason in PROBLEM_REASONS:
            raise DataError(message or reason)
        self.notes[split][reason] += n
