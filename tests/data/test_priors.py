"""Chronological prior linking: numeric date and time, never across splits, ties."""
from __future__ import annotations

import math

from verl_ext.data.priors import StudyTime, link_priors


def st(sid, date, time, split="train", patient="p1"):
    return StudyTime(sid, patient, split, float(date), float(time))


def test_numeric_time_not_string_order():
    # "80556.875" > "101010.0" as strings, but 08:05:56 is earlier than 10:10:10
    studies = [st("3", 21800101, 101010.0), st("1", 21800101, 80556.875), st("2", 21790101, 235959.0)]
    prior, ev = link_priors(studies)
    assert prior == {"1": "2", "3": "1"} and ev == {"cross_split": [], "unordered": []}


def test_id_order_irrelevant_and_same_datetime_not_prior():
    studies = [st("9", 21800101, 90000), st("8", 21800101, 90000), st("7", 21800105, 90000)]
    prior, _ = link_priors(studies)
    assert "9" not in prior and "8" not in prior
    assert prior["7"] == "9"  # tie on the prior's datetime: the larger study id, for determinism


def test_never_across_splits_and_unordered():
    studies = [st("1", 21800101, 1, "train"), st("2", 21800201, 1, "test"), st("3", 21800301, 1, "test"),
               st("4", 21800401, math.nan, "test"), st("5", 21800101, 1, "test", patient="p2")]
    prior, ev = link_priors(studies)
    assert prior == {"3": "2"}
    assert ev["cross_split"] == ["2"] and ev["unordered"] == ["4"]


def test_eligibility():
    studies = [st("1", 21800101, 1), st("2", 21800201, 1), st("3", 21800301, 1)]
    prior, _ = link_priors(studies, eligible={"1"})
    assert prior == {"2": "1", "3": "1"}
