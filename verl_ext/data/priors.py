"""Most-recent-prior linking from metadata (EditGRPO App. F; datasets.md §2.5).

Rules:

* order is chronological by **numbers**: (StudyDate as an integer YYYYMMDD, StudyTime as a float HHMMSS.ffffff),
  never by string (80556.875 is 08:05:56, earlier than 101010.0) and never by study id (MIMIC ids are random);
* the prior of a study is the same patient's study with the greatest (date, time) strictly below its own, within
  the **same split** (a patient's studies in another split are never used, and are counted);
* studies with an identical (date, time) are not each other's prior; if several studies share the prior's
  (date, time), the largest study id is chosen, for determinism;
* a study without a usable date or time has no prior and is nobody's prior;
* `eligible` restricts which studies may serve as a prior (e.g. only those with FINDINGS); by default all studies
  of the patient count, whether or not they are kept themselves.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class StudyTime:
    """One study's identity and position in time."""

    study_id: str
    patient_id: str
    split: str
    date: float  # YYYYMMDD as a number; NaN when unknown
    time: float  # HHMMSS.ffffff as a number; NaN when unknown

    @property
    def ordered(self) -> bool:
        return not (math.isnan(self.date) or math.isnan(self.time))


def _sort_key(s: StudyTime) -> tuple:
    return (s.date, s.time, _id_key(s.study_id))


def _id_key(study_id: str) -> tuple:
    # numeric ids compare as numbers, others as strings (only used to break exact ties)
    return (0, int(study_id), "") if study_id.isdigit() else (1, 0, study_id)


def link_priors(studies: Iterable[StudyTime], eligible: set[str] | None = None
                ) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Map study_id -> prior study_id for studies that have one.

    Returns the mapping and the study ids of two events: ``cross_split`` (studies whose most recent earlier study
    of the same patient lies in another split, which is not used) and ``unordered`` (no usable date/time).
    """
    by_patient: dict[str, list[StudyTime]] = defaultdict(list)
    unordered: list[str] = []
    for s in studies:
        if s.ordered:
            by_patient[s.patient_id].append(s)
        else:
            unordered.append(s.study_id)
    prior: dict[str, str] = {}
    cross_split: list[str] = []
    for items in by_patient.values():
        items.sort(key=_sort_key)
        for i, cur in enumerate(items):
            best_same = best_any = None
            for j in range(i - 1, -1, -1):
                cand = items[j]
                if (cand.date, cand.time) >= (cur.date, cur.time):
                    continue  # same date and time: not a prior
                if eligible is not None and cand.study_id not in eligible:
                    continue
                if best_any is None:
                    best_any = cand
                if cand.split == cur.split:
                    best_same = cand
                    break
            if best_same is not None:
                prior[cur.study_id] = best_same.study_id
            if best_any is not None and best_any is not best_same and (
                    best_same is None or (best_any.date, best_any.time) > (best_same.date, best_same.time)):
                cross_split.append(cur.study_id)
    return prior, {"cross_split": cross_split, "unordered": unordered}
