"""FactS (OraPO): scoring math, the LLM backend's prompts and parsing on canned completions, the analyzer backend."""
import re

import pytest

from verl_ext.clinical.facts import FactsLLMScorer, FactsUnavailable
from verl_ext.editing import Entity, ReportAnalysis, Sentence
from verl_ext.metrics.chexbert import CONDITIONS
from verl_ext.metrics.facts import (
    Fact,
    analyzer_facts,
    condition_of,
    extraction_prompt,
    f_beta,
    facts_score,
    judgement_prompt,
    label_statements,
    parse_facts,
    parse_verdicts,
)


def labels(*present):
    return [int(c in present) for c in CONDITIONS]


REF = labels("Cardiomegaly", "Pleural Effusion")


def test_f_beta_known_values():
    assert f_beta(0.5, 1.0, beta=1.0) == pytest.approx(2 / 3)
    assert f_beta(0.5, 1.0, beta=2.0) == pytest.approx(5 * 0.5 / (4 * 0.5 + 1))  # 0.8333: recall weighs more
    assert f_beta(1.0, 0.5, beta=2.0) == pytest.approx(5 * 0.5 / (4 + 0.5))  # 0.5556
    assert f_beta(0.0, 0.0) == 0.0


def test_facts_score_known_answer():
    facts = [
        Fact("The heart is enlarged.", "entailed", "Cardiomegaly"),
        Fact("There is a pneumothorax.", "contradicted", "Pneumothorax"),
        Fact("Sternotomy wires.", "neutral"),
    ]
    r = facts_score(facts, REF, beta=2.0)
    assert r.precision == pytest.approx(0.5) and r.recall == pytest.approx(0.5)  # effusion missed
    assert r.f_beta == pytest.approx(0.5)
    assert facts_score(facts, REF, neutral_as_fp=True).precision == pytest.approx(1 / 3)
    empty = facts_score([], REF)
    assert empty.precision == 0.0 and empty.recall == 0.0 and empty.f_beta == 0.0
    unscorable = facts_score(facts, labels())
    assert unscorable.recall is None and unscorable.f_beta is None and not unscorable.scorable
    with pytest.raises(ValueError):
        facts_score([Fact("x", "maybe")], REF)


def test_label_statements():
    s = label_statements(REF)
    assert len(s) == 14 and "Cardiomegaly: present" in s and "Pneumothorax: absent" in s
    with pytest.raises(ValueError):
        label_statements([1, 0])


EXTRACTION = """Facts:
- The heart is enlarged.
- Small left pleural effusion is present.
* No pneumothorax.
"""
JUDGEMENT = """1. entailed | Cardiomegaly
2. Entailed | Pleural Effusion.
3. entailed | pneumothorax
"""


def test_llm_prompts_and_parsing():
    prompt = extraction_prompt("The heart is enlarged.  Small left effusion.")
    assert "Report:\nThe heart is enlarged. Small left effusion." in prompt and prompt.endswith("Facts:\n")
    facts = parse_facts(EXTRACTION)
    assert facts == ["The heart is enlarged.", "Small left pleural effusion is present.", "No pneumothorax."]
    assert parse_facts("- none") == [] and parse_facts("I cannot do that.") is None
    judge = judgement_prompt(facts, REF)
    assert "- Pleural Effusion: present" in judge and "3. No pneumothorax." in judge
    verdicts = parse_verdicts(JUDGEMENT, facts)
    assert [v.verdict for v in verdicts] == ["entailed"] * 3
    assert [v.condition for v in verdicts] == ["Cardiomegaly", "Pleural Effusion", "Pneumothorax"]
    r = facts_score(verdicts, REF)
    assert r.precision == 1.0 and r.recall == 1.0 and r.f_beta == 1.0
    assert parse_verdicts("1. entailed | Cardiomegaly", facts) is None  # facts 2, 3 unjudged
    assert parse_verdicts(JUDGEMENT + "1. neutral | none\n", facts) is None  # judged twice
    assert parse_verdicts("1. entailed\n2. neutral | Edema\n3. contradicted | Mass", facts)[1].condition is None


def test_llm_scorer_on_canned_completions():
    def generate(prompts):
        return [EXTRACTION if p.startswith("You are an expert radiologist. Break") and "enlarged" in p
                else "nothing to report" if p.startswith("You are an expert radiologist. Break")
                else JUDGEMENT for p in prompts]

    scorer = FactsLLMScorer(generate_fn=generate)
    good, bad = scorer.score(["The heart is enlarged. Small left effusion.", "?"], [REF, REF])
    assert good.f_beta == 1.0 and bad is None
    assert scorer.counters == {"pairs": 2, "unparseable_extraction": 1, "unparseable_judgement": 0}
    ok, why = FactsLLMScorer.availability(None)
    assert not ok and "path" in why


def test_llm_scorer_without_a_model_raises_facts_unavailable(tmp_path):
    assert FactsLLMScorer.availability(None) == (False, "no FactS model path given")
    missing = str(tmp_path / "facts")
    with pytest.raises(FactsUnavailable, match=f"^FactS model directory {re.escape(repr(missing))} does not exist$"):
        FactsLLMScorer(missing).generate(["p"])


def _analysis(*sentences):
    text, out, pos = "", [], 0
    for sent, ents in sentences:
        start = len(text) + (1 if text else 0)
        text = f"{text} {sent}" if text else sent
        out.append(Sentence(sent, start, start + len(sent), tuple(Entity(t, ty) for t, ty in ents)))
    return ReportAnalysis(text=text, sentences=tuple(out))


def test_analyzer_backend_known_answer():
    assert condition_of("small left pleural effusion") == "Pleural Effusion" and condition_of("heart") is None
    assert condition_of("degenerative changes") is None
    analysis = _analysis(
        ("The heart is enlarged.", [("heart", "ANATOMY"), ("enlarged heart", "ABNORMALITY")]),
        ("No pleural effusion.", [("pleural effusion", "NON-ABNORMALITY")]),
        ("There is a right pneumothorax.", [("pneumothorax", "ABNORMALITY"), ("right", "ANATOMY")]),
        ("Sternotomy wires.", [("sternotomy wires", "ABNORMALITY")]),
        ("Degenerative changes.", [("degenerative changes", "ABNORMALITY")]),
    )
    facts = analyzer_facts(analysis, REF)
    assert facts == [
        Fact("Cardiomegaly: present", "entailed", "Cardiomegaly"),
        Fact("Pleural Effusion: absent", "contradicted", "Pleural Effusion"),  # the reference has it
        Fact("Pneumothorax: present", "contradicted", "Pneumothorax"),  # the reference does not
        Fact("Support Devices: present", "contradicted", "Support Devices"),
        Fact("degenerative changes (present)", "neutral"),  # none of the 14 labels concerns it
    ]
    r = facts_score(facts, REF, beta=2.0)
    assert r.precision == pytest.approx(0.25) and r.recall == pytest.approx(0.5)
    assert r.f_beta == pytest.approx(5 * 0.25 * 0.5 / (4 * 0.25 + 0.5))


def test_no_finding_is_present_when_abnormality_is_absent():
    analysis = _analysis(("No acute cardiopulmonary process.", [("acute cardiopulmonary process", "NON-ABNORMALITY")]))
    facts = analyzer_facts(analysis, labels("No Finding"))
    assert facts == [Fact("No Finding: present", "entailed", "No Finding")]
    assert facts_score(facts, labels("No Finding")).f_beta == 1.0


def test_radgraph_observations_as_facts():
    from verl_ext.metrics.facts import entity_facts, radgraph_entities

    annotation = {"entities": {
        "1": {"tokens": "pleural", "label": "Anatomy::definitely present", "relations": [["modify", "2"]]},
        "2": {"tokens": "effusion", "label": "Observation::definitely present", "relations": []},
        "3": {"tokens": "pneumothorax", "label": "OBS-DA", "relations": []},
        "4": {"tokens": "enlarged", "label": "Observation::uncertain", "relations": [["modify", "5"]]},
        "5": {"tokens": "heart", "label": "Anatomy::definitely present", "relations": []},
    }}
    ents = radgraph_entities(annotation)
    assert [(e.text, e.presence) for e in ents] == [("pleural effusion", "present"), ("pneumothorax", "absent"),
                                                    ("enlarged", "uncertain")]
    facts = entity_facts([ents], REF)
    assert Fact("Pleural Effusion: present", "entailed", "Pleural Effusion") in facts
    assert Fact("Pneumothorax: absent", "entailed", "Pneumothorax") in facts
    r = facts_score(facts, REF)
    assert r.recall == pytest.approx(0.5)  # cardiomegaly not named ("enlarged" alone maps to nothing)
