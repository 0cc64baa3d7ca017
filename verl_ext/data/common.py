"""Small helpers shared by the dataset readers: split names, text cleaning, checked file reading, plan-time
tallies."""
from __future__ import annotations

import gzip
import json
import math
import os
import zipfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable

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


class InputError(ValueError):
    """A malformed input file (bad CSV, broken JSON, bad gzip/zip, missing column): one line naming the file."""


# What pandas, gzip, zipfile and json raise for a file that is not what its name says.
_READ_ERRORS = (OSError, EOFError, UnicodeDecodeError, zlib.error, zipfile.BadZipFile, gzip.BadGzipFile,
                ValueError)


def read_csv_checked(path: str | os.PathLike, required: Iterable[str] = (), **kwargs):
    """`pandas.read_csv` of `path` (compression from the suffix: ``.gz``, ``.zip`` ...) that raises `InputError`
    naming the file for unreadable content, an empty file or a missing required column."""
    import pandas as pd

    try:
        df = pd.read_csv(path, **kwargs)
    except FileNotFoundError:
        raise
    except pd.errors.EmptyDataError as e:
        raise InputError(f"{path}: empty file, expected a CSV with a header row") from e
    except pd.errors.ParserError as e:
        raise InputError(f"{path}: not a well-formed CSV ({' '.join(str(e).split())})") from e
    except _READ_ERRORS as e:
        raise InputError(f"{path}: cannot be read as {_kind(path)} ({type(e).__name__}: {e})") from e
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing required column(s) {', '.join(missing)} (has: "
                         f"{', '.join(map(str, df.columns[:12]))}{' ...' if len(df.columns) > 12 else ''})")
    return df


def _kind(path) -> str:
    name = str(path).lower()
    if name.endswith(".gz"):
        return "a gzip-compressed CSV"
    if name.endswith(".zip"):
        return "a zipped CSV"
    return "a UTF-8 CSV"


def read_json_checked(path: str | os.PathLike):
    """The parsed JSON of `path`; `InputError` naming the file and the position for broken JSON. NaN/Infinity
    literals (which some releases contain) are accepted and read as float NaN/inf."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: broken JSON at line {e.lineno} column {e.colno} ({e.msg})") from e
    except (UnicodeDecodeError, OSError) as e:
        raise InputError(f"{path}: cannot be read as UTF-8 JSON ({type(e).__name__}: {e})") from e


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
