"""EditGRPO's post-rollout edit engine (paper Sec. 2 "Editing Rule"): pure logic, numpy only.

    from verl_ext.editing import ReportAnalysis, EditConfig, edit_report
    result = edit_report(generated, reference, EditConfig(tau=0.6, max_ops=1), rng=random.Random(seed))
"""
from verl_ext.editing.types import (
    ENTITY_TYPES,
    OP_KINDS,
    PARAGRAPH_KIND,
    PRESENCE_LABELS,
    TYPE_PRESENCE,
    EditConfig,
    EditOp,
    EditResult,
    Entity,
    ReportAnalysis,
    ReportAnalyzer,
    Segment,
    Sentence,
)
from verl_ext.editing.sentences import split_sentences
from verl_ext.editing.rules import edit_report, edit_reports, paragraph_edit, pick_paragraph_slot

__all__ = [
    "ENTITY_TYPES",
    "OP_KINDS",
    "PARAGRAPH_KIND",
    "PRESENCE_LABELS",
    "TYPE_PRESENCE",
    "EditConfig",
    "EditOp",
    "EditResult",
    "Entity",
    "ReportAnalysis",
    "ReportAnalyzer",
    "Segment",
    "Sentence",
    "edit_report",
    "edit_reports",
    "paragraph_edit",
    "pick_paragraph_slot",
    "split_sentences",
]
