"""LexiconAnalyzer: term matching, ConText negation/uncertainty, real MiniLM embeddings, and end-to-end edits."""
import json
import random

import numpy as np
import pytest

from verl_ext.clinical.lexicon import (
    DEFAULT_LEXICON_PATH,
    LexiconAnalyzer,
    LexiconAnalyzerConfig,
    default_model_dir,
    load_lexicon,
)
from verl_ext.editing import EditConfig, ReportAnalyzer, edit_report


@pytest.fixture(scope="module")
def analyzer():
    return LexiconAnalyzer()


def edit_texts(analyzer, generated, reference, seed=0, **cfg):
    g, r = analyzer.analyze([generated, reference])
    return edit_report(g, r, EditConfig(**cfg), rng=random.Random(seed))


def entities(analyzer, text):
    (a,) = analyzer.analyze([text])
    return [(e.text, e.type, e.presence) for s in a.sentences for e in s.entities]


# ------------------------------------------------------------------------------------------------ analysis


@pytest.mark.parametrize(
    "sentence, expected",
    [
        ("There is a large left pleural effusion.", [("pleural effusion", "ABNORMALITY", "present")]),
        ("No pleural effusion or pneumothorax.",
         [("pleural effusion", "NON-ABNORMALITY", "absent"), ("pneumothorax", "NON-ABNORMALITY", "absent")]),
        ("Effusions are not seen.", [("Effusions", "NON-ABNORMALITY", "absent")]),
        ("Pneumothorax has resolved.", [("Pneumothorax", "NON-ABNORMALITY", "absent")]),
        ("Cannot exclude small pneumothorax.", [("pneumothorax", "ABNORMALITY", "uncertain")]),
        ("Pneumonia cannot be excluded.", [("Pneumonia", "DISEASE", "uncertain")]),
        ("No evidence of pneumonia.", [("pneumonia", "NON-DISEASE", "absent")]),
        ("The heart is within normal limits.", [("heart is within normal limits", "NON-ABNORMALITY", "absent")]),
        ("Heart size is normal.", [("Heart size is normal", "NON-ABNORMALITY", "absent")]),
        ("Lungs are clear.", [("Lungs are clear", "NON-ABNORMALITY", "absent")]),
        ("Multiple pulmonary nodules.", [("pulmonary nodules", "ABNORMALITY", "present")]),
        ("Opacity in the left lower lobe.",
         [("Opacity", "ABNORMALITY", "present"), ("left lower lobe", "ANATOMY", None)]),
        ("No acute cardiopulmonary process.", [("acute cardiopulmonary process", "NON-ABNORMALITY", "absent")]),
        ("Endotracheal tube terminates 4 cm above the carina.",
         [("Endotracheal tube", "ABNORMALITY", "present"), ("carina", "ANATOMY", None)]),
        ("No effusion, but there is mild pulmonary edema.",
         [("effusion", "NON-ABNORMALITY", "absent"), ("pulmonary edema", "ABNORMALITY", "present")]),
        ("No evidence of pneumothorax; mild bibasilar atelectasis.",
         [("pneumothorax", "NON-ABNORMALITY", "absent"), ("bibasilar atelectasis", "ABNORMALITY", "present")]),
        ("Findings suggest early pneumonia.", [("pneumonia", "DISEASE", "uncertain")]),
        ("Left lower lobe opacity, atelectasis versus pneumonia.",
         [("Left lower lobe", "ANATOMY", None), ("opacity", "ABNORMALITY", "uncertain"),
          ("atelectasis", "ABNORMALITY", "uncertain"), ("pneumonia", "DISEASE", "uncertain")]),
        ("Nothing to see here.", []),
    ],
)
def test_entities_types_and_presence(analyzer, sentence, expected):
    assert entities(analyzer, sentence) == expected


def test_sentences_are_exact_spans(analyzer):
    text = "FINDINGS:\n  The heart is within normal limits.\r\n\r\nNo  pleural effusion…  Ünïcode 1.5 cm nodule.\n"
    (a,) = analyzer.analyze([text])
    assert a.text == text
    for s in a.sentences:
        assert text[s.start:s.end] == s.text
    assert [s.text for s in a.sentences] == [
        "FINDINGS:", "The heart is within normal limits.", "No  pleural effusion…", "Ünïcode 1.5 cm nodule."]


def test_empty_and_whitespace_texts(analyzer):
    a, b = analyzer.analyze(["", "  \n "])
    assert a.sentences == () and b.sentences == () and b.text == "  \n "
    assert analyzer.analyze([]) == []
    with pytest.raises(TypeError):
        analyzer.analyze("a single string")


def test_protocol(analyzer):
    assert isinstance(analyzer, ReportAnalyzer)


def test_real_embeddings(analyzer):
    (a,) = analyzer.analyze(["Cardiomegaly. Widened mediastinum. Rib fracture. Cardiomegaly is present."])
    e = [s.entities[0].embedding for s in a.sentences]
    assert e[0].dtype == np.float32 and e[0].shape == (384,)
    assert abs(float(np.linalg.norm(e[0])) - 1.0) < 1e-4
    cos = lambda x, y: float(x @ y)  # noqa: E731
    assert cos(e[0], e[3]) > 0.999  # same concept
    assert cos(e[0], e[1]) > cos(e[0], e[2])  # enlarged cardiomediastinum is closer to cardiomegaly than a fracture


def test_matches_sentence_transformers(analyzer):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(default_model_dir()), device="cpu")
    strings = ["pleural effusion", "cardiomegaly", "left lower lobe"]
    ours = np.stack(analyzer.embed(strings))
    theirs = model.encode(strings, normalize_embeddings=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_batched_equals_one_at_a_time_and_caches(analyzer):
    texts = ["No pneumothorax. Small right pleural effusion.", "Mild cardiomegaly.\nNo focal consolidation.",
             "Possible pneumonia. Lungs are clear.", "No pneumothorax. Small right pleural effusion."]
    batched = analyzer.analyze(texts)
    single = [analyzer.analyze([t])[0] for t in texts]
    for x, y in zip(batched, single):
        assert [s.text for s in x.sentences] == [s.text for s in y.sentences]
        for sx, sy in zip(x.sentences, y.sentences):
            assert [(e.text, e.type, e.presence) for e in sx.entities] == [(e.text, e.type, e.presence)
                                                                          for e in sy.entities]
            for ex, ey in zip(sx.entities, sy.entities):
                np.testing.assert_array_equal(ex.embedding, ey.embedding)
    before = analyzer.stats["embedded_strings"]
    analyzer.analyze(texts)
    assert analyzer.stats["embedded_strings"] == before  # nothing re-embedded
    assert analyzer.stats["sentence_cache_hits"] > 0


def test_lexicon_covers_chexpert_14():
    lex = load_lexicon()
    chexpert = {c.get("chexpert") for c in lex["concepts"]} - {None}
    assert chexpert == {
        "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Lung Opacity", "Edema",
        "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
        "Support Devices"}
    with open(DEFAULT_LEXICON_PATH, encoding="utf-8") as f:
        assert json.load(f)["context_rules"]


@pytest.mark.parametrize(
    "sentence, concept_word",
    [("Widened mediastinum.", "mediastinum"), ("Mild cardiomegaly.", "cardiomegaly"), ("Lung mass.", "mass"),
     ("Patchy opacity.", "opacity"), ("Interstitial edema.", "edema"), ("Focal consolidation.", "consolidation"),
     ("Pneumonia.", "pneumonia"), ("Bibasilar atelectasis.", "atelectasis"), ("Pneumothorax.", "pneumothorax"),
     ("Pleural effusion.", "effusion"), ("Pleural thickening.", "thickening"), ("Rib fracture.", "fracture"),
     ("Left PICC line.", "picc"), ("Normal chest radiograph.", "normal")],
)
def test_chexpert_phrases_are_found(analyzer, sentence, concept_word):
    found = entities(analyzer, sentence)
    assert any(concept_word in text.lower() for text, _, _ in found), found


def test_config_validation_and_injected_embedder(analyzer):
    with pytest.raises(ValueError):
        LexiconAnalyzerConfig(embed="word")
    with pytest.raises(ValueError):
        LexiconAnalyzerConfig(uncertain_as="maybe")
    seen = []

    def fake(strings):
        seen.extend(strings)
        return np.ones((len(strings), 4), dtype=np.float32)

    a = LexiconAnalyzer(LexiconAnalyzerConfig(embed="mention", uncertain_as="present"), embedder=fake)
    (r,) = a.analyze(["Possible pneumonia. Large Pleural Effusion."])
    assert [(e.text, e.type, e.presence) for s in r.sentences for e in s.entities] == [
        ("pneumonia", "DISEASE", "present"), ("Pleural Effusion", "ABNORMALITY", "present")]
    assert seen == ["pneumonia", "pleural effusion"]  # mention text, lower-cased


# ------------------------------------------------------------------------------------------------ end to end


def test_e2e_conflict_effusion(analyzer):
    res = edit_texts(analyzer, "There is a large left pleural effusion.", "No pleural effusion.")
    assert [op.kind for op in res.ops] == ["conflict_replace"]
    assert res.text == "No pleural effusion."


def test_e2e_fig1_cardiomegaly(analyzer):
    res = edit_texts(analyzer, "The heart is within normal limits. No pleural effusion.",
                     "Cardiomegaly. No pleural effusion.")
    assert [(op.kind, op.gen_index, op.ref_index) for op in res.ops] == [("conflict_replace", 0, 0)]
    assert res.text == "Cardiomegaly. No pleural effusion."


def test_e2e_false_negative_append(analyzer):
    res = edit_texts(analyzer, "No pneumothorax.\n", "No pneumothorax. Mild pulmonary edema.")
    assert [op.kind for op in res.ops] == ["fn_append"]
    assert res.text == "No pneumothorax. Mild pulmonary edema.\n"


def test_e2e_false_positive_delete(analyzer):
    res = edit_texts(analyzer, "Acute left rib fracture. No pneumothorax.", "No pneumothorax.")
    assert [op.kind for op in res.ops] == ["fp_delete"]
    assert res.text == "No pneumothorax."


def test_e2e_uncertain_vs_present(analyzer):
    res = edit_texts(analyzer, "Possible pneumonia.", "Pneumonia in the right lower lobe.")
    assert [op.kind for op in res.ops] == ["conflict_replace"]
    assert res.text == "Pneumonia in the right lower lobe."


def test_e2e_no_edit_for_equivalent_reports(analyzer):
    gen = "The lungs are clear.  No pneumothorax.\n"
    res = edit_texts(analyzer, gen, "Lungs are clear. No pneumothorax. Heart size is normal.", max_ops=3)
    # heart size normal is missing -> appended; the rest untouched, byte for byte
    assert [op.kind for op in res.ops] == ["fn_append"]
    assert res.text == "The lungs are clear.  No pneumothorax. Heart size is normal.\n"
    same = edit_texts(analyzer, gen, "Lungs are clear. No pneumothorax.")
    assert not same.changed and same.text == gen


def test_e2e_multi_op_realistic(analyzer):
    gen = ("PA and lateral views of the chest.\nThe heart is normal in size. There is a small left pleural effusion.\n"
           "No pneumothorax. Degenerative changes of the thoracic spine.")
    ref = ("Moderate cardiomegaly. No pleural effusion or pneumothorax. Mild pulmonary edema. "
           "Degenerative changes of the spine.")
    res = edit_texts(analyzer, gen, ref, seed=1, max_ops=5)
    assert [op.kind for op in res.ops] == ["conflict_replace", "conflict_replace", "fn_append"]
    assert res.sentences == ["PA and lateral views of the chest.", "Moderate cardiomegaly.",
                             "No pleural effusion or pneumothorax.", "No pneumothorax.",
                             "Degenerative changes of the thoracic spine.", "Mild pulmonary edema."]
    # kept text is byte-identical, including the newlines
    assert res.text.startswith("PA and lateral views of the chest.\nModerate cardiomegaly. ")
    assert "\nNo pneumothorax. Degenerative changes of the thoracic spine. Mild pulmonary edema." in res.text
