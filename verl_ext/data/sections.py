"""MIMIC-CXR free-text report sectioning, following the rules of MIT-LCP's official section parser.

Re-implemented from the behaviour described in datasets.md §2.4 (no code copied):

* a header is a newline, **one space**, a run of ``[A-Z ()/,-]`` characters, a colon and one whitespace character;
  every line of a real MIMIC report starts with a space, so a report without that layout is one "full report"
  section (and therefore has no FINDINGS);
* text before the first header is the ``preamble``; a section's text runs from the end of its header to the start
  of the next header, and the search for that next header resumes at the first newline after the header;
* header names are lower-cased and normalised: a table of frequent spellings first (including "findings and
  impression" and "findings/impression" -> **impression**, as the official rules do), then substring rules
  (impression, findings, history, comparison, addendum; plus indication and technique, which the official script
  does not export but this project's prompt needs), then exam/view titles ("chest, pa and lateral",
  "portable ap chest" ...) -> findings;
* empty ``findings`` / ``impression`` sections are removed; when a name repeats, consumers take the **last** one;
* a report with neither findings nor impression gets a ``last_paragraph`` section (its final "\\n \\n" paragraph).

Deliberate differences from the official code: its table maps the typo ``ndication`` to *impression*; here it maps
to *indication*. Its 54 hand-coded per-study exceptions (forced names and character ranges for real study ids)
are not reproduced; those studies are parsed by the general rules.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

HEADER = re.compile(r"\n ([A-Z ()/,-]+):\s")

# Frequent header spellings (lower case) -> section name.
FREQUENT_NAMES: dict[str, str] = {
    # impression
    "impression": "impression", "impressions": "impression", "impresson": "impression",
    "imprssion": "impression", "impresion": "impression", "impressiom": "impression", "conclusion": "impression",
    "conclusions": "impression", "findings and impression": "impression", "findings/impression": "impression",
    "impression and findings": "impression", "impression/findings": "impression", "final impression": "impression",
    # findings
    "findings": "findings", "finding": "findings", "findngs": "findings", "findins": "findings",
    "fidnings": "findings", "findigns": "findings", "finidngs": "findings", "chest, two views": "findings",
    "chest, pa and lateral": "findings", "pa and lateral views of the chest": "findings",
    "portable ap view of the chest": "findings", "ap upright and lateral views of the chest": "findings",
    # comparison
    "comparison": "comparison", "comparisons": "comparison", "comparision": "comparison",
    "comparsion": "comparison", "compariosn": "comparison", "comparison exam": "comparison",
    "comparison studies": "comparison", "comparison study": "comparison", "prior studies": "comparison",
    # indication
    "indication": "indication", "indications": "indication", "ndication": "indication", "idication": "indication",
    "reason for exam": "indication", "reason for examination": "indication", "reason for study": "indication",
    "clinical indication": "indication", "clinical indications": "indication", "indication for exam": "indication",
    "clinical information": "indication",
    # history
    "history": "history", "clinical history": "history", "hx": "history", "clinical hx": "history",
    "medical history": "history",
    # technique and exam title
    "technique": "technique", "techniques": "technique", "technique and comparison": "technique",
    "examination": "examination", "exam": "examination", "exams": "examination", "study": "examination",
    "procedure": "examination", "type of examination": "examination",
    # other recurrent blocks
    "wet read": "wet read", "notification": "notification", "notifications": "notification",
    "recommendation": "recommendations", "recommendations": "recommendations",
    "recommendation(s)": "recommendations", "addendum": "addendum", "final report": "final report",
}

# Substring rules applied in this order when the table has no entry.
SUBSTRING_RULES = ("impression", "findings", "history", "comparison", "addendum", "indication", "technique")

# Exam or view titles used as headers in place of FINDINGS ("CHEST, PA AND LATERAL:", "PORTABLE AP CHEST:").
VIEW_TITLE = re.compile(
    r"\bchest\b|\bportable\b|\b(pa|ap)\b.*\b(lat|lateral|view|views)\b|\btwo views\b|\bsingle view\b|\bfrontal\b"
    r"|\bsupine\b|\bupright\b|\bsemi-?erect\b|\bap view\b|\bpa view\b|\blateral view"
)


def normalize_section_name(raw: str) -> str:
    """Section name for one header (already lower-cased or not)."""
    name = " ".join(raw.lower().split())
    if name in FREQUENT_NAMES:
        return FREQUENT_NAMES[name]
    for key in SUBSTRING_RULES:
        if key in name:
            return key
    if VIEW_TITLE.search(name):
        return "findings"
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
    if "findings" not in out.names and "impression" not in out.names:
        paragraphs = out.texts[-1].split("\n \n") if out.texts else []
        if len(paragraphs) > 1 and paragraphs[-1].strip():
            out.names.append("last_paragraph")
            out.raw_names.append("last_paragraph")
            out.texts.append(paragraphs[-1])
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
