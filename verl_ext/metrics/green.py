"""GREEN (Ostmeier et al., 2024): prompt and completion parsing, in project code (pure Python).

The prompt, the chat format and the parsing rules are those of the GREEN reference implementation
(Stanford-AIMI/GREEN ``green_score``, as maintained in RadEval 2.x): each report is cut to its first 300 words, the
GREEN model is asked for counts of six clinically significant error types (a)-(f), the same six insignificant ones
and the matched findings, and

    GREEN = matched / (matched + sum of the six clinically significant error counts),  0 when matched == 0.

Three details are a `GreenProtocol` (the model itself runs in ``verl_ext.clinical.green``):

* ``chat``: the reference code (``green_score.GREEN.forward``) renders the prompt as the user turn plus an *empty
  assistant turn*, then the generation prompt ("user_assistant", `REFERENCE`); "user" renders the user turn only
  (green_score's older ``Inferer``; this project's evaluation before issue 21);
* ``unparseable``: a completion in which neither the "[Clinically Significant Errors]" nor the "[Matched Findings]"
  section can be found scores 0 in the reference code (``return_0_if_no_green_score=True``: a missing section
  counts 0, so 0 matched findings); "drop" makes it ``None`` (left out of the mean). Either way it is counted
  (``GreenResult.parse_failed``);
* ``multiline``: the reference reads the matched-findings count only at the start of that section
  (``re.findall(r"^\b\d+\b(?=\.)", section)`` without ``re.MULTILINE``); True also reads it at the start of a
  later line of the section.

`REFERENCE` is the reference code (ReXrank's GREEN column); `PROJECT` is this project's earlier choice, the default
of ``verl_ext.eval.evaluate``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

CATEGORIES = ("Clinically Significant Errors", "Clinically Insignificant Errors", "Matched Findings")
SUB_CATEGORIES = (
    "(a) False report of a finding in the candidate",
    "(b) Missing a finding present in the reference",
    "(c) Misidentification of a finding's anatomic location/position",
    "(d) Misassessment of the severity of a finding",
    "(e) Mentioning a comparison that isn't in the reference",
    "(f) Omitting a comparison detailing a change from a prior study",
)

#: The chat template GREEN models were trained with (``from``/``value`` messages).
CHAT_TEMPLATE = (
    "{% for message in messages %}\n"
    "{% if message['from'] == 'human' %}\n"
    "{{ '<|user|>\\n' + message['value'] + eos_token }}\n"
    "{% elif message['from'] == 'system' %}\n"
    "{{ '<|system|>\\n' + message['value'] + eos_token }}\n"
    "{% elif message['from'] == 'gpt' %}\n"
    "{{ '<|assistant|>\\n'  + message['value'] + eos_token }}\n"
    "{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n"
    "{{ '<|assistant|>' }}\n"
    "{% endif %}\n"
    "{% endfor %}"
)


@dataclass(frozen=True)
class GreenProtocol:
    """How the GREEN prompt is rendered and its completion parsed (see the module docstring)."""

    chat: str = "user_assistant"
    unparseable: str = "zero"
    multiline: bool = False

    def __post_init__(self) -> None:
        if self.chat not in ("user_assistant", "user"):
            raise ValueError(f"GREEN chat={self.chat!r}: expected 'user_assistant' (reference) or 'user'")
        if self.unparseable not in ("zero", "drop"):
            raise ValueError(f"GREEN unparseable={self.unparseable!r}: expected 'zero' (reference) or 'drop'")

    def messages(self, prompt: str) -> list[dict]:
        """The conversation given to ``CHAT_TEMPLATE`` (rendered with ``add_generation_prompt=True``)."""
        turns = [{"from": "human", "value": prompt}]
        if self.chat == "user_assistant":
            turns.append({"from": "gpt", "value": ""})
        return turns


#: The GREEN reference code (Stanford-AIMI/GREEN ``green_score``): ReXrank's GREEN column.
REFERENCE = GreenProtocol()
#: This project's earlier GREEN: user turn only, unparseable completions dropped, counts read on any line.
PROJECT = GreenProtocol(chat="user", unparseable="drop", multiline=True)


def make_prompt(reference: str, candidate: str, max_words: int = 300) -> str:
    """The GREEN prompt for one pair (each report cut to ``max_words`` whitespace-separated words)."""
    text1 = " ".join(str(reference).split()[:max_words])
    text2 = " ".join(str(candidate).split()[:max_words])
    return (
        "Objective: Evaluate the accuracy of a candidate radiology report in comparison to a reference radiology "
        "report composed by expert radiologists.\n\n    Process Overview: You will be presented with:\n\n    "
        "1. The criteria for making a judgment.\n    2. The reference radiology report.\n    3. The candidate "
        "radiology report.\n    4. The desired format for your assessment.\n\n    1. Criteria for Judgment:\n\n    "
        "For each candidate report, determine:\n\n    The count of clinically significant errors.\n    The count of "
        "clinically insignificant errors.\n\n    Errors can fall into one of these categories:\n\n    a) False "
        "report of a finding in the candidate.\n    b) Missing a finding present in the reference.\n    c) "
        "Misidentification of a finding's anatomic location/position.\n    d) Misassessment of the severity of a "
        "finding.\n    e) Mentioning a comparison that isn't in the reference.\n    f) Omitting a comparison "
        "detailing a change from a prior study.\n    Note: Concentrate on the clinical findings rather than the "
        "report's writing style. Evaluate only the findings that appear in both reports.\n\n    2. Reference "
        f"Report:\n    {text1}\n\n    3. Candidate Report:\n    {text2}\n\n    4. Reporting Your Assessment:\n\n    "
        "Follow this specific format for your output, even if no errors are found:\n    ```\n    [Explanation]:\n"
        "    <Explanation>\n\n    [Clinically Significant Errors]:\n    (a) <Error Type>: <The number of errors>. "
        "<Error 1>; <Error 2>; ...; <Error n>\n    ....\n    (f) <Error Type>: <The number of errors>. <Error 1>; "
        "<Error 2>; ...; <Error n>\n\n    [Clinically Insignificant Errors]:\n    (a) <Error Type>: <The number of "
        "errors>. <Error 1>; <Error 2>; ...; <Error n>\n    ....\n    (f) <Error Type>: <The number of errors>. "
        "<Error 1>; <Error 2>; ...; <Error n>\n\n    [Matched Findings]:\n    <The number of matched findings>. "
        "<Finding 1>; <Finding 2>; ...; <Finding n>\n    ```\n"
    )


def clean_response(response: str) -> str:
    """The reference implementation's ``clean_responses``: keep what follows the assistant turn / explanation tag."""
    if "[Explanation]:" in response:
        if "<|assistant|>" in response:
            response = response.split("<|assistant|>")[-1]
        response = response.split("[Explanation]:")[1]
    if "<|assistant|>" in response:
        response = response.split("<|assistant|>")[-1]
    return response.replace("</s>", "").replace("<unk>", "")


def _section(text: str, category: str) -> Optional[str]:
    m = re.search(rf"\[{re.escape(category)}\]:\s*(.*?)(?:\n\s*\n|\Z)", text, re.DOTALL)
    return None if m is None else m.group(1)


def parse_counts(text: str, category: str, multiline: bool = True) -> tuple[Optional[int], Optional[list[int]]]:
    """(total, six sub-counts) of an error category, or (matched, None) for "Matched Findings"; (None, None) when the
    section is absent. A section starting with "No" counts 0. ``multiline``: see `GreenProtocol`."""
    if category not in CATEGORIES:
        raise ValueError(f"category {category!r} is not one of {CATEGORIES}")
    body = _section(text, category)
    if body is None:
        return None, None
    subs = [0] * len(SUB_CATEGORIES)
    if body.startswith("No"):
        return 0, (None if category == "Matched Findings" else subs)
    if category == "Matched Findings":
        counts = re.findall(r"^\b\d+\b(?=\.)", body, re.MULTILINE if multiline else 0)
        return (int(counts[0]) if counts else 0), None
    keys = [s.split(" ", 1)[0] + " " for s in SUB_CATEGORIES]
    matches = sorted(re.findall(r"\([a-f]\) .*", body))
    if not matches:  # numbered variant of the template
        matches = sorted(re.findall(r"\([1-6]\) .*", body))
        keys = [f"({i}) " for i in range(1, len(SUB_CATEGORIES) + 1)]
    for pos, key in enumerate(keys):
        for m in matches:
            if m.startswith(key):
                num = re.search(r"(?<=: )\b\d+\b(?=\.)", m)
                if num:
                    subs[pos] = int(num.group(0))
    return sum(subs), subs


@dataclass
class GreenResult:
    score: Optional[float]
    """GREEN in [0, 1]; None when the completion could not be parsed."""
    matched: Optional[int] = None
    significant: list[int] = field(default_factory=lambda: [0] * 6)
    insignificant: list[int] = field(default_factory=lambda: [0] * 6)
    completion: str = ""
    parse_failed: bool = False
    """Neither the significant-errors nor the matched-findings section was found (scored per the protocol)."""

    @property
    def parsed(self) -> bool:
        return not self.parse_failed


def parse_completion(completion: str, protocol: GreenProtocol = PROJECT) -> GreenResult:
    """Score one GREEN completion (see the module docstring)."""
    text = clean_response(completion)
    sig_total, sig = parse_counts(text, CATEGORIES[0], protocol.multiline)
    _, insig = parse_counts(text, CATEGORIES[1], protocol.multiline)
    matched, _ = parse_counts(text, CATEGORIES[2], protocol.multiline)
    if sig_total is None and matched is None:
        score = 0.0 if protocol.unparseable == "zero" else None
        return GreenResult(score, completion=completion, parse_failed=True)
    matched = matched or 0
    sig = sig or [0] * 6
    score = 0.0 if matched == 0 else matched / (matched + sum(sig))
    return GreenResult(float(score), matched, list(sig), list(insig or [0] * 6), completion)
