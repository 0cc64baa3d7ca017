"""Known-answer tests of the sampled-vs-edited training metrics (pure function)."""
import math

import pytest

from verl_ext.trainer.edit_metrics import KNOWN_OP_KINDS, compute_edit_metrics


def _rec(uid, reward, edited=False, ops=(), inserted=None, time_s=None, **components):
    extra = {"is_edited": edited, "edit_ops": list(ops), "reward_extra_info": components}
    if inserted is not None:
        extra["edit_tokens_inserted"] = inserted
    if time_s is not None:
        extra["edit_time_s"] = time_s
    return {"uid": uid, "reward": reward, **extra}


# Two prompts, G = 4: prompt "a" has two sampled and two edited responses, prompt "b" only sampled ones.
RECORDS = [
    _rec("a", 1.0, radgraph_f1=0.2, ratescore=0.4, invalid=False),
    _rec("a", 1.5, radgraph_f1=0.4, ratescore=0.6, invalid=False),
    _rec("a", 2.0, True, ("fn_append",), inserted=10, time_s=1.5, radgraph_f1=0.6, ratescore=0.8, invalid=False),
    _rec("a", 2.5, True, ("fp_replace", "fn_append"), inserted=20, time_s=1.5, radgraph_f1=0.8, ratescore=1.0,
         invalid=False),
    _rec("b", 0.5, radgraph_f1=0.0, ratescore=0.2, invalid=True),
    _rec("b", 0.5, radgraph_f1=0.0, ratescore=0.2, invalid=False),
    _rec("b", 0.5, radgraph_f1=0.0, ratescore=0.2, invalid=False),
    _rec("b", 0.5, radgraph_f1=0.0, ratescore=0.2, invalid=False),
]
ADVANTAGES = [-0.75, -0.25, 0.25, 0.75, 0.0, 0.0, 0.0, 0.0]


def test_known_answer():
    m = compute_edit_metrics(RECORDS, ADVANTAGES)
    expected = {
        "edit/num_edited": 2.0,
        "edit/edited_share": 2 / 8,
        "edit/groups_edited_share": 1 / 2,
        "edit/ops/fn_append": 2.0,
        "edit/ops/fp_replace": 1.0,
        "edit/ops/fp_delete": 0.0,
        "edit/ops_per_edit/mean": 1.5,
        "edit/tokens_inserted/mean": 15.0,
        "edit/tokens_inserted/max": 20.0,
        "edit/tokens_inserted/sum": 30.0,
        "edit/time_s/mean": 1.5,  # one group: its time is on both edited copies
        "edit/time_s/max": 1.5,
        "edit/error_groups": 0.0,
        "sampled/count": 6.0,
        "edited/count": 2.0,
        "sampled/reward/mean": (1.0 + 1.5 + 0.5 * 4) / 6,
        "edited/reward/mean": 2.25,
        "edit/reward_gap/mean": 2.25 - (4.5 / 6),
        "sampled/radgraph_f1/mean": 0.6 / 6,
        "edited/radgraph_f1/mean": 0.7,
        "sampled/ratescore/mean": (0.4 + 0.6 + 0.8) / 6,
        "edited/ratescore/mean": 0.9,
        "sampled/invalid/mean": 1 / 6,
        "edited/invalid/mean": 0.0,
        "reward/radgraph_f1/mean": 2.0 / 8,
        "reward/ratescore/mean": 3.6 / 8,
        "reward/invalid/mean": 1 / 8,
        "sampled/advantage/mean": -1.0 / 6,
        "sampled/advantage/positive_share": 0.0,
        "edited/advantage/mean": 0.5,
        "edited/advantage/positive_share": 1.0,
    }
    for key, value in expected.items():
        assert m[key] == pytest.approx(value), key
    for kind in KNOWN_OP_KINDS:
        assert f"edit/ops/{kind}" in m
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.values())


def test_baseline_without_edit_fields():
    # verl's stock agent loop (GRPO / Dr. GRPO baselines): no edit fields at all, reward components still logged.
    records = [{"uid": "a", "reward": 1.0, "reward_extra_info": {"ratescore": 0.5}},
               {"uid": "a", "reward": 0.0, "reward_extra_info": {"ratescore": 0.1}}]
    m = compute_edit_metrics(records, [0.5, -0.5])
    assert m["edit/edited_share"] == 0.0 and m["edit/groups_edited_share"] == 0.0
    assert m["edited/count"] == 0.0 and "edited/reward/mean" not in m
    assert m["sampled/ratescore/mean"] == pytest.approx(0.3) == m["reward/ratescore/mean"]
    assert "edit/tokens_inserted/mean" not in m and "edit/reward_gap/mean" not in m


def test_non_numeric_components_and_missing_advantages_are_skipped():
    records = [_rec("a", 1.0, note="text", vec=[1, 2], nan=float("nan"), **{"score": 0.3})]
    m = compute_edit_metrics(records)
    assert "sampled/note/mean" not in m and "sampled/vec/mean" not in m and "sampled/nan/mean" not in m
    assert m["sampled/reward/mean"] == 1.0 and m["sampled/score/mean"] == 0.3  # scalar reward vs "score" component
    assert "sampled/advantage/mean" not in m


def test_numpy_scalars_are_numbers():
    np = pytest.importorskip("numpy")
    m = compute_edit_metrics([_rec("a", np.float32(0.5), True, ("fp_delete",), inserted=np.int64(0),
                                   ratescore=np.float64(0.25), invalid=np.bool_(True))])
    assert m["edited/ratescore/mean"] == 0.25 and m["edited/invalid/mean"] == 1.0
    assert m["edited/reward/mean"] == 0.5 and m["edit/tokens_inserted/sum"] == 0.0


def test_unknown_op_kind_is_counted_and_empty_input():
    m = compute_edit_metrics([_rec("a", 1.0, True, ("custom_rule",))])
    assert m["edit/ops/custom_rule"] == 1.0 and m["edit/ops/fn_append"] == 0.0
    assert compute_edit_metrics([]) == {}
    with pytest.raises(ValueError):
        compute_edit_metrics(RECORDS, [0.0])


def test_edit_time_is_per_group_and_errors_are_counted():
    records = [
        _rec("a", 1.0, True, ("fn_append",), time_s=2.0), _rec("a", 1.0, True, ("fn_append",), time_s=2.0),
        _rec("b", 1.0, True, ("fp_delete",), time_s=1.0),
        {**_rec("c", 0.0), "edit_error": "RuntimeError: analyzer failed"}, {**_rec("c", 0.0), "edit_error": "x"},
    ]
    m = compute_edit_metrics(records)
    assert m["edit/time_s/mean"] == 1.5 and m["edit/time_s/max"] == 2.0
    assert m["edit/error_groups"] == 1.0


def _info(overlong=0, reason=""):
    return {"ratescore": 0.5, "invalid": int(bool(reason)), "invalid_reason": reason, "overlong_response": overlong}


# Three prompts, G = 4 under the paper scheme (sessions 0-1 sampled, 2-3 the edit slots of sources 0-1), with
# fields as verl_ext/rollout/edit_worker.py sets them (a duplicate filling a slot copies its source's fields).
HEALTH = [
    # "a": source 0 ran into response_length (skipped, its slot a duplicate); source 1 edited, the edit over-long
    {"uid": "a", "reward": 0.1, "edit_skipped": "truncated", "reward_extra_info": _info(overlong=1)},
    {"uid": "a", "reward": 0.2, "reward_extra_info": _info()},
    {"uid": "a", "reward": 0.1, "edit_skipped": "truncated", "edit_duplicate": True, "edit_source_session": 0,
     "reward_extra_info": _info(overlong=1)},
    {"uid": "a", "reward": 0.9, "is_edited": True, "edit_ops": ["fn_append"], "reward_extra_info": _info(overlong=1)},
    # "b": analysing source 0 failed (its slot duplicates it, error included); source 1 edited; one invalid sample
    {"uid": "b", "reward": 0.0, "edit_error": "analysing the response: RuntimeError: NER failed",
     "reward_extra_info": _info(reason="rate_error;radgraph_error")},
    {"uid": "b", "reward": 0.3, "reward_extra_info": _info()},
    {"uid": "b", "reward": 0.0, "edit_error": "analysing the response: RuntimeError: NER failed",
     "edit_duplicate": True, "edit_source_session": 0, "reward_extra_info": _info(reason="rate_error;radgraph_error")},
    {"uid": "b", "reward": 0.8, "is_edited": True, "edit_ops": ["fp_replace"], "reward_extra_info": _info()},
    # "c": both sources truncated; resampling slot 2 failed (the error is only on its duplicate), slot 3 resampled
    {"uid": "c", "reward": 0.4, "edit_skipped": "truncated", "reward_extra_info": _info()},
    {"uid": "c", "reward": 0.4, "edit_skipped": "truncated", "reward_extra_info": _info(reason="empty_reference")},
    {"uid": "c", "reward": 0.4, "edit_skipped": "truncated", "edit_duplicate": True,
     "edit_error": "resampling: ConnectionError: server gone", "reward_extra_info": _info()},
    {"uid": "c", "reward": 0.5, "reward_extra_info": _info(reason="rate_error")},
]


def test_edit_skips_errors_overlong_and_invalid_known_answer():
    m = compute_edit_metrics(HEALTH)
    expected = {
        "sampled/count": 10.0,
        "edited/count": 2.0,
        # skips: the 3 truncated sources, each once (their 2 duplicates left out), among the 7 non-duplicate samples
        "edit/skipped/count": 3.0,
        "edit/skipped/share": 3 / 7,
        "edit/skipped/truncated/count": 3.0,
        "edit/skipped/truncated/share": 3 / 7,
        "edit/skipped/truncated/groups": 2.0,
        # errors: groups b and c, of 3
        "edit/error_groups": 2.0,
        "edit/error_groups_share": 2 / 3,
        "edit/error/analysing_the_response/groups": 1.0,
        "edit/error/resampling/groups": 1.0,
        # over-long responses: 2 of the 10 sampled trajectories, 1 of the 2 edited
        "reward/overlong/count": 3.0,
        "reward/overlong/share": 3 / 12,
        "sampled/overlong/count": 2.0,
        "sampled/overlong/share": 2 / 10,
        "edited/overlong/count": 1.0,
        "edited/overlong/share": 1 / 2,
        # invalid rewards, in all and by reason (one response can have two reasons)
        "reward/invalid/count": 4.0,
        "reward/invalid/share": 4 / 12,
        "sampled/invalid/count": 4.0,
        "sampled/invalid/share": 4 / 10,
        "edited/invalid/count": 0.0,
        "edited/invalid/share": 0.0,
        "sampled/invalid_reason/rate_error/count": 3.0,
        "sampled/invalid_reason/rate_error/share": 3 / 10,
        "sampled/invalid_reason/radgraph_error/count": 2.0,
        "sampled/invalid_reason/empty_reference/count": 1.0,
        "reward/invalid_reason/rate_error/share": 3 / 12,
        "edit/num_edited": 2.0,
    }
    for key, value in expected.items():
        assert m[key] == pytest.approx(value), key
    assert not any(k.startswith("edited/invalid_reason/") for k in m)  # no edited copy was invalid
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.values())


def test_health_metrics_without_those_fields():
    # no skips or errors: the known skip reasons are still charted (0) and the error share is 0;
    # a reward without the radiology fields (verl's stock reward) gets no overlong/invalid metrics, not zeros
    m = compute_edit_metrics([_rec("a", 1.0, ratescore=0.5), _rec("a", 0.0, True, ("fn_append",), ratescore=0.7)])
    assert m["edit/skipped/truncated/count"] == 0.0 and m["edit/skipped/share"] == 0.0
    assert m["edit/error_groups"] == 0.0 and m["edit/error_groups_share"] == 0.0
    assert not any("/error/" in k for k in m)
    assert not any(k.endswith(("overlong/count", "invalid/count")) or "invalid_reason" in k for k in m)


def test_health_metrics_take_numpy_flags_and_name_new_reasons():
    np = pytest.importorskip("numpy")
    info = {"invalid": np.int64(1), "invalid_reason": np.str_("facts_llm_unparseable;"),
            "overlong_response": np.bool_(True)}
    m = compute_edit_metrics([{"uid": "a", "reward": 0.0, "edit_skipped": "new reason", "reward_extra_info": info}])
    assert m["sampled/invalid/count"] == 1.0 and m["sampled/overlong/share"] == 1.0
    assert m["sampled/invalid_reason/facts_llm_unparseable/count"] == 1.0
    assert m["edit/skipped/new_reason/count"] == 1.0 and m["edit/skipped/truncated/count"] == 0.0
    assert m["edit/skipped/count"] == 1.0
