"""RadGraph annotator (packed batches == the package's per-report output) and the RadGraph analyzer."""

import pytest

from verl_ext.clinical.radgraph import RadGraphAnalyzer, RadGraphAnnotator, entity_type_of, token_char_starts
from verl_ext.editing.sentences import split_sentences

TEXTS = [
    "Heart size is normal. No pleural effusion or pneumothorax.",
    "Mild cardiomegaly. Bibasilar atelectasis.",
    "Lungs are clear.",
    "Lungs are clear . ",  # same token count as the previous one (packed together)
    "Heart is normal.",
    "FINDINGS:\nThe lungs are clear . no effusion .\nIMPRESSION: No acute cardiopulmonary process.",
    "1. Mild left basal atelectasis. Otherwise unremarkable. 2. No definite displaced rib fracture (3.5 cm).",
]


@pytest.fixture(scope="module")
def annotator(scorer_paths):
    return RadGraphAnnotator(
        str(scorer_paths.radgraph_cache), scorer_paths.radgraph_model_type, device="cpu", batch_size=8
    )


def test_packed_equals_package_per_report(annotator):
    ours = annotator.annotate(TEXTS)
    assert annotator.counters["forward_passes"] < len(TEXTS)  # some reports shared a forward pass
    upstream = annotator.rg(TEXTS)  # the package: one report per forward pass
    for i, ann in enumerate(ours):
        assert ann["text"] == upstream[str(i)]["text"]
        assert ann["entities"] == upstream[str(i)]["entities"], TEXTS[i]
    assert any(ann["entities"] for ann in ours)


def test_cache_and_empty(annotator):
    annotator.annotate(TEXTS)
    passes = annotator.counters["forward_passes"]
    again = annotator.annotate(["", "   ", *TEXTS])
    assert annotator.counters["forward_passes"] == passes
    assert again[0]["entities"] == {} and again[1]["entities"] == {}


def test_entity_type_mapping():
    assert entity_type_of("OBS-DP") == ("ABNORMALITY", None)
    assert entity_type_of("OBS-DA") == ("NON-ABNORMALITY", None)
    assert entity_type_of("OBS-U") == ("ABNORMALITY", "uncertain")
    assert entity_type_of("ANAT-DP") == ("ANATOMY", None)
    assert entity_type_of("Observation::definitely present") == ("ABNORMALITY", None)
    assert entity_type_of("Observation::definitely absent") == ("NON-ABNORMALITY", None)
    assert entity_type_of("Observation::uncertain") == ("ABNORMALITY", "uncertain")
    assert entity_type_of("Anatomy::definitely present") == ("ANATOMY", None)


def test_token_char_starts():
    text = "No pleural effusion (3.5 cm)."
    tokens = ["No", "pleural", "effusion", "(", "3", ".", "5", "cm", ").", "missing"]
    starts = token_char_starts(text, tokens)
    assert [text[s : s + len(t)] for s, t in zip(starts, tokens)][:9] == tokens[:9]
    assert starts[9] == len(text)


def test_analyzer_sentences_and_presence(annotator):
    analyzer = RadGraphAnalyzer(annotator)
    analyses = analyzer.analyze(TEXTS)
    anns = annotator.annotate(TEXTS)
    for text, a, ann in zip(TEXTS, analyses, anns):
        assert [(s.start, s.end) for s in a.sentences] == split_sentences(text)
        assert len(a.entities) == len(ann["entities"])
        assert all(e.embedding is None for e in a.entities)
    labels = {e["label"] for ann in anns for e in ann["entities"].values()}
    presences = {e.presence for a in analyses for e in a.entities}
    if "OBS-U" in labels:
        assert "uncertain" in presences
    # an entity lands in the sentence holding its first token
    a = analyses[0]
    for s in a.sentences:
        for e in s.entities:
            assert e.text.split()[0] in s.text
