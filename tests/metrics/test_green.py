"""GREEN prompt and parsing on canned completions (no model)."""

import re

import pytest

from verl_ext.clinical.green import GreenScorer, GreenUnavailable
from verl_ext.metrics.green import CHAT_TEMPLATE, make_prompt, parse_completion, parse_counts

COMPLETION = """[Explanation]:
The candidate misses the effusion and reports a pneumothorax that the reference does not mention.

[Clinically Significant Errors]:
(a) False report of a finding in the candidate: 1. Pneumothorax
(b) Missing a finding present in the reference: 2. Left pleural effusion; Atelectasis
(c) Misidentification of a finding's anatomic location/position: 0.
(d) Misassessment of the severity of a finding: 0.
(e) Mentioning a comparison that isn't in the reference: 0.
(f) Omitting a comparison detailing a change from a prior study: 0.

[Clinically Insignificant Errors]:
(a) False report of a finding in the candidate: 0.
(b) Missing a finding present in the reference: 1. Degenerative changes
(c) Misidentification of a finding's anatomic location/position: 0.
(d) Misassessment of the severity of a finding: 0.
(e) Mentioning a comparison that isn't in the reference: 0.
(f) Omitting a comparison detailing a change from a prior study: 0.

[Matched Findings]:
3. Cardiomegaly; Sternotomy wires; Clear right lung
"""


def test_known_answer():
    r = parse_completion(COMPLETION)
    assert r.significant == [1, 2, 0, 0, 0, 0]
    assert r.insignificant == [0, 1, 0, 0, 0, 0]
    assert r.matched == 3
    assert r.score == pytest.approx(3 / (3 + 3))


def test_no_errors_and_zero_matches():
    text = "[Clinically Significant Errors]:\nNo clinically significant errors.\n\n[Matched Findings]:\n2. A; B\n"
    assert parse_completion(text).score == 1.0
    text = (
        "[Clinically Significant Errors]:\n(a) False report of a finding in the candidate: 1. X\n\n"
        "[Matched Findings]:\n0. None\n"
    )
    assert parse_completion(text).score == 0.0  # matched == 0 -> 0 (reference implementation)


def test_numbered_variant_and_assistant_prefix():
    text = (
        "<|user|>\nprompt</s>\n<|assistant|>\n[Explanation]:\nok\n\n[Clinically Significant Errors]:\n"
        "(1) False report of a finding in the candidate: 2. X; Y\n(2) Missing: 0.\n\n[Matched Findings]:\n2. A; B\n"
    )
    r = parse_completion(text)
    assert r.significant[0] == 2 and r.matched == 2 and r.score == pytest.approx(0.5)


def test_unparseable_is_none_not_zero():
    r = parse_completion("I cannot evaluate these reports.")
    assert r.score is None and not r.parsed
    assert parse_counts("nothing here", "Matched Findings") == (None, None)
    with pytest.raises(ValueError):
        parse_counts(COMPLETION, "Other")


def test_prompt_truncates_each_report_to_300_words():
    long = " ".join(f"w{i}" for i in range(400))
    p = make_prompt(long, "candidate text")
    assert "w299" in p and "w300" not in p
    assert "2. Reference Report:\n    w0" in p and "3. Candidate Report:\n    candidate text" in p
    assert "<|user|>" in CHAT_TEMPLATE and "add_generation_prompt" in CHAT_TEMPLATE


def test_scorer_with_canned_generation_and_availability():
    calls = []

    def fake_generate(prompts):
        calls.append(prompts)
        return [COMPLETION, "garbage"]

    g = GreenScorer(generate_fn=fake_generate)
    out = g.score(["ref a", "ref b"], ["hyp a", "hyp b"])
    assert [o.score for o in out] == [pytest.approx(0.5), None]
    assert "ref a" in calls[0][0] and "hyp b" in calls[0][1]
    ok, why = GreenScorer.availability(None)
    assert not ok and "--green-model" in why
    ok, why = GreenScorer.availability("/nonexistent/green")
    assert not ok and "does not exist" in why


def test_load_without_a_model_raises_green_unavailable(tmp_path):
    assert GreenScorer.availability(None) == (False, "no GREEN model path given (--green-model)")
    missing = str(tmp_path / "green")
    with pytest.raises(GreenUnavailable, match=f"^GREEN model directory {re.escape(repr(missing))} does not exist$"):
        GreenScorer(missing).generate(["p"])


def test_chat_rendering_matches_reference_format():
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"</s>": 0, "[UNK]": 1}, unk_token="[UNK]")), eos_token="</s>"
    )
    tok.chat_template = CHAT_TEMPLATE
    text = tok.apply_chat_template([{"from": "human", "value": "PROMPT"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|user|>\nPROMPT</s>\n<|assistant|>\n"


# The matched-findings count on the section's second line: the reference parser (no re.MULTILINE) reads 0 matched
# findings (GREEN 0), the project's earlier parser 2 (GREEN 2 / (2 + 1)).
SECOND_LINE_COUNT = (
    "[Clinically Significant Errors]:\n(a) False report of a finding in the candidate: 1. Edema\n\n"
    "[Matched Findings]:\nThe findings that match:\n2. Effusion; cardiomegaly\n"
)


def test_reference_protocol_reads_the_count_only_at_the_start_of_the_section():
    from verl_ext.metrics.green import PROJECT, REFERENCE

    assert parse_completion(SECOND_LINE_COUNT, REFERENCE).score == 0.0
    assert parse_completion(SECOND_LINE_COUNT, PROJECT).score == pytest.approx(2 / 3)
    assert parse_completion(COMPLETION, REFERENCE).score == pytest.approx(0.5)  # the usual layout: the same


def test_reference_protocol_scores_an_unparseable_completion_zero_and_counts_it():
    from verl_ext.metrics.green import PROJECT, REFERENCE

    ref = parse_completion("I cannot evaluate these reports.", REFERENCE)
    assert ref.score == 0.0 and ref.parse_failed and not ref.parsed
    ours = parse_completion("I cannot evaluate these reports.", PROJECT)
    assert ours.score is None and ours.parse_failed


def test_reference_protocol_renders_an_empty_assistant_turn():
    """green_score's GREEN.forward: [{"from": "human", ...}, {"from": "gpt", "value": ""}] + generation prompt."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from verl_ext.metrics.green import PROJECT, REFERENCE, GreenProtocol

    raw = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2, "P": 3}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.chat_template = CHAT_TEMPLATE
    rendered = {}
    for name, protocol in (("reference", REFERENCE), ("project", PROJECT)):
        scorer = GreenScorer(protocol=protocol)
        scorer._tokenizer = tok
        rendered[name] = scorer.prompt_text("P")
    assert rendered["reference"] == "<|user|>\nP</s>\n<|assistant|>\n</s>\n<|assistant|>\n"
    assert rendered["project"] == "<|user|>\nP</s>\n<|assistant|>\n"
    with pytest.raises(ValueError, match="chat='assistant'"):
        GreenProtocol(chat="assistant")
