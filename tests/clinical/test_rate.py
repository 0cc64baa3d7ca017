"""RaTE analyzer: same entities and scores as the RaTEScore package, exact spans, batching, caching, reuse."""

import numpy as np
import pytest

from verl_ext.editing.sentences import split_sentences
from verl_ext.editing.types import Entity, ReportAnalysis, Sentence

REFS = [
    "Heart size is normal. No pleural effusion or pneumothorax.",
    "Mild cardiomegaly. Bibasilar atelectasis.",
    "FINDINGS:\nThe lungs are clear . no effusion .\nIMPRESSION: No acute cardiopulmonary process.",
    "1. Mild left basal atelectasis. Otherwise unremarkable. 2. No definite displaced rib fracture (3.5 cm).",
]
HYPS = [
    "The heart is enlarged. Small left pleural effusion.",
    "Mild cardiomegaly.",
    "Stable appearance of the chest; tubes and lines unchanged.",
    "Mild left basal atelectasis",
]


@pytest.fixture(scope="module")
def analyzer(scorer_paths):
    from verl_ext.clinical.rate import RateAnalyzer

    return RateAnalyzer(str(scorer_paths.rate_ner), str(scorer_paths.biolord), device="cpu", ner_batch_size=4)


@pytest.fixture(scope="module")
def official(scorer_paths):
    from RaTEScore import RaTEScore

    from verl_ext.clinical import compat

    compat.silence_pyrush()
    return RaTEScore(
        bert_model=str(scorer_paths.rate_ner), eval_model=str(scorer_paths.biolord), use_gpu=False, batch_size=1
    )


def test_entities_and_scores_equal_the_package(analyzer, official):
    from RaTEScore.score import run_ner

    expected = official.compute_score(HYPS, REFS)
    analyses = analyzer.analyze(HYPS + REFS)
    ours = [analyzer.ratescore(h, r) for h, r in zip(analyses[:4], analyses[4:])]
    assert ours == pytest.approx(expected, abs=1e-5)
    pairs = run_ner(REFS, official.idx2label, official.tokenizer, official.model, official.device, 1)
    for p, a in zip(pairs, analyses[4:]):
        assert [(t, typ) for t, typ in p] == [(e.text, e.type) for e in a.entities]


def test_package_misaligns_on_empty_candidate_and_we_do_not(analyzer, official):
    hyps = [HYPS[0], "", HYPS[2]]
    refs = REFS[:3]
    upstream = official.compute_score(hyps, refs)
    assert len(upstream) == 2  # the empty candidate lost its slot: the third candidate was scored against ref 2
    a = analyzer.analyze(hyps + refs)
    assert a[1].entities == ()  # an empty report has no entity; the reward scores it 0 (not the package's 0.5)
    assert analyzer.ratescore(a[1], a[4]) is None
    alone = analyzer.ratescore(*analyzer.analyze([HYPS[2], REFS[2]]))
    assert analyzer.ratescore(a[2], a[5]) == pytest.approx(alone)
    assert upstream[1] == pytest.approx(official.compute_score([HYPS[2]], [REFS[1]])[0])


def test_sentences_are_exact_project_spans(analyzer):
    for text, a in zip(REFS, analyzer.analyze(REFS)):
        assert [(s.start, s.end) for s in a.sentences] == split_sentences(text)
        assert all(text[s.start : s.end] == s.text for s in a.sentences)
        for e in a.entities:
            assert (
                e.embedding.shape == (analyzer.embedder.model.config.hidden_size,) and e.embedding.dtype == np.float32
            )


def test_batched_equals_one_at_a_time_and_cache_equals_fresh(scorer_paths):
    from verl_ext.clinical.rate import RateAnalyzer

    texts = REFS + HYPS
    batched = RateAnalyzer(str(scorer_paths.rate_ner), str(scorer_paths.biolord), device="cpu", ner_batch_size=16)
    single = RateAnalyzer(str(scorer_paths.rate_ner), str(scorer_paths.biolord), device="cpu", ner_batch_size=1)
    a = batched.analyze(texts)
    b = [single.analyze([t])[0] for t in texts]
    for x, y in zip(a, b):
        assert [(e.text, e.type) for e in x.entities] == [(e.text, e.type) for e in y.entities]
        for ex, ey in zip(x.entities, y.entities):
            np.testing.assert_allclose(ex.embedding, ey.embedding, atol=1e-5)
    # cached: no model work the second time, and the same analyses
    before = dict(batched.counters)
    again = batched.analyze(texts + texts)
    assert batched.counters["ner_sentences"] == before["ner_sentences"]
    assert batched.counters["embedded_entities"] == before["embedded_entities"]
    assert all(x is y for x, y in zip(again[: len(texts)], a))


def test_precomputed_analysis_compatibility(analyzer):
    a = analyzer.analyze([HYPS[0]])[0]
    assert analyzer.is_compatible(a, HYPS[0])
    assert analyzer.is_compatible(a.to_dict(), HYPS[0])  # the dict form (e.g. after JSON transport)
    assert not analyzer.is_compatible(a, HYPS[0] + " ")
    no_vec = ReportAnalysis(
        a.text,
        tuple(Sentence(s.text, s.start, s.end, tuple(Entity(e.text, e.type) for e in s.entities)) for s in a.sentences),
    )
    assert not analyzer.is_compatible(no_vec, HYPS[0]) or not a.entities


def test_ratescore_known_answers(analyzer):
    """Hand-made entities: identical sets score 1; a presence flip is penalised by the matrix's neg weight."""
    e = np.zeros(analyzer.embedder.model.config.hidden_size, dtype=np.float32)
    e[0] = 1.0
    f = np.zeros_like(e)
    f[1] = 1.0

    def rep(*ents):
        return ReportAnalysis("x" * 10, (Sentence("x" * 10, 0, 10, tuple(Entity(t, typ, v) for t, typ, v in ents)),))

    same = rep(("effusion", "DISEASE", e), ("lung", "ANATOMY", f))
    assert analyzer.ratescore(same, same) == pytest.approx(1.0)
    neg = analyzer.matrix[("NEG", "WEIGHT")]
    assert neg == pytest.approx(0.8716553966489615)
    assert analyzer.ratescore(rep(("effusion", "DISEASE", e)), rep(("no effusion", "NON-DISEASE", e))) == pytest.approx(
        neg
    )
    # orthogonal entities: cosine 0 both ways -> 0
    assert analyzer.ratescore(rep(("a", "DISEASE", e)), rep(("b", "DISEASE", f))) == 0.0
    assert analyzer.ratescore(rep(), same) is None


def test_unit_cache_makes_edited_reports_cheap(scorer_paths):
    from verl_ext.clinical.rate import RateAnalyzer

    an = RateAnalyzer(str(scorer_paths.rate_ner), str(scorer_paths.biolord), device="cpu")
    src, ref = "Heart size is normal. Small left pleural effusion.", "Mild cardiomegaly. Bibasilar atelectasis."
    an.analyze([src, ref])
    n = an.counters["ner_sentences"]
    edited = "Heart size is normal. Bibasilar atelectasis."  # a kept source sentence + an inserted reference sentence
    a = an.analyze([edited])[0]
    assert an.counters["ner_sentences"] == n
    fresh = RateAnalyzer(str(scorer_paths.rate_ner), str(scorer_paths.biolord), device="cpu", analysis_cache_mb=0)
    assert [(e.text, e.type) for e in a.entities] == [(e.text, e.type) for e in fresh.analyze([edited])[0].entities]


def test_composed_analysis_accepted_only_when_units_stay_inside_sentences(analyzer):
    from verl_ext.clinical.rate import rate_units

    ok = "Heart size is normal. No pleural effusion."
    assert analyzer.is_compatible(analyzer.analyze([ok])[0], ok)
    crossing = "The lungs are clear . no effusion ."  # one medspacy unit, two project sentences
    assert len(rate_units(crossing)) == 1 and len(split_sentences(crossing)) == 2
    assert not analyzer.is_compatible(analyzer.analyze([crossing])[0], crossing)


def test_overlong_flag_survives_the_handover_from_the_edit_step(analyzer):
    """The edit step hands its analysis over as ``to_dict()`` (an edited copy's is composed from other texts'
    sentences); the reward adopts it, and must still see that RaTE-NER read a unit only up to 512 positions."""
    from verl_ext.clinical.rate import rate_units

    runaway = " ".join(["small left pleural effusion and mild cardiomegaly"] * 120) + "."  # one sentence
    assert len(rate_units(runaway)) == 1
    assert len(analyzer.ner.tokenizer(runaway)["input_ids"]) > 512
    own_long, own_short = analyzer.analyze([runaway, HYPS[0]])
    assert analyzer.overlong(own_long) and not analyzer.overlong(own_short)
    for own in (own_long, own_short):
        handed = ReportAnalysis.from_dict(own.to_dict())
        assert "_input_capped" not in handed.__dict__  # the dict form does not carry the flag
        assert analyzer.overlong(handed) == analyzer.overlong(own)
    # just under the limit: not over-long, whichever way the analysis came
    fits = " ".join(["effusion"] * 200) + "."
    assert len(analyzer.ner.tokenizer(fits)["input_ids"]) <= 512
    assert not analyzer.overlong(ReportAnalysis.from_dict(analyzer.analyze([fits])[0].to_dict()))
