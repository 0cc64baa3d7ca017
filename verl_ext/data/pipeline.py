"""The shared conversion engine: study jobs -> image selection -> prompt -> sharded parquet + stats.json.

A dataset reader (``verl_ext.data.{mimic,rexgradient,iu_xray,padchest_gr,chexpert_plus}``) does the metadata-only
work in the main process -- splits, view labels, prior linking, study-level drops -- and returns a `Plan`: per
output split an ordered list of study keys, a function that turns a slice of keys into `StudyJob`s, and the drops
it already counted. `run` then cuts every split into shards of `PrepConfig.shard_size` studies and processes shards in
``--workers`` processes. A worker reads the report (when the job carries a report reference), checks the target,
loads and resizes images, builds rows and streams them into ``<split>-NNNNN.parquet`` in row groups, so memory is
bounded by one row group per worker whatever the dataset's size.

Restart: a finished shard leaves ``_progress/<split>-NNNNN.json`` holding a fingerprint (configuration + the
shard's study ids + `FORMAT_VERSION`) and the shard's counts. A rerun with the same fingerprint skips the shard
and reuses its counts, so an interrupted MIMIC run resumes where it stopped; parquet files are written to a
temporary name and renamed, so a killed worker never leaves a half shard under a final name.

Accounting: every distinct input study is counted once and ends as kept or dropped with one reason, per split, and
``stats.json`` checks ``kept + sum(dropped) == input_studies``; a study the input lists more than once is still one
input study (the repeats are ``duplicate_record`` notes), so the drop-share gate sees distinct studies. Image-level
events (a missing or unreadable file, an excluded view, a truncated image list, an unusable prior) are counted under
``notes``. Reasons in `PROBLEM_REASONS` are data faults rather than rules; ``--strict`` turns the first one into an
error. Every reason that concerns a file (`FILE_REASONS`) keeps one example path per split (``examples`` in
``stats.json``, and in the printed summary), so a wrong folder shows which path was looked for.

Before converting, the first `PROBE_STUDIES` studies' image and report files are looked up: when not one of them
exists, the input folder is wrong and the run stops at once (exit 2 naming a path and the nearest folder that does
exist) instead of trying every study and ending with exit 3.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import sys
import time
import zipfile
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from verl_ext.data.archives import read_member
from verl_ext.data.images import ImageError, ImageSpec, encode_image, load_image
from verl_ext.data.prompt import DEFAULT_MISSING_VALUE, ImageSlot, build_prompt
from verl_ext.data.schema import make_row, row_schema
from verl_ext.data.sections import extract_report_fields
from verl_ext.data.views import FRONTAL, LATERAL, OTHER, view_class, view_rank

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")

# Data faults (as opposed to rules that drop on purpose). --strict raises on the first one.
PROBLEM_REASONS = frozenset({
    "image_missing", "image_unreadable", "report_missing", "report_unreadable", "no_readable_image",
    "no_split", "inconsistent_split", "unknown_split", "no_image_metadata",
    "split_row_without_metadata", "metadata_row_without_split", "missing_study_datetime", "prior_image_missing",
    "prior_image_unreadable", "malformed_record", "no_report_metadata", "duplicate_record",
})


# Reasons that concern one file: their summaries name an example path.
FILE_REASONS = frozenset({
    "image_missing", "image_unreadable", "report_missing", "report_unreadable", "no_readable_image",
    "prior_image_missing", "prior_image_unreadable",
})
# Studies whose files are looked up before converting (`probe_files`).
PROBE_STUDIES = 16


class DataError(RuntimeError):
    """A data fault met under ``--strict``."""


@dataclass(frozen=True)
class PrepConfig:
    """Options shared by the five converters (each is a command-line flag; see `verl_ext.data.cli`)."""

    out_dir: str
    dataset: str = ""  # data_source value, set by the reader
    image: ImageSpec = ImageSpec()
    image_mode: str = "bytes"  # "bytes" | "path"
    views: str = "frontal_lateral"  # "frontal_lateral" | "all"
    include_prior: bool = True
    max_images: int = 6
    over_limit: str = "truncate"  # "truncate" | "drop"
    max_study_images: int | None = None  # drop studies whose raw image count exceeds this (ReXGradient: 6)
    require_frontal: bool = False
    merge_val_into_train: bool = False
    context_fields: tuple[str, ...] = ("indication", "technique", "comparison")
    missing_value: str = DEFAULT_MISSING_VALUE
    context_fallbacks: bool = True
    prior_requires_findings: bool = False
    shard_size: int = 1000
    row_group_size: int = 64
    workers: int = 1
    strict: bool = False
    limit: int | None = None  # first N studies per split (debugging)
    progress: bool = True

    def fingerprint(self) -> str:
        """Hash of everything that changes the rows (not workers, progress or limit)."""
        d = dataclasses.asdict(self)
        for k in ("workers", "progress", "out_dir", "strict"):
            d.pop(k)
        d["format_version"] = FORMAT_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class ImageCandidate:
    """One image a sample may use. `path` is absolute ("" when the metadata points at nothing usable)."""

    path: str
    rel_path: str
    view: str
    role: str  # "current" | "prior"
    image_id: str
    archive: tuple[str, ...] = ()  # parts of the (split) zip holding the image; `path` is then "<part1>::<member>"
    member: str = ""  # the image's name inside `archive`


@dataclass
class StudyJob:
    """Everything a worker needs for one study: `text` (structured datasets), `report`, or both (`study_text`)."""

    split: str
    source_split: str
    index: int
    study_id: str
    patient_id: str
    candidates: list[ImageCandidate]
    prior_study_id: str | None = None
    text: dict[str, str] | None = None  # findings, impression, indication, technique, comparison
    report: tuple[str, ...] | None = None  # ("file", path) or ("zip", zip_path, member)
    study_date: str = ""
    notes: dict[str, int] = field(default_factory=dict)  # events found while planning, counted with the shard


@dataclass
class Plan:
    """What a reader hands to `run`."""

    keys: dict[str, list[str]]  # output split -> study keys in order
    build_jobs: Callable[[str, Sequence[str], int], list[StudyJob]]  # (split, keys, first index) -> jobs
    dropped: dict[str, Counter]  # output split -> reason -> count (planning-time drops)
    notes: dict[str, Counter]  # output split -> reason -> count (planning-time events)
    input_studies: dict[str, int]  # output split -> number of input studies (kept + dropped must equal it)
    info: dict = field(default_factory=dict)  # reader facts worth persisting (files used, merges ...)


class Counts:
    """Per-split tallies; merged across shards."""

    def __init__(self):
        self.kept = 0
        self.dropped: Counter = Counter()
        self.notes: Counter = Counter()
        self.image_hist: Counter = Counter()  # n_images -> samples
        self.with_prior = 0
        self.rows_written = 0
        self.examples: dict[str, str] = {}  # reason in FILE_REASONS -> the first path it concerned

    def to_json(self) -> dict:
        return {"kept": self.kept, "dropped": dict(self.dropped), "notes": dict(self.notes),
                "image_hist": {str(k): v for k, v in self.image_hist.items()}, "with_prior": self.with_prior,
                "rows_written": self.rows_written, "examples": dict(self.examples)}

    @classmethod
    def from_json(cls, d: dict) -> Counts:
        c = cls()
        c.kept = d["kept"]
        c.dropped = Counter(d["dropped"])
        c.notes = Counter(d["notes"])
        c.image_hist = Counter({int(k): v for k, v in d["image_hist"].items()})
        c.with_prior = d["with_prior"]
        c.rows_written = d["rows_written"]
        c.examples = dict(d.get("examples", {}))  # progress markers of earlier versions have none
        return c

    def merge(self, other: Counts) -> None:
        self.kept += other.kept
        self.dropped.update(other.dropped)
        self.notes.update(other.notes)
        self.image_hist.update(other.image_hist)
        self.with_prior += other.with_prior
        self.rows_written += other.rows_written
        for reason, path in other.examples.items():
            self.examples.setdefault(reason, path)


# ---------------------------------------------------------------------------------------------------------------
# Reports (MIMIC free text), read inside workers.

_ZIP_CACHE: dict[str, zipfile.ZipFile] = {}


def read_report(ref: tuple[str, ...]) -> str:
    """Text of a report reference; raises `ReportError`."""
    try:
        if ref[0] == "file":
            with open(ref[1], "rb") as f:
                raw = f.read()
        elif ref[0] == "zip":
            zf = _ZIP_CACHE.get(ref[1])
            if zf is None:
                zf = _ZIP_CACHE[ref[1]] = zipfile.ZipFile(ref[1])
            try:
                raw = zf.read(ref[2])
            except KeyError as e:
                raise FileNotFoundError(ref[2]) from e
        else:
            raise ValueError(f"unknown report reference {ref!r}")
    except FileNotFoundError as e:
        raise ReportError("report_missing", f"report not found: {ref[-1]}", report_path(ref)) from e
    except (OSError, zipfile.BadZipFile) as e:
        raise ReportError("report_unreadable", f"cannot read report {ref[-1]}: {e}", report_path(ref)) from e
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ReportError("report_unreadable", f"report is not UTF-8 text: {ref[-1]}", report_path(ref)) from e


def report_path(ref: tuple[str, ...]) -> str:
    """A report reference as one path (``<zip>::<member>`` inside an archive)."""
    return ref[1] if ref[0] == "file" else "::".join(ref[1:])


def candidate_path(cand: ImageCandidate) -> str:
    """Where an image candidate is read from (``<archive>::<member>`` inside a split zip)."""
    if cand.archive:
        return f"{cand.archive[0]}::{cand.member}"
    return cand.path or f"(no file for image {cand.image_id})"


class ReportError(Exception):
    def __init__(self, reason: str, message: str, path: str = ""):
        super().__init__(message)
        self.reason = reason
        self.path = path


def study_text(job: StudyJob, cfg: PrepConfig) -> dict[str, str]:
    """The job's sections: given, or parsed from its MIMIC report; with both, the given non-empty ones win (R2Gen's
    split: its report as the findings, the context lines from the official report)."""
    if job.text is not None and job.report is None:
        return job.text
    fields = extract_report_fields(read_report(job.report), context_fallbacks=cfg.context_fallbacks)
    parsed = {"findings": fields.findings, "impression": fields.impression, "indication": fields.indication,
              "technique": fields.technique, "comparison": fields.comparison}
    return {**parsed, **{k: v for k, v in (job.text or {}).items() if v}}


# ---------------------------------------------------------------------------------------------------------------
# Image selection.

_CLASS_ORDER = {FRONTAL: 0, LATERAL: 1, OTHER: 2}


def canonical_order(c: ImageCandidate) -> tuple:
    """Current before prior; frontal, lateral, other; PA before AP, LATERAL before LL; then image id."""
    return (c.role != "current", _CLASS_ORDER[view_class(c.view)], view_rank(c.view), c.image_id)


def priority_order(candidates: Sequence[ImageCandidate]) -> list[ImageCandidate]:
    """Which images survive a cap: the first current frontal, the first current lateral, the first prior frontal,
    the first prior lateral, then the remaining current images, then the remaining prior images (each group in
    canonical order)."""
    ordered = sorted(candidates, key=canonical_order)
    firsts: list[ImageCandidate] = []
    for role in ("current", "prior"):
        for cls in (FRONTAL, LATERAL):
            for c in ordered:
                if c.role == role and view_class(c.view) == cls:
                    firsts.append(c)
                    break
    chosen = {id(c) for c in firsts}
    rest = [c for c in ordered if id(c) not in chosen]
    return firsts + [c for c in rest if c.role == "current"] + [c for c in rest if c.role == "prior"]


# ---------------------------------------------------------------------------------------------------------------
# Worker side.

@dataclass
class Outcome:
    row: dict | None
    dropped: str | None
    notes: Counter
    n_images: int = 0
    has_prior: bool = False
    examples: dict[str, str] = field(default_factory=dict)  # FILE_REASONS reason -> the path it concerned


def _note(notes: Counter, reason: str, cfg: PrepConfig, message: str, n: int = 1) -> None:
    notes[reason] += n
    if cfg.strict and reason in PROBLEM_REASONS:
        raise DataError(message)


def process_study(job: StudyJob, cfg: PrepConfig) -> Outcome:
    """One study -> one row, or a drop reason. Never raises for bad data unless `cfg.strict`."""
    notes: Counter = Counter()
    examples: dict[str, str] = {}

    def drop(reason: str, message: str = "", path: str = "") -> Outcome:
        if cfg.strict and reason in PROBLEM_REASONS:
            raise DataError(f"study {job.study_id}: {message or reason}")
        if path and reason in FILE_REASONS:
            examples.setdefault(reason, path)
        return Outcome(None, reason, notes, examples=examples)

    for reason, n in job.notes.items():
        _note(notes, reason, cfg, f"study {job.study_id}: {reason}", n)
    try:
        text = study_text(job, cfg)
    except ReportError as e:
        if job.text is None:
            return drop(e.reason, str(e), e.path)
        text = dict(job.text)  # the report only adds context lines to the given target: counted, not dropped
        notes[f"context_{e.reason}"] += 1
    findings = (text.get("findings") or "").strip()
    if not findings:
        return drop("no_findings")

    candidates = [c for c in job.candidates if cfg.include_prior or c.role == "current"]
    if not any(c.role == "current" for c in candidates):
        return drop("no_usable_view")
    if cfg.over_limit == "drop" and len(candidates) > cfg.max_images:
        return drop("over_image_limit")

    loaded: list[tuple[ImageCandidate, dict]] = []
    for cand in priority_order(candidates):
        if len(loaded) >= cfg.max_images:
            notes["images_truncated"] += 1
            continue
        try:
            img = _image_entry(cand, cfg)
        except ImageError as e:
            reason = e.reason if cand.role == "current" else f"prior_{e.reason}"
            _note(notes, reason, cfg, f"study {job.study_id}: {e}")
            examples.setdefault(reason, candidate_path(cand))
            continue
        loaded.append((cand, img))
    if not any(c.role == "current" for c, _ in loaded):
        failed = next((examples[r] for r in ("image_missing", "image_unreadable") if r in examples), "")
        return drop("no_readable_image", f"no readable current image ({notes})", failed)
    if cfg.require_frontal and not any(c.role == "current" and view_class(c.view) == FRONTAL for c, _ in loaded):
        return drop("no_frontal")
    if not any(view_class(c.view) == FRONTAL or c.view == "UNKNOWN" for c, _ in loaded if c.role == "current"):
        notes["kept_without_current_frontal"] += 1
    if notes["images_truncated"]:
        notes["studies_truncated"] += 1
    has_prior = any(c.role == "prior" for c, _ in loaded)
    if job.prior_study_id and not has_prior:
        notes["prior_without_usable_images"] += 1

    loaded.sort(key=lambda ci: canonical_order(ci[0]))
    images = [dict(entry) for _, entry in loaded]
    slots = [ImageSlot(c.role, c.view) for c, _ in loaded]
    prompt_text = build_prompt(slots, text, cfg.context_fields, cfg.missing_value)
    extra = {
        "split": job.split, "index": job.index, "dataset": cfg.dataset, "study_id": job.study_id,
        "patient_id": job.patient_id, "study_date": job.study_date, "has_prior": has_prior,
        "prior_study_id": job.prior_study_id if has_prior else None, "n_images": len(loaded),
        "image_roles": [f"{c.role}_{view_class(c.view)}" for c, _ in loaded],
        "view_positions": [c.view for c, _ in loaded], "image_ids": [c.image_id for c, _ in loaded],
        "image_paths": [c.rel_path for c, _ in loaded], "source_split": job.source_split,
        "indication": text.get("indication") or "", "technique": text.get("technique") or "",
        "comparison": text.get("comparison") or "", "findings": findings,
        "impression": text.get("impression") or "",
    }
    row = make_row(data_source=cfg.dataset, prompt_text=prompt_text, findings=findings, images=images,
                   extra_info=extra)
    return Outcome(row, None, notes, len(loaded), has_prior, examples)


# Resized, encoded images of the last few studies in this process. Shards list a patient's studies in time order, so
# a study's prior is usually the previous study and its images come from here instead of being decoded again.
_IMAGE_CACHE: OrderedDict[tuple, dict] = OrderedDict()
_IMAGE_CACHE_SIZE = 32


def _image_entry(cand: ImageCandidate, cfg: PrepConfig) -> dict:
    """The parquet image struct of one candidate (resized + encoded, or written under images/); raises ImageError."""
    key = (cand.path, cand.rel_path, cfg.image, cfg.image_mode, cfg.out_dir)
    entry = _IMAGE_CACHE.get(key)
    if entry is not None:
        _IMAGE_CACHE.move_to_end(key)
        return entry
    if not cand.path:
        raise ImageError("image_missing", f"no file for image {cand.image_id}")
    source: str | bytes = cand.path
    if cand.archive:
        try:
            source = read_member(cand.archive, cand.member)
        except KeyError as e:
            raise ImageError("image_missing", f"{cand.member} is not in {cand.archive[0]}") from e
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise ImageError("image_unreadable", f"cannot read {cand.member} from {cand.archive[0]}: {e}") from e
    data = encode_image(load_image(source, cfg.image), cfg.image)
    if cfg.image_mode == "bytes":
        entry = {"bytes": data, "path": cand.rel_path, "min_pixels": cfg.image.min_pixels,
                 "max_pixels": cfg.image.max_pixels}
    else:
        out = Path(cfg.out_dir, "images", os.path.splitext(cand.rel_path)[0] + cfg.image.extension)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, out)
        entry = {"image": str(out.resolve()), "min_pixels": cfg.image.min_pixels, "max_pixels": cfg.image.max_pixels}
    _IMAGE_CACHE[key] = entry
    if len(_IMAGE_CACHE) > _IMAGE_CACHE_SIZE:
        _IMAGE_CACHE.popitem(last=False)
    return entry


def shard_name(split: str, shard: int) -> str:
    return f"{split}-{shard:05d}.parquet"


def _process_shard(cfg: PrepConfig, split: str, shard: int, jobs: list[StudyJob]) -> dict:
    """Worker entry: process a shard's jobs and stream its parquet; returns its counts as JSON."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    counts = Counts()
    _IMAGE_CACHE.clear()  # files may have changed since an earlier call in this process
    final = Path(cfg.out_dir, shard_name(split, shard))
    tmp = final.with_name(final.name + ".tmp")
    schema = row_schema(cfg.image_mode)
    writer = None
    buffer: list[dict] = []

    def flush():
        nonlocal writer
        if not buffer:
            return
        if writer is None:
            writer = pq.ParquetWriter(tmp, schema, compression="zstd")
        writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
        counts.rows_written += len(buffer)
        buffer.clear()

    try:
        for job in jobs:
            out = process_study(job, cfg)
            counts.notes.update(out.notes)
            for reason, path in out.examples.items():
                counts.examples.setdefault(reason, path)
            if out.row is None:
                counts.dropped[out.dropped] += 1
                continue
            counts.kept += 1
            counts.image_hist[out.n_images] += 1
            counts.with_prior += int(out.has_prior)
            buffer.append(out.row)
            if len(buffer) >= cfg.row_group_size:
                flush()
        flush()
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    if writer is not None:
        writer.close()
        os.replace(tmp, final)
    else:
        final.unlink(missing_ok=True)  # an all-dropped shard writes no file
    return counts.to_json()


def _run_shard_task(args) -> tuple[str, int, int, dict]:
    cfg, split, shard, jobs = args
    return split, shard, len(jobs), _process_shard(cfg, split, shard, jobs)


# ---------------------------------------------------------------------------------------------------------------
# Driver.

def _shard_fingerprint(cfg_fp: str, split: str, keys: Sequence[str]) -> str:
    h = hashlib.sha256(f"{cfg_fp}|{split}|".encode())
    for k in keys:
        h.update(k.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _atomic_write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def mean_sd(hist: Counter) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0) of a value -> count histogram."""
    n = sum(hist.values())
    if n == 0:
        return 0.0, 0.0
    mean = sum(k * v for k, v in hist.items()) / n
    var = sum(v * (k - mean) ** 2 for k, v in hist.items()) / n
    return mean, math.sqrt(var)


PAPER_TABLE3 = {
    "mimic_cxr": {"train": (146_893, "4.17 ± 0.63", 42.59), "test": (2_231, "4.30 ± 0.62", 68.60)},
    "rexgradient": {"train": (139_884, "1.69 ± 0.63", 0.0), "test": (9_992, "1.69 ± 0.63", 0.0)},
    "iu_xray": {"train": (2_365, "2.00 ± 0.00", 0.0), "test": (590, "2.00 ± 0.00", 0.0)},
    "padchest_gr": {"train": (3_640, "1.32 ± 0.47", 32.40), "test": (915, "1.31 ± 0.46", 31.91)},
}


def run(plan: Plan, cfg: PrepConfig) -> dict:
    """Process `plan` into `cfg.out_dir`; returns (and writes) the stats dict."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    progress_dir = out / "_progress"
    progress_dir.mkdir(exist_ok=True)
    cfg_fp = cfg.fingerprint()
    t0 = time.time()

    tasks: list[tuple[str, int, list[str], int]] = []  # split, shard, keys, first index
    planned_files: set[str] = set()
    for split, keys in plan.keys.items():
        if cfg.limit is not None:
            keys = keys[: cfg.limit]
            plan.keys[split] = keys
        for shard, start in enumerate(range(0, len(keys), cfg.shard_size)):
            tasks.append((split, shard, keys[start: start + cfg.shard_size], start))
            planned_files.add(shard_name(split, shard))
    if cfg.limit is not None:  # with --limit the planning-time counts cover only the listed studies
        plan.input_studies = {s: len(k) for s, k in plan.keys.items()}
        plan.dropped = {s: Counter() for s in plan.keys}

    # Files of an earlier run with more shards (or another split layout) would mix into the output: remove them.
    for p in out.glob("*.parquet"):
        if re.fullmatch(r"(train|val|test)-\d{5}\.parquet", p.name) and p.name not in planned_files:
            logger.warning("removing stale shard %s from an earlier run", p)
            p.unlink()
    for p in list(out.glob("*.parquet.tmp")) + list(progress_dir.glob("*.tmp")):
        p.unlink()

    counts = {split: Counts() for split in plan.keys}
    todo = []
    n_skipped = 0
    for split, shard, keys, start in tasks:
        marker = progress_dir / f"{split}-{shard:05d}.json"
        fp = _shard_fingerprint(cfg_fp, split, keys)
        parquet = out / shard_name(split, shard)
        if marker.exists():
            try:
                done = json.loads(marker.read_text())
                if done.get("fingerprint") == fp and (parquet.exists() or done["counts"]["rows_written"] == 0):
                    counts[split].merge(Counts.from_json(done["counts"]))
                    n_skipped += 1
                    continue
            except (ValueError, KeyError):
                pass
            marker.unlink()
        todo.append((split, shard, keys, start, fp))
    if n_skipped:
        logger.info("resuming: %d of %d shards already complete", n_skipped, len(tasks))
    if todo:
        probe_files(plan, PROBE_STUDIES)

    total_studies = sum(len(t[2]) for t in todo)
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=total_studies, unit="study", desc=f"{cfg.dataset}", file=sys.stderr, dynamic_ncols=True)

    fingerprints = {(s, sh): fp for s, sh, _, _, fp in todo}

    def finish(split: str, shard: int, n: int, shard_counts: dict):
        _atomic_write_json(progress_dir / f"{split}-{shard:05d}.json",
                           {"fingerprint": fingerprints[(split, shard)], "counts": shard_counts})
        counts[split].merge(Counts.from_json(shard_counts))
        if bar is not None:
            bar.update(n)

    def task_args(item):
        split, shard, keys, start, _ = item
        return cfg, split, shard, plan.build_jobs(split, keys, start)

    try:
        if cfg.workers <= 1:
            for item in todo:
                finish(*_run_shard_task(task_args(item)))
        else:
            with ProcessPoolExecutor(max_workers=cfg.workers) as pool:
                pending = set()
                items = iter(todo)
                for item in _take(items, 2 * cfg.workers):  # bounded look-ahead: jobs are built lazily
                    pending.add(pool.submit(_run_shard_task, task_args(item)))
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        finish(*fut.result())
                        for item in _take(items, 1):
                            pending.add(pool.submit(_run_shard_task, task_args(item)))
    finally:
        if bar is not None:
            bar.close()

    stats = build_stats(plan, cfg, counts, time.time() - t0)
    _atomic_write_json(out / "stats.json", stats)
    return stats


def probe_files(plan: Plan, n_studies: int) -> None:
    """Raise `FileNotFoundError` when not one image file (or report file) of the first `n_studies` studies (taken
    from the splits in turn) exists: the image or report folder given is wrong, and converting would only try every
    study to drop it. Files inside archives are not probed (their archive was opened while planning)."""
    heads = {split: list(keys[:n_studies]) for split, keys in plan.keys.items() if keys}
    picked: dict[str, list[str]] = {split: [] for split in heads}
    for i in range(n_studies):
        for split, keys in heads.items():
            if i < len(keys) and sum(map(len, picked.values())) < n_studies:
                picked[split].append(keys[i])
    images: list[str] = []
    reports: list[str] = []
    for split, keys in picked.items():
        for job in plan.build_jobs(split, keys, 0):
            images += [c.path for c in job.candidates if c.role == "current" and c.path and not c.archive]
            if job.report is not None and job.report[0] == "file":
                reports.append(job.report[1])
    n = sum(map(len, picked.values()))
    for kind, paths in (("image", images), ("report", reports)):
        if paths and not any(os.path.isfile(p) for p in paths):
            folder = Path(paths[0]).parent
            while not folder.exists() and folder != folder.parent:
                folder = folder.parent
            raise FileNotFoundError(
                f"none of the {len(paths)} {kind} files of the first {n} studies exists, e.g. {paths[0]} (the "
                f"nearest folder that exists is {folder}): check the {kind} folder given on the command line")


def _take(it: Iterator, n: int):
    for _ in range(n):
        try:
            yield next(it)
        except StopIteration:
            return


def build_stats(plan: Plan, cfg: PrepConfig, counts: dict[str, Counts], seconds: float) -> dict:
    splits = {}
    order = list(plan.keys) + sorted(s for s in plan.input_studies if s not in plan.keys)
    for split in order:
        c = counts.get(split) or Counts()
        dropped = Counter(plan.dropped.get(split, Counter()))
        dropped.update(c.dropped)
        notes = Counter(plan.notes.get(split, Counter()))
        notes.update(c.notes)
        mean, sd = mean_sd(c.image_hist)
        n_in = plan.input_studies.get(split, 0)
        entry = {
            "input_studies": n_in,
            "samples": c.kept,
            "images_per_sample_mean": round(mean, 4),
            "images_per_sample_sd": round(sd, 4),
            "pct_with_prior": round(100.0 * c.with_prior / c.kept, 2) if c.kept else 0.0,
            "with_prior": c.with_prior,
            "dropped_total": sum(dropped.values()),
            "dropped": dict(sorted(dropped.items())),
            "notes": dict(sorted(notes.items())),
            "images_per_sample_hist": {str(k): c.image_hist[k] for k in sorted(c.image_hist)},
            "examples": dict(sorted(c.examples.items())),
            "files": sorted(p.name for p in Path(cfg.out_dir).glob(f"{split}-[0-9]*.parquet")),
        }
        entry["accounted"] = entry["samples"] + entry["dropped_total"] == n_in
        if c.rows_written != c.kept:
            raise RuntimeError(f"{split}: {c.rows_written} rows written but {c.kept} kept")
        if not entry["accounted"]:
            raise RuntimeError(f"{split}: kept {c.kept} + dropped {entry['dropped_total']} != input {n_in}")
        splits[split] = entry
    cfg_json = dataclasses.asdict(cfg)
    stats = {
        "dataset": cfg.dataset,
        "format_version": FORMAT_VERSION,
        "splits": splits,
        "paper_table3": {s: {"samples": v[0], "images": v[1], "pct_with_prior": v[2]}
                         for s, v in PAPER_TABLE3.get(cfg.dataset, {}).items()},
        "problem_reasons": sorted(PROBLEM_REASONS),
        "config": cfg_json,
        "reader": plan.info,
        "seconds": round(seconds, 2),
    }
    return json.loads(json.dumps(stats, default=str))  # exactly what stats.json holds


def top_drops(dropped: dict[str, int], n: int = 3) -> str:
    """``reason=count`` of the `n` largest drop reasons, largest first."""
    items = sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return ", ".join(f"{k}={v}" for k, v in items) or "none"


def outcome_problem(stats: dict, max_drop_share: float) -> str | None:
    """One line saying why this run must not pass silently, or None.

    A run fails when it found no input study at all, when an output split that had input kept zero rows, or when
    a split (or the run as a whole) dropped more than `max_drop_share` of its input studies. The ``unknown``
    pseudo-split (studies without a usable split) is never written, so it only counts towards the whole run.
    """
    splits = stats["splits"]
    total_in = sum(e["input_studies"] for e in splits.values())
    if total_in == 0:
        return "no input study was found (check the input paths and the split selection)"
    problems = []
    for split, e in splits.items():
        n_in = e["input_studies"]
        if split in SPLITS and n_in and e["samples"] == 0:
            problems.append(f"{split} kept 0 of {n_in} studies (top drops: {top_drops(e['dropped'])})")
        elif split in SPLITS and n_in and e["dropped_total"] / n_in > max_drop_share:
            problems.append(f"{split} dropped {e['dropped_total']} of {n_in} studies "
                            f"({100 * e['dropped_total'] / n_in:.0f}% > {100 * max_drop_share:.0f}%; top drops: "
                            f"{top_drops(e['dropped'])})")
    total_drop = sum(e["dropped_total"] for e in splits.values())
    if not problems and total_drop / total_in > max_drop_share:
        merged: Counter = Counter()
        for e in splits.values():
            merged.update(e["dropped"])
        problems.append(f"the run dropped {total_drop} of {total_in} studies ({100 * total_drop / total_in:.0f}% > "
                        f"{100 * max_drop_share:.0f}%; top drops: {top_drops(merged)})")
    return "; ".join(problems) or None


def format_summary(stats: dict) -> str:
    """The printed table: Table 3's columns per split, then every drop reason and note."""
    lines = [f"{stats['dataset']}: samples, images per sample (mean ± sd, ddof=0), % with prior"]
    header = f"{'split':<6} {'input':>8} {'samples':>8} {'dropped':>8} {'images':>14} {'% prior':>8}"
    lines += [header, "-" * len(header)]
    for split, e in stats["splits"].items():
        img = f"{e['images_per_sample_mean']:.2f} ± {e['images_per_sample_sd']:.2f}"
        lines.append(f"{split:<6} {e['input_studies']:>8} {e['samples']:>8} {e['dropped_total']:>8} {img:>14} "
                     f"{e['pct_with_prior']:>8.2f}")
    paper = stats.get("paper_table3") or {}
    if paper:
        lines.append("paper Table 3: " + "; ".join(f"{s} {v['samples']} samples, {v['images']} images, "
                                                   f"{v['pct_with_prior']:.2f}% prior" for s, v in paper.items()))
    for split, e in stats["splits"].items():
        examples = e.get("examples", {})

        def item(reason: str, count: int) -> str:
            return f"{reason}={count}" + (f" (e.g. {examples[reason]})" if reason in examples else "")

        if e["dropped"]:
            lines.append(f"{split} dropped: " + ", ".join(item(k, v) for k, v in e["dropped"].items()))
        if e["notes"]:
            lines.append(f"{split} notes: " + ", ".join(item(k, v) for k, v in e["notes"].items()))
    return "\n".join(lines)
