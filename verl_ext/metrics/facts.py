"""FactS (OraPO, arXiv 2509.18600): a FactScore-style reward from atomic clinical facts checked against labels.

The paper (as summarised in shared/reference/peers.md §1.3; its text is not available here): an API LLM (GPT-4.1)
extracts the atomic clinical facts of a generated report; each fact is checked for entailment against the 14
CheXpert labels of the ground truth; contradicted facts are false positives; precision and recall per instance give
an F_beta with beta > 1 (recall-weighted). This module is the backend-independent part, pure Python:

* the reference facts: the 14 binary CheXpert labels of the reference (positive or uncertain = present), written
  as statements ``"<condition>: present|absent"`` (`label_statements`);
* `facts_score(verdicts, reference_labels, beta)`: precision = entailed / (entailed + contradicted) over the
  generated facts (neutral facts, about nothing the 14 labels cover, are left out; ``neutral_as_fp=True`` counts
  them as false positives), recall = share of the reference's *present* conditions that an entailed fact names,
  ``F_beta = (1 + b^2) P R / (b^2 P + R)``;
* the LLM backend's prompts and the parsing of its completions (`extraction_prompt`, `parse_facts`,
  `judgement_prompt`, `parse_verdicts`), tested on canned completions; the model runs in
  ``verl_ext.clinical.facts``;
* the analyzer backend's facts (`analyzer_facts`, `radgraph_entities`): the clinical entities of each generated
  sentence (RaTE-NER, ``verl_ext.editing.ReportAnalysis``) or the report's RadGraph observations, mapped to CheXpert
  conditions by the project's CXR lexicon
  (``verl_ext/clinical/resources/lexicon_cxr.json``, field ``chexpert``), their presence from the entity type, and
  their verdict read directly off the reference's labels.

Reconstructed (the paper's values are not available): ``beta = 2`` (the usual recall-weighted F); recall counts the
reference's present conditions (a reference with none, which CheXbert's "No Finding" makes rare, cannot be scored:
`facts_score` returns ``recall=None``); a generated report with no checkable fact has precision 0.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional, Sequence

from verl_ext.metrics.chexbert import CONDITIONS

DEFAULT_BETA = 2.0
VERDICTS = ("entailed", "contradicted", "neutral")
NO_FINDING = "No Finding"
_LEXICON = Path(__file__).resolve().parents[1] / "clinical" / "resources" / "lexicon_cxr.json"


@dataclass(frozen=True)
class Fact:
    text: str
    verdict: str
    """entailed | contradicted | neutral"""
    condition: Optional[str] = None
    """the CheXpert condition the fact is about (None for neutral facts)"""


@dataclass
class FactsResult:
    precision: float
    recall: Optional[float]
    """None when the reference has no present condition (the pair cannot be scored on recall)"""
    f_beta: Optional[float]
    facts: list[Fact] = field(default_factory=list)

    @property
    def scorable(self) -> bool:
        return self.f_beta is not None


def label_statements(reference_labels: Sequence[int]) -> list[str]:
    """``"<condition>: present|absent"`` for the 14 binary CheXpert labels (``CONDITIONS`` order)."""
    labels = list(reference_labels)
    if len(labels) != len(CONDITIONS) or any(int(x) not in (0, 1) for x in labels):
        raise ValueError(f"expected 14 binary CheXpert labels, got {labels!r}")
    return [f"{c}: {'present' if int(x) else 'absent'}" for c, x in zip(CONDITIONS, labels)]


def f_beta(precision: float, recall: float, beta: float = DEFAULT_BETA) -> float:
    if beta <= 0:
        raise ValueError(f"beta={beta} must be > 0")
    b2 = beta * beta
    den = b2 * precision + recall
    return 0.0 if den == 0 else (1 + b2) * precision * recall / den


def facts_score(
    facts: Sequence[Fact], reference_labels: Sequence[int], beta: float = DEFAULT_BETA, neutral_as_fp: bool = False
) -> FactsResult:
    """FactS of one generated report from its judged facts (see the module docstring)."""
    label_statements(reference_labels)  # validates
    present = {c for c, x in zip(CONDITIONS, reference_labels) if int(x)}
    for f in facts:
        if f.verdict not in VERDICTS:
            raise ValueError(f"fact verdict {f.verdict!r}; expected one of {VERDICTS}")
    entailed = sum(f.verdict == "entailed" for f in facts)
    false_pos = sum(f.verdict == "contradicted" or (neutral_as_fp and f.verdict == "neutral") for f in facts)
    precision = entailed / (entailed + false_pos) if entailed + false_pos else 0.0
    if not present:
        return FactsResult(precision, None, None, list(facts))
    covered = {f.condition for f in facts if f.verdict == "entailed" and f.condition in present}
    recall = len(covered) / len(present)
    return FactsResult(precision, recall, f_beta(precision, recall, beta), list(facts))


# ----------------------------------------------------------------------------------------------- LLM backend


def extraction_prompt(report: str, max_words: int = 300) -> str:
    """Prompt 1 of the LLM backend: list the report's atomic clinical facts, one per line."""
    text = " ".join(str(report).split()[:max_words])
    return (
        "You are an expert radiologist. Break the chest X-ray report below into atomic clinical facts. Each fact "
        "states exactly one finding, device or diagnosis and whether it is present, absent or uncertain, in a short "
        "sentence (for example: \"There is a small left pleural effusion.\" gives \"- Left pleural effusion is "
        "present.\"). Do not add facts that the report does not state. Write one fact per line, each line starting "
        "with \"- \". If the report states no clinical fact, write \"- none\".\n\n"
        f"Report:\n{text}\n\nFacts:\n"
    )


_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+(.*\S)\s*$")


def parse_facts(completion: str) -> Optional[list[str]]:
    """The facts of an extraction completion; ``[]`` for "- none"; None when no bulleted line is found."""
    facts, seen_bullet = [], False
    for line in str(completion).splitlines():
        m = _BULLET.match(line)
        if not m:
            continue
        seen_bullet = True
        fact = m.group(1).strip()
        if fact.lower().rstrip(".") in ("none", "no facts", "n/a"):
            continue
        facts.append(fact)
    return facts if seen_bullet else None


def judgement_prompt(facts: Sequence[str], reference_labels: Sequence[int]) -> str:
    """Prompt 2 of the LLM backend: judge each fact against the reference's 14 CheXpert labels."""
    statements = "\n".join(f"- {s}" for s in label_statements(reference_labels))
    numbered = "\n".join(f"{i}. {f}" for i, f in enumerate(facts, 1))
    names = ", ".join(CONDITIONS)
    return (
        "You are an expert radiologist. The ground-truth findings of a chest X-ray are given as the 14 CheXpert "
        "labels below (present = positive or uncertain in the reference report).\n\n"
        f"Ground-truth labels:\n{statements}\n\n"
        f"Candidate facts:\n{numbered}\n\n"
        "For every candidate fact write one line in the form \"<number>. <verdict> | <label>\", where <verdict> is "
        "\"entailed\" if the ground-truth labels support the fact, \"contradicted\" if they contradict it, or "
        "\"neutral\" if none of the 14 labels concerns it, and <label> is the one label the fact is about "
        f"({names}) or \"none\". Answer with these lines only.\n"
    )


_VERDICT = re.compile(r"^\s*(\d+)\s*[.):]\s*(entailed|contradicted|neutral)\b\s*(?:\|\s*(.*?))?\s*$", re.IGNORECASE)
_CONDITION_BY_NAME = {c.lower(): c for c in CONDITIONS}


def parse_verdicts(completion: str, facts: Sequence[str]) -> Optional[list[Fact]]:
    """The judged facts of a judgement completion; None unless every fact got exactly one verdict line.

    A verdict naming no (or an unknown) label keeps its verdict with ``condition=None`` (it then counts for
    precision only).
    """
    found: dict[int, Fact] = {}
    for line in str(completion).splitlines():
        m = _VERDICT.match(line)
        if not m:
            continue
        idx = int(m.group(1))
        if not 1 <= idx <= len(facts) or idx in found:
            return None
        label = _CONDITION_BY_NAME.get((m.group(3) or "").strip().strip(".\"'").lower())
        verdict = m.group(2).lower()
        found[idx] = Fact(facts[idx - 1], verdict, label if verdict != "neutral" else None)
    if len(found) != len(facts):
        return None
    return [found[i] for i in range(1, len(facts) + 1)]


# ------------------------------------------------------------------------------------------ analyzer backend


@lru_cache(maxsize=4)
def lexicon_conditions(path: str = str(_LEXICON)) -> tuple[tuple[str, str], ...]:
    """(lower-cased term, CheXpert condition) of every lexicon concept with a ``chexpert`` field, longest first."""
    with open(path) as fh:
        concepts = json.load(fh)["concepts"]
    pairs = {(t.lower(), c["chexpert"]) for c in concepts if c.get("chexpert") for t in c["terms"]}
    return tuple(sorted(pairs, key=lambda p: (-len(p[0]), p)))


def condition_of(text: str, terms: Iterable[tuple[str, str]] = None) -> Optional[str]:
    """The CheXpert condition an entity mention names (longest lexicon term inside it, on word boundaries)."""
    low = " ".join(str(text).lower().split())
    for term, condition in terms if terms is not None else lexicon_conditions():
        if re.search(rf"(?<!\w){re.escape(term)}(?!\w)", low):
            return condition
    return None


def analyzer_facts(analysis, reference_labels: Sequence[int]) -> list[Fact]:
    """The analyzer backend's judged facts of a generated report's ``ReportAnalysis`` (RaTE-NER or lexicon).

    One fact per (sentence, condition, presence) among the sentence's entities; an entity that names no CheXpert
    condition is a neutral fact; anatomy is no fact. The verdict is read off the reference's binary labels: a
    present (or uncertain) finding is entailed when the reference has it and contradicted otherwise, an absent one
    the reverse. For "No Finding" (the lexicon's "acute cardiopulmonary abnormality"), absence of the abnormality
    means the label is present.
    """
    return entity_facts([s.entities for s in analysis.sentences], reference_labels)


def radgraph_entities(annotation: dict) -> list:
    """RadGraph observations of one report as ``Entity`` s: the observation's tokens preceded by the tokens of the
    entities that ``modify`` it (so "pleural" + "effusion" names Pleural Effusion), presence from the label
    ("definitely present" / "definitely absent" / "uncertain"; also the short OBS-DP / OBS-DA / OBS-U labels)."""
    from verl_ext.editing import Entity

    ents = annotation.get("entities", {}) if isinstance(annotation, dict) else {}
    modifiers: dict[str, list[str]] = {}
    for ent in ents.values():
        for rel_type, target in ent.get("relations", []):
            if rel_type == "modify":
                modifiers.setdefault(str(target), []).append(ent["tokens"])
    out = []
    for key, ent in ents.items():
        label = str(ent.get("label", "")).lower()
        if not (label.startswith("observation") or label.startswith("obs")):
            continue
        presence = ("absent" if "absent" in label or label.endswith("-da") else
                    "uncertain" if "uncertain" in label or label.endswith("-u") else "present")
        text = " ".join([*modifiers.get(str(key), []), ent["tokens"]])
        out.append(Entity(text, "ABNORMALITY", presence_label=presence))
    return out


def entity_facts(entity_groups: Sequence[Sequence], reference_labels: Sequence[int]) -> list[Fact]:
    """Judged facts from groups (sentences) of entities; see `analyzer_facts`."""
    label_statements(reference_labels)
    ref = {c: int(x) for c, x in zip(CONDITIONS, reference_labels)}
    facts: list[Fact] = []
    for entities in entity_groups:
        seen = set()
        for entity in entities:
            presence = entity.presence
            if presence is None:  # anatomy
                continue
            condition = condition_of(entity.text)
            if condition is None:
                key = (entity.text.lower(), presence)
                if key not in seen:
                    seen.add(key)
                    facts.append(Fact(f"{entity.text} ({presence})", "neutral"))
                continue
            present = presence in ("present", "uncertain")
            if condition == NO_FINDING:
                present = not present
            key = (condition, present)
            if key in seen:
                continue
            seen.add(key)
            verdict = "entailed" if present == bool(ref[condition]) else "contradicted"
            facts.append(Fact(f"{condition}: {'present' if present else 'absent'}", verdict, condition))
    return facts
