"""MIMIC-CXR free-text report sectioning, at parity with MIT-LCP's official section parser.

Re-implemented from the rules of ``txt/section_parser.py`` in the public MIT-LCP ``mimic-cxr`` repository (read for
its facts, no code copied; commit 3190146):

* a header is a newline, **one space**, a run of ``[A-Z ()/,-]`` characters, a colon and one whitespace character;
  every line of a real MIMIC report starts with a space, so a report without that layout is one "full report"
  section (and therefore has no FINDINGS);
* text before the first header is the ``preamble``; a section's text runs from the end of its header to the start
  of the next header, and the search for that next header resumes at the first newline after the header;
* a header name is lower-cased and stripped, then normalised in the official order: (1) the table of frequent
  spellings `FREQUENT_NAMES` (every entry of the official table, typos included: ``findnings``, ``findindgs``,
  ``findgings`` -> findings; ``findings and impression`` / ``findings/impression`` -> **impression**;
  ``clinical information`` -> history; ``ndication`` -> impression), (2) the first of the main words
  `MAIN_SECTIONS` (impression, findings, history, comparison, addendum) contained in the name, (3) any of the
  exam/view title fragments `VIEW_TITLES` (``chest``, ``one view``, ``lateral and pa``, ``ribs``, ``bone window``
  ...) contained in the name -> findings;
* empty ``findings`` / ``impression`` sections are removed; when a name repeats, consumers take the **last** one;
* a report with neither findings nor impression whose last section contains a "\\n \\n" paragraph break is split:
  the last section keeps its first paragraph and the rest becomes ``last_paragraph``.

Deliberate differences from the official code (everything else, in particular every rule that decides FINDINGS
and IMPRESSION, is the same):

* step (4), after the official rules: a name that the official rules leave as it is and that contains
  ``indication`` or ``technique`` maps to that word (Libra's patched parser does the same), because the prompt needs
  INDICATION and TECHNIQUE, which the official script never exports. It runs after the view titles, so it never
  takes a header away from findings;
* the official ``custom_mimic_cxr_rules`` (23 studies with a forced section name and 31 with hand-set character
  ranges for the CheXpert-labelling "conclusion" text; ``create_section_files.py`` leaves all 54 out of
  ``mimic_cxr_sectioned.csv``) are not reproduced: those studies are parsed by the general rules and kept;
* `extract_report_fields` collapses each section's whitespace to single spaces (as CheXagent does) where the
  official consumers only strip it; section boundaries and names are unaffected.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

HEADER = re.compile(r"\n ([A-Z ()/,-]+):\s")

# The official frequent-section table (lower-case header -> section), every entry.
FREQUENT_NAMES: dict[str, str] = {
    "preamble": "preamble", "impression": "impression", "comparison": "comparison", "indication": "indication",
    "findings": "findings", "examination": "examination", "technique": "technique", "history": "history",
    "comparisons": "comparison", "clinical history": "history", "reason for examination": "indication",
    "notification": "notification", "reason for exam": "indication", "clinical information": "history",
    "exam": "examination", "clinical indication": "indication", "conclusion": "impression",
    "chest, two views": "findings", "recommendation(s)": "recommendations", "type of examination": "examination",
    "reference exam": "comparison", "patient history": "history", "addendum": "addendum",
    "comparison exam": "comparison", "date": "date", "comment": "comment", "findings and impression": "impression",
    "wet read": "wet read", "comparison film": "comparison", "recommendations": "recommendations",
    "findings/impression": "impression", "pfi": "history", "recommendation": "recommendations",
    "wetread": "wet read", "ndication": "impression", "impresson": "impression", "imprression": "impression",
    "imoression": "impression", "impressoin": "impression", "imprssion": "impression", "impresion": "impression",
    "imperssion": "impression", "mpression": "impression", "impession": "impression",
    "findings/ impression": "impression", "finding": "findings", "findins": "findings", "findindgs": "findings",
    "findgings": "findings", "findngs": "findings", "findnings": "findings", "finidngs": "findings",
    "idication": "indication", "reference findings": "findings", "comparision": "comparison",
    "comparsion": "comparison", "comparrison": "comparison", "comparisions": "comparison",
}

# Official step 2: the first of these contained in the name wins.
MAIN_SECTIONS = ("impression", "findings", "history", "comparison", "addendum")

# Official step 3: exam/view title fragments (plain substrings) that make a header a findings section.
VIEW_TITLES = ("chest", "portable", "pa and lateral", "lateral and pa", "ap and lateral", "lateral and ap",
               "frontal and", "two views", "frontal view", "pa view", "ap view", "one view", "lateral view",
               "bone window", "frontal upright", "frontal semi-upright", "ribs", "pa and lat")

# Our step 4 (a deliberate addition, see the module docstring).
CONTEXT_SECTIONS = ("indication", "technique")


def normalize_section_name(raw: str) -> str:
    """Section name for one header, by the official rules plus step 4 (module docstring)."""
    name = raw.lower().strip()
    if name in FREQUENT_NAMES:
        return FREQUENT_NAMES[name]
    for key in MAIN_SECTIONS:
        if key in name:
            return key
    if any(t in name for t in VIEW_TITLES):
        return "findings"
    for key in CONTEXT_SECTIONS:
        if key in name:
            return key
    return name


@dataclass
class Sections:
    """Sections of one report in document order. `names[i]` is the normalised name of `texts[i]`."""

    names: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    raw_names: list[str] = field(default_factory=list)

    def last(self, name: str) -> str | None:
        """The last section called `name`, stripped; None when absent (the official consumers' ``list_rindex``)."""
        for n, t in zip(reversed(self.names), reversed(self.texts)):
            if n == name:
                return t.strip()
        return None

    def as_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for n, t in zip(self.names, self.texts):
            out[n] = t.strip()  # later sections of the same name win
        return out


def split_sections(text: str) -> Sections:
    """Split a MIMIC-CXR report into named sections (see the module docstring for the rules)."""
    out = Sections()
    m = HEADER.search(text)
    if m is None:
        out.names.append("full report")
        out.raw_names.append("full report")
        out.texts.append(text)
    else:
        out.names.append("preamble")
        out.raw_names.append("preamble")
        out.texts.append(text[: m.start(1)])
        while m is not None:
            raw = m.group(1)
            body_start = m.end()
            newline = text.find("\n", body_start)
            m = HEADER.search(text, newline) if newline != -1 else None
            body_end = m.start() if m is not None else len(text)
            out.raw_names.append(raw)
            out.names.append(normalize_section_name(raw))
            out.texts.append(text[body_start:body_end])
    # Empty findings / impression sections do not count.
    keep = [i for i, (n, t) in enumerate(zip(out.names, out.texts))
            if not (n in ("findings", "impression") and not t.strip())]
    out.names = [out.names[i] for i in keep]
    out.texts = [out.texts[i] for i in keep]
    out.raw_names = [out.raw_names[i] for i in keep]
    if "findings" not in out.names and "impression" not in out.names and "\n \n" in out.texts[-1]:
        first, *rest = out.texts[-1].split("\n \n")
        out.texts[-1] = first
        out.names.append("last_paragraph")
        out.raw_names.append("last_paragraph")
        out.texts.append("\n \n".join(rest))
    return out


def clean_text(text: str | None) -> str:
    """Collapse all whitespace (MIMIC wraps lines at ~79 characters) to single spaces."""
    return " ".join((text or "").split())


@dataclass
class ReportFields:
    """What the converters need from a MIMIC report (whitespace-collapsed; "" when absent)."""

    findings: str
    impression: str
    indication: str
    technique: str
    comparison: str
    section_names: list[str]


def extract_report_fields(text: str, context_fallbacks: bool = True) -> ReportFields:
    """Target and context sections of one MIMIC report.

    With `context_fallbacks`, INDICATION falls back to HISTORY ("clinical history" is the indication in many
    reports) and TECHNIQUE to EXAMINATION (the exam title, e.g. "CHEST (PA AND LAT)").
    """
    s = split_sections(text)
    indication = s.last("indication")
    technique = s.last("technique")
    if context_fallbacks:
        indication = indication or s.last("history")
        technique = technique or s.last("examination")
    return ReportFields(
        findings=clean_text(s.last("findings")),
        impression=clean_text(s.last("impression")),
        indication=clean_text(indication),
        technique=clean_text(technique),
        comparison=clean_text(s.last("comparison")),
        section_names=list(s.names),
    )
