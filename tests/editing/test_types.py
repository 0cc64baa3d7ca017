"""Data types: presence mapping, exact-span validation, dict round trips, the analyzer protocol."""
import numpy as np
import pytest

from verl_ext.editing import Entity, ReportAnalysis, ReportAnalyzer, Sentence, EditConfig, EditResult, Segment


def test_presence_mapping_and_override():
    assert Entity("x", "ABNORMALITY").presence == "present"
    assert Entity("x", "DISEASE").presence == "present"
    assert Entity("x", "NON-ABNORMALITY").presence == "absent"
    assert Entity("x", "NON-DISEASE").presence == "absent"
    assert Entity("x", "ANATOMY").presence is None
    assert Entity("x", "ABNORMALITY", presence_label="uncertain").presence == "uncertain"
    with pytest.raises(ValueError):
        Entity("x", "FINDING")
    with pytest.raises(ValueError):
        Entity("x", "ABNORMALITY", presence_label="maybe")
    e = Entity("x", "ANATOMY", [1, 2, 3])
    assert e.embedding.dtype == np.float32 and e.embedding.shape == (3,)


def test_from_dict_joins_sentences_and_computes_offsets():
    r = ReportAnalysis.from_dict({"sentences": [
        {"text": "No effusion.", "entities": [{"text": "effusion", "type": "NON-ABNORMALITY", "embedding": [1.0, 0.0]}]},
        {"text": "Heart ok."}]})
    assert r.text == "No effusion. Heart ok."
    assert [(s.start, s.end) for s in r.sentences] == [(0, 12), (13, 22)]
    assert r.sentences[0].entities[0].presence == "absent"
    back = ReportAnalysis.from_dict(r.to_dict())
    assert back.to_dict() == r.to_dict()


def test_from_dict_with_text_locates_sentences():
    r = ReportAnalysis.from_dict({"text": "A.\n\nB.  A.", "sentences": [{"text": "A."}, {"text": "B."}, {"text": "A."}]})
    assert [(s.start, s.end) for s in r.sentences] == [(0, 2), (4, 6), (8, 10)]
    with pytest.raises(ValueError, match="not found"):
        ReportAnalysis.from_dict({"text": "A.", "sentences": [{"text": "C."}]})


def test_spans_must_be_exact_and_ordered():
    with pytest.raises(ValueError, match="exact"):
        ReportAnalysis("No effusion.", (Sentence("no effusion.", 0, 12),))
    with pytest.raises(ValueError, match="exact"):
        ReportAnalysis("A. B.", (Sentence("B.", 3, 5), Sentence("A.", 0, 2)))
    with pytest.raises(ValueError):
        Sentence("abc", 0, 2)


def test_protocol_and_config_validation():
    class Dummy:
        def analyze(self, texts):
            return [ReportAnalysis(t, ()) for t in texts]

    assert isinstance(Dummy(), ReportAnalyzer)
    for bad in (2.0, 1.0, 0.0, -0.5):  # no entity can match at cos > 1; at tau <= 0 unrelated entities match
        with pytest.raises(ValueError, match="tau"):
            EditConfig(tau=bad)
    EditConfig(tau=0.999)
    with pytest.raises(ValueError):
        EditConfig(max_ops=-1)
    with pytest.raises(ValueError):
        EditConfig(matching="fuzzy")


def test_merged_segments_coalesces():
    res = EditResult("A. B. C.", ["A.", "B.", "C."], True, [], [
        Segment("kept", "sentence", "A.", (0, 2), gen_index=0),
        Segment("kept", "separator", " ", (2, 3)),
        Segment("inserted", "sentence", "B.", ref_index=1),
        Segment("inserted", "separator", " "),
        Segment("kept", "sentence", "C.", (6, 8), gen_index=2),
    ])
    assert res.merged_segments() == [("kept", (0, 3)), ("inserted", "B. "), ("kept", (6, 8))]
