"""Table 1 aggregation from per-sample records (pure; the bootstrap/comparison tools build on this).

``table_from_per_sample(records)`` turns per-sample records (the rows of ``per_sample.jsonl``, see
``verl_ext.eval.evaluate``) into the paper's Table 1 columns. Corpus-level CheXbert F1s are recomputed from the
per-sample label vectors, so any subset or bootstrap resample of the records gives that sample's table.

Columns (``TABLE_COLUMNS``, in the paper's order) and how each aggregates:

| key                    | paper header | aggregation                                                          |
|------------------------|--------------|----------------------------------------------------------------------|
| chexbert_micro_f1_14   | Micro-F1-14  | corpus micro-F1 over 14 binary labels (uncertain = positive)         |
| chexbert_macro_f1_14   | Macro-F1-14  | corpus macro-F1 over the 14 classes                                  |
| chexbert_micro_f1_5    | Micro-F1-5   | corpus micro-F1 over Atelectasis, Cardiomegaly, Consolidation, Edema,|
|                        |              | Pleural Effusion                                                     |
| chexbert_macro_f1_5    | Macro-F1-5   | corpus macro-F1 over those 5                                         |
| radgraph_f1            | RadGraph F1  | mean of per-sample RadGraph partial F1 (RG_ER)                       |
| ratescore              | RaTE         | mean of per-sample RaTEScore over the scorable samples              |
| green                  | GREEN        | mean of per-sample GREEN over the parsed samples                     |
| avg                    | Avg.         | mean of the columns above that were computed                         |

A column whose metric was not computed (skipped, model unavailable) is ``None`` and is left out of ``avg``
(``avg_columns`` lists what went in; the paper's Avg. is over all seven).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import numpy as np

from verl_ext.metrics.chexbert import chexbert_scores

TABLE_COLUMNS: tuple[str, ...] = (
    "chexbert_micro_f1_14",
    "chexbert_macro_f1_14",
    "chexbert_micro_f1_5",
    "chexbert_macro_f1_5",
    "radgraph_f1",
    "ratescore",
    "green",
)
PAPER_HEADERS: dict[str, str] = {
    "chexbert_micro_f1_14": "Micro-F1-14",
    "chexbert_macro_f1_14": "Macro-F1-14",
    "chexbert_micro_f1_5": "Micro-F1-5",
    "chexbert_macro_f1_5": "Macro-F1-5",
    "radgraph_f1": "RadGraph F1",
    "ratescore": "RaTE",
    "green": "GREEN",
    "avg": "Avg.",
}


def _mean(values: Iterable[Any]) -> tuple[Optional[float], int]:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return (float(np.mean(vals)) if vals else None), len(vals)


def table_from_per_sample(records: list[dict]) -> dict:
    """The Table 1 columns (+ ``avg``, ``avg_columns``, ``n`` and per-column counts) from per-sample records."""
    n = len(records)
    table: dict[str, Any] = {c: None for c in TABLE_COLUMNS}
    counts: dict[str, int] = {}
    if n and all(r.get("chexbert_generated") is not None and r.get("chexbert_reference") is not None for r in records):
        hyp = np.array([r["chexbert_generated"] for r in records], dtype=np.int64)
        ref = np.array([r["chexbert_reference"] for r in records], dtype=np.int64)
        table.update(chexbert_scores(hyp, ref))
        for c in TABLE_COLUMNS[:4]:
            counts[c] = n
    for col in ("radgraph_f1", "ratescore", "green"):
        if n and any(col in r for r in records) and any(r.get(col) is not None for r in records):
            table[col], counts[col] = _mean(r.get(col) for r in records)
    present = [c for c in TABLE_COLUMNS if table[c] is not None]
    table["avg"] = float(np.mean([table[c] for c in present])) if present else None
    table["avg_columns"] = present
    table["n"] = n
    table["counts"] = counts
    return table


def format_table(table: dict, digits: int = 4) -> str:
    """The paper's header line and one value line (``-`` for a column that was not computed)."""
    keys = list(TABLE_COLUMNS) + ["avg"]
    headers = [PAPER_HEADERS[k] for k in keys]
    vals = ["-" if table.get(k) is None else f"{table[k]:.{digits}f}" for k in keys]
    widths = [max(len(h), len(v)) for h, v in zip(headers, vals)]
    line1 = "  ".join(h.rjust(w) for h, w in zip(headers, widths))
    line2 = "  ".join(v.rjust(w) for v, w in zip(vals, widths))
    return line1 + "\n" + line2
