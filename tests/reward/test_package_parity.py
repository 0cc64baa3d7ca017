"""The reward's components against the packages the EditGRPO paper names (App. D: radgraph 0.1.2, RaTEScore 0.5.0),
through the installed radgraph 0.1.18 / RaTEScore 0.6.0 wherever their code is the same (sdists diffed)."""
import copy

import numpy as np
import pytest

from verl_ext.editing.types import Entity, ReportAnalysis, Sentence
from verl_ext.reward.components import PairData, get_component
from verl_ext.reward.config import RadiologyRewardConfig


def _report(*entities):
    text = "x" * 10
    return ReportAnalysis(text, (Sentence(text, 0, 10, tuple(Entity(t, typ, v) for t, typ, v in entities)),))


def _unit(i, dim=8):
    v = np.zeros(dim, dtype=np.float32)
    v[i] = 1.0
    return v


@pytest.fixture(scope="module")
def rate_analyzer_0_5_0():
    """A RateAnalyzer's scoring state without models: the 0.5.0 weight set and the package's compute."""
    from verl_ext.clinical.rate import RateAnalyzer, affinity_matrix

    a = object.__new__(RateAnalyzer)
    a._init_state(1, 1, 1)
    a.matrix = affinity_matrix("0.5.0")
    return a


def test_defaults_are_the_packages():
    cfg = RadiologyRewardConfig()
    assert cfg.rate_affinity == "0.5.0" and cfg.ratescore_no_entity == 0.5 and cfg.radgraph_lowercase is False
    with pytest.raises(ValueError, match="rate_affinity='medium'"):
        RadiologyRewardConfig(rate_affinity="medium")
    with pytest.raises(ValueError, match="ratescore_no_entity"):
        RadiologyRewardConfig(ratescore_no_entity=2.0)


def test_entity_free_response_scores_what_ratescore_scores(monkeypatch, rate_analyzer_0_5_0):
    """RaTEScore.compute_score gives 0.5 to a pair whose candidate has no entity (0.5.0 and 0.6.0 alike)."""
    import RaTEScore.scorer as scorer
    from RaTEScore import RaTEScore

    official = object.__new__(RaTEScore)  # the package's compute_score with NER and embeddings stubbed out
    official.idx2label, official.tokenizer, official.model, official.device, official.batch_size = {}, None, None, "cpu", 1
    official.eval_tokenizer = official.eval_model = None
    official.visualization_path = None
    official.affinity_matrix = {}
    ner = iter([[[("effusion", "DISEASE")]], [[]]])  # references, then candidates
    monkeypatch.setattr(scorer, "run_ner", lambda *a, **k: next(ner))
    monkeypatch.setattr(scorer, "process_embedding",
                        lambda pairs, *a: (np.ones((len(pairs), 8)) if pairs else [], [t for _, t in pairs]))
    package = official.compute_score(["Unremarkable."], ["Small effusion."])
    assert package == [0.5]

    ratescore = get_component("ratescore").fn
    pair = PairData("Unremarkable.", "Small effusion.", rate_response=_report(),
                    rate_reference=_report(("effusion", "DISEASE", _unit(0))), rate_analyzer=rate_analyzer_0_5_0)
    assert ratescore(pair, RadiologyRewardConfig()) == package[0]
    assert ratescore(pair, RadiologyRewardConfig(ratescore_no_entity=0.0)) == 0.0  # the option


def test_0_5_0_weight_set_is_the_papers_ratescore(rate_analyzer_0_5_0):
    """RaTEScore 0.5.0 (utils.compute: neg_weight = 0.3612, its one matrix = 0.6.0's long type weights): a pair that
    differs only in presence scores the negation weight; 0.6.0's long set gives 0.8717."""
    from verl_ext.clinical.rate import affinity_matrix

    long = affinity_matrix("long")
    old = affinity_matrix("0.5.0")
    assert {k: v for k, v in old.items() if k != ("NEG", "WEIGHT")} == {
        k: v for k, v in long.items() if k != ("NEG", "WEIGHT")}
    assert old[("NEG", "WEIGHT")] == 0.3612 and long[("NEG", "WEIGHT")] == pytest.approx(0.8716553966489615)
    present, absent = _report(("effusion", "DISEASE", _unit(0))), _report(("no effusion", "NON-DISEASE", _unit(0)))
    assert rate_analyzer_0_5_0.ratescore(present, absent) == pytest.approx(0.3612)


def test_radgraph_component_is_case_sensitive_like_the_package():
    from radgraph.rewards import compute_reward

    def ent(tokens, label, relations=()):
        return {"tokens": tokens, "label": label, "relations": [list(r) for r in relations]}

    ref = {"entities": {"1": ent("effusion", "OBS-DP", [("located_at", "2")]), "2": ent("pleural", "ANAT-DP"),
                        "3": ent("pneumothorax", "OBS-DA")}}
    hyp = copy.deepcopy(ref)
    hyp["entities"]["1"]["tokens"] = "Effusion"
    del hyp["entities"]["3"]
    pair = PairData("h", "r", radgraph_response=hyp, radgraph_reference=ref)
    radgraph = get_component("radgraph_f1").fn
    package = compute_reward(hyp, ref, "partial")
    assert package == pytest.approx(0.4)  # P = 1/2, R = 1/3
    assert radgraph(pair, RadiologyRewardConfig()) == package
    assert radgraph(pair, RadiologyRewardConfig(radgraph_lowercase=True)) == pytest.approx(0.8)  # the option
