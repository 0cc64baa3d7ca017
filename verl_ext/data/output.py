"""Reading a converter's output back: the shard files of a split, their rows, and stats.json."""
from __future__ import annotations

import json
from pathlib import Path


def split_files(out_dir: str | Path, split: str) -> list[str]:
    """The ``<split>-NNNNN.parquet`` shards of `split` in order (what verl's ``data.train_files`` takes)."""
    return [str(p) for p in sorted(Path(out_dir).glob(f"{split}-[0-9]*.parquet"))]


def read_rows(out_dir: str | Path, split: str) -> list[dict]:
    """All rows of `split` as Python dicts (small outputs only: everything is loaded)."""
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for path in split_files(out_dir, split):
        rows += pq.read_table(path).to_pylist()
    return rows


def rows_by_study(out_dir: str | Path, splits=("train", "val", "test")) -> dict[str, dict]:
    """study_id -> row over `splits`."""
    return {r["extra_info"]["study_id"]: r for split in splits for r in read_rows(out_dir, split)}


def load_stats(out_dir: str | Path) -> dict:
    return json.loads(Path(out_dir, "stats.json").read_text())
