"""Known-answer tests of RadGraph F1 (simple / partial / complete), and equality with radgraph.rewards."""

import copy

import pytest

from verl_ext.metrics.radgraph import radgraph_f1, radgraph_f1_all


def ent(tokens, label, relations=()):
    return {"tokens": tokens, "label": label, "relations": [list(r) for r in relations]}


HYP = {"entities": {"1": ent("effusion", "OBS-DP", [("located_at", "2")]), "2": ent("pleural", "ANAT-DP")}}
REF = {
    "entities": {
        "1": ent("effusion", "OBS-DP", [("located_at", "2")]),
        "2": ent("pleural", "ANAT-DP"),
        "3": ent("pneumothorax", "OBS-DA"),
    }
}


def test_known_answers():
    # hyp items are a subset of ref items: P = 1, R = 2/3 -> F1 = 0.8 at every level
    assert radgraph_f1(HYP, REF, "partial") == pytest.approx(0.8)
    assert radgraph_f1_all(HYP, REF) == pytest.approx((0.8, 0.8, 0.8))
    # the relation matters at the partial level: drop it and "effusion" no longer matches
    no_rel = copy.deepcopy(HYP)
    no_rel["entities"]["1"]["relations"] = []
    assert radgraph_f1(no_rel, REF, "simple") == pytest.approx(0.8)
    assert radgraph_f1(no_rel, REF, "partial") == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    # no entity on one side -> 0
    assert radgraph_f1({"entities": {}}, REF) == 0.0
    assert radgraph_f1(HYP, {"entities": {}}) == 0.0
    with pytest.raises(ValueError):
        radgraph_f1(HYP, REF, "exact")


def test_case_sensitivity_and_lowercase_fix():
    upper = copy.deepcopy(HYP)
    upper["entities"]["1"]["tokens"] = "Effusion"
    # radgraph 0.1.18: "Effusion" != "effusion": P = 1/2, R = 1/3 -> 0.4
    assert radgraph_f1(upper, REF, "partial") == pytest.approx(0.4)
    assert radgraph_f1(upper, REF, "partial", lowercase=True) == pytest.approx(0.8)


@pytest.mark.parametrize("level", ["simple", "partial", "complete"])
def test_equals_radgraph_package(level):
    from radgraph.rewards import compute_reward

    upper = copy.deepcopy(HYP)
    upper["entities"]["1"]["tokens"] = "Effusion"
    for h, r in [(HYP, REF), (upper, REF), (REF, HYP), ({"entities": {}}, REF)]:
        assert radgraph_f1(h, r, level) == compute_reward(h, r, level)
