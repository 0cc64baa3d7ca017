"""Small helpers shared by the dataset readers: split names, text cleaning, checked file reading, plan-time
tallies."""
from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import math
import os
import zipfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

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
    naming the file for unreadable content, an empty file, a file cut in the middle of a row (`truncation_problem`)
    or a missing required column."""
    import pandas as pd

    try:
        df = pd.read_csv(path, **kwargs)
        problem = truncation_problem(path)
    except FileNotFoundError:
        raise
    except pd.errors.EmptyDataError as e:
        raise InputError(f"{path}: empty file, expected a CSV with a header row") from e
    except pd.errors.ParserError as e:
        raise InputError(f"{path}: not a well-formed CSV ({' '.join(str(e).split())})") from e
    except _READ_ERRORS as e:
        raise InputError(f"{path}: cannot be read as {_kind(path)} ({type(e).__name__}: {e})") from e
    if problem:
        raise InputError(f"{path}: {problem}; the file is truncated (an interrupted download or copy?): fetch it "
                         "again")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing required column(s) {', '.join(missing)} (has: "
                         f"{', '.join(map(str, df.columns[:12]))}{' ...' if len(df.columns) > 12 else ''})")
    return df


def _open_decompressed(path: str | os.PathLike):
    """`path`'s bytes, decompressed as pandas infers it from the suffix (a ``.zip`` holds one CSV)."""
    name = str(path).lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    if name.endswith(".xz"):
        return lzma.open(path, "rb")
    if name.endswith(".zip"):
        archive = zipfile.ZipFile(path)
        members = [m for m in archive.namelist() if not m.endswith("/") and not m.startswith("__MACOSX/")]
        return archive.open(members[0])
    return open(path, "rb")


def truncation_problem(path: str | os.PathLike) -> str | None:
    """What shows that a CSV was cut off mid-row, or None. pandas reads such a file without complaint: the cut
    row's missing fields become NaN (a split of NaN, an empty report), so the damage would surface as drops or
    notes of the studies it holds. A file whose data ends without a line break is parsed with `csv` to count its
    last record's fields: fewer than the header's, or an open quoted field, means the file was cut. (A cut that
    falls exactly on a line break cannot be told from a shorter file.)"""
    with _open_decompressed(path) as f:
        last = b""
        for chunk in iter(lambda: f.read(1 << 20), b""):
            last = chunk
    if not last or last.endswith((b"\n", b"\r")):
        return None
    with _open_decompressed(path) as f:
        reader = csv.reader(io.TextIOWrapper(f, encoding="utf-8", newline=""), strict=True)
        header, record, line = None, None, 0
        try:
            for record in reader:
                header = record if header is None else header
                line = reader.line_num
        except csv.Error:
            return f"it ends inside a quoted field that starts at line {line + 1}"
    if header is not None and record is not None and len(record) < len(header):
        return (f"it ends in the middle of a row: line {line} has {len(record)} of the header's {len(header)} "
                "fields")
    return None


def _kind(path) -> str:
    name = str(path).lower()
    if name.endswith(".gz"):
        return "a gzip-compressed CSV"
    if name.endswith(".zip"):
        return "a zipped CSV"
    return "a UTF-8 CSV"


def read_json_checked(path: str | os.PathLike, repeated_keys: list[str] | None = None):
    """The parsed JSON of `path`; `InputError` naming the file and the position for broken JSON. NaN/Infinity
    literals (which some releases contain) are accepted and read as float NaN/inf.

    With `repeated_keys`, every object keeps the *first* value of a repeated key (``json`` keeps the last, silently),
    and each extra occurrence of a key of the top-level object is appended to `repeated_keys`: a release keyed by
    study id then shows its duplicate records instead of losing them without a trace."""
    last: list[list[str]] = [[]]

    def first_wins(pairs):
        obj, extra = {}, []
        for key, value in pairs:
            if key in obj:
                extra.append(key)
            else:
                obj[key] = value
        last[0] = extra  # the top-level object is the last one the decoder finishes
        return obj

    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
        if repeated_keys is None:
            return json.loads(text)
        data = json.loads(text, object_pairs_hook=first_wins)
        if isinstance(data, dict):
            repeated_keys.extend(last[0])
        return data
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


def count_once(tally: Tally, study_id: str, splits: Sequence[str]) -> str | None:
    """Count a study that the input lists ``len(splits)`` times (in these output splits, ``"unknown"`` for none)
    as ONE input study, so that ``kept + dropped`` is the number of distinct studies and the drop-share gate is not
    diluted or inflated by repeats. Every listing after the first is noted as ``duplicate_record``. Listings in
    different output splits would leak the study across splits: it is dropped once as ``inconsistent_split``
    under ``unknown`` and None is returned; otherwise its split is returned and the caller uses its first
    listing."""
    distinct = list(dict.fromkeys(splits))
    split = distinct[0] if len(distinct) == 1 else "unknown"
    tally.study(split)
    if len(splits) > 1:
        tally.note(split, "duplicate_record", f"study {study_id} listed {len(splits)} times", n=len(splits) - 1)
    if len(distinct) > 1:
        tally.drop(split, "inconsistent_split", f"study {study_id} is listed in splits {', '.join(distinct)}")
        return None
    return split
