"""Resumable JSON-lines outputs: what ``generate``, DDSampling and ``evaluate`` append to and pick up again.

A run appends one JSON object per finished row (with its ``id``) and flushes after every batch; a rerun reads the
ids already there (``read_done_ids``, which cuts a torn last line left by a kill) and does only the rest. A sidecar
``<out>.meta.json`` records the settings that change the rows; ``check_settings`` refuses to resume with other
settings, since the file would then mix two runs.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def read_done_ids(out: Path) -> set[str]:
    """Ids already in `out`. A torn last line (an interrupted write) is cut off the file."""
    done: set[str] = set()
    if not out.exists():
        return done
    good_bytes = 0
    with out.open("rb") as fh:
        for raw in fh:
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                if raw.endswith(b"\n"):
                    raise ValueError(f"{out}: line {len(done) + 1} is not JSON; fix or remove the file") from None
                logger.warning("%s: dropping a torn last line (%d bytes)", out, len(raw))
                break
            if not raw.endswith(b"\n"):
                logger.warning("%s: last line has no newline; dropping it to redo that row", out)
                break
            done.add(str(record["id"]))
            good_bytes += len(raw)
    if good_bytes != out.stat().st_size:
        with out.open("r+b") as fh:
            fh.truncate(good_bytes)
    return done


def meta_path(out: Path) -> Path:
    """The settings sidecar of `out`: ``<out>.meta.json``."""
    return out.with_name(out.name + ".meta.json")


def check_settings(meta: Path, settings: dict, allow_change: bool,
                   override: str = "pass --allow-settings-change") -> None:
    """Raise ``ValueError`` when `meta` records other `settings` than this run's (unless `allow_change`)."""
    if not meta.exists():
        return
    old = json.loads(meta.read_text()).get("settings", {})
    changed = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
    if changed and not allow_change:
        lines = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ValueError(f"{meta} was written with other settings ({lines}); the rows would mix two runs. "
                         f"Use a new --out, or {override}")
