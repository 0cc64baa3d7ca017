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
