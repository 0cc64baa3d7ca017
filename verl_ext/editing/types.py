"""Data types of the post-rollout edit engine (EditGRPO, paper Sec. 2 "Editing Rule").

Pure logic: numpy only, no torch, no models, no verl.

An analyzer (``ReportAnalyzer``) turns report texts into ``ReportAnalysis`` objects: the report's sentences as
exact character spans of the text, each with its clinical entities (text, type, embedding). The rule engine
(``verl_ext.editing.rules.edit_report``) reads two analyses and returns an ``EditResult`` whose ``segments`` let
the rollout splice tokens: kept text is an exact span of the generated text, inserted text is a reference sentence.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Protocol, runtime_checkable

import numpy as np

# --------------------------------------------------------------------------------------------------------------
# Entities
# --------------------------------------------------------------------------------------------------------------

ABNORMALITY = "ABNORMALITY"
NON_ABNORMALITY = "NON-ABNORMALITY"
DISEASE = "DISEASE"
NON_DISEASE = "NON-DISEASE"
ANATOMY = "ANATOMY"

#: The five RaTE-NER entity types the paper's analyzer produces (paper Sec. 2, App. C).
ENTITY_TYPES: tuple[str, ...] = (ABNORMALITY, NON_ABNORMALITY, DISEASE, NON_DISEASE, ANATOMY)

PRESENT = "present"
ABSENT = "absent"
UNCERTAIN = "uncertain"
#: Presence labels. "uncertain" only arises from explicit labels (RadGraph's OBS-U, or an analyzer's hedge cue).
PRESENCE_LABELS: tuple[str, ...] = (PRESENT, ABSENT, UNCERTAIN)

#: Presence implied by an entity type: ABNORMALITY/DISEASE are present, NON-* absent, ANATOMY carries none.
TYPE_PRESENCE: Mapping[str, Optional[str]] = {
    ABNORMALITY: PRESENT,
    DISEASE: PRESENT,
    NON_ABNORMALITY: ABSENT,
    NON_DISEASE: ABSENT,
    ANATOMY: None,
}


def _as_embedding(value: Any) -> Optional[np.ndarray]:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim != 1:
        raise ValueError(f"Entity embedding must be a 1-D vector, got shape {arr.shape}")
    return arr


@dataclass(frozen=True, eq=False)
class Entity:
    """One clinical entity mention of a sentence.

    Attributes:
        text: the mention as written (need not be an exact span; only used for display and exact matching).
        type: one of ``ENTITY_TYPES``.
        embedding: float32 1-D vector (e.g. BioLORD 768-d); ``None`` is allowed only for ``matching="exact"``.
        presence_label: explicit presence ("present" | "absent" | "uncertain") overriding the type mapping, e.g.
            RadGraph's OBS-U -> ``Entity(text, "ABNORMALITY", None, presence_label="uncertain")``. ``None``: use
            ``TYPE_PRESENCE[type]``.
    """

    text: str
    type: str
    embedding: Optional[np.ndarray] = None
    presence_label: Optional[str] = None

    def __post_init__(self) -> None:
        if self.type not in TYPE_PRESENCE:
            raise ValueError(f"Entity {self.text!r}: type {self.type!r} is not one of {ENTITY_TYPES}")
        if self.presence_label is not None and self.presence_label not in PRESENCE_LABELS:
            raise ValueError(
                f"Entity {self.text!r}: presence_label {self.presence_label!r} is not one of {PRESENCE_LABELS}"
            )
        object.__setattr__(self, "embedding", _as_embedding(self.embedding))

    @property
    def presence(self) -> Optional[str]:
        """"present" | "absent" | "uncertain" | None (ANATOMY without an explicit label)."""
        if self.presence_label is not None:
            return self.presence_label
        return TYPE_PRESENCE[self.type]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "type": self.type}
        if self.embedding is not None:
            out["embedding"] = [float(v) for v in self.embedding]
        if self.presence_label is not None:
            out["presence"] = self.presence_label
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Entity":
        return cls(
            text=str(d["text"]),
            type=str(d["type"]),
            embedding=d.get("embedding"),
            presence_label=d.get("presence", d.get("presence_label")),
        )

    def __repr__(self) -> str:
        dim = None if self.embedding is None else self.embedding.shape[0]
        label = "" if self.presence_label is None else f", presence_label={self.presence_label!r}"
        return f"Entity({self.text!r}, {self.type!r}, dim={dim}{label})"


# --------------------------------------------------------------------------------------------------------------
# Sentences and reports
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Sentence:
    """A sentence of a report: ``report_text[start:end] == text`` exactly (no stripping, no normalisation)."""

    text: str
    start: int
    end: int
    entities: tuple[Entity, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "entities", tuple(self.entities))
        if not (0 <= self.start <= self.end) or self.end - self.start != len(self.text):
            raise ValueError(
                f"Sentence {self.text!r}: span ({self.start}, {self.end}) does not have the text's length"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "entities": [e.to_dict() for e in self.entities],
        }


@dataclass(frozen=True, eq=False)
class ReportAnalysis:
    """A report and its sentences (exact, ordered, non-overlapping char spans of ``text``) with their entities."""

    text: str
    sentences: tuple[Sentence, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "sentences", tuple(self.sentences))
        prev_end = 0
        for i, s in enumerate(self.sentences):
            if s.start < prev_end or self.text[s.start : s.end] != s.text:
                raise ValueError(
                    f"ReportAnalysis: sentence {i} {s.text!r} at ({s.start}, {s.end}) is not an exact, ordered,"
                    f" non-overlapping span of the report text; analyzers must return exact char spans"
                )
            prev_end = s.end

    @property
    def entities(self) -> tuple[Entity, ...]:
        return tuple(e for s in self.sentences for e in s.entities)

    def __getstate__(self) -> dict[str, Any]:
        # the rule engine caches derived matrices on the object (``_edit_cache``); never ship them (Ray, pickle)
        state = dict(self.__dict__)
        state.pop("_edit_cache", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "sentences": [s.to_dict() for s in self.sentences]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ReportAnalysis":
        """Build from ``{"text"?: str, "sentences": [{"text", "start"?, "end"?, "entities": [...]}]}``.

        Without ``"text"``, the report text is the sentence texts joined by a single space and offsets are computed.
        With ``"text"`` but no offsets, each sentence is located in order by exact search.
        """
        raw_sents = list(d.get("sentences", ()))
        texts = [str(s["text"]) for s in raw_sents]
        if "text" in d and d["text"] is not None:
            text = str(d["text"])
            spans: list[tuple[int, int]] = []
            cursor = 0
            for s, t in zip(raw_sents, texts):
                if "start" in s and "end" in s:
                    a, b = int(s["start"]), int(s["end"])
                else:
                    a = text.find(t, cursor)
                    if a < 0:
                        raise ValueError(f"ReportAnalysis.from_dict: sentence {t!r} not found in the report text")
                    b = a + len(t)
                spans.append((a, b))
                cursor = b
        else:
            text = " ".join(texts)
            spans = []
            cursor = 0
            for t in texts:
                spans.append((cursor, cursor + len(t)))
                cursor += len(t) + 1
        sentences = tuple(
            Sentence(
                text=t,
                start=a,
                end=b,
                entities=tuple(Entity.from_dict(e) for e in s.get("entities", ())),
            )
            for s, t, (a, b) in zip(raw_sents, texts, spans)
        )
        return cls(text=text, sentences=sentences)


@runtime_checkable
class ReportAnalyzer(Protocol):
    """Turns report texts into analyses, batched. Sentences MUST be exact char spans of the input text."""

    def analyze(self, texts: Sequence[str]) -> list[ReportAnalysis]: ...


# --------------------------------------------------------------------------------------------------------------
# Edit configuration and results
# --------------------------------------------------------------------------------------------------------------

OpKind = Literal["conflict_replace", "fp_replace", "fp_delete", "fn_append", "empty_fill"]
#: Kinds of ``EditOp`` that ``edit_report`` produces.
OP_KINDS: tuple[str, ...] = ("conflict_replace", "fp_replace", "fp_delete", "fn_append", "empty_fill")
#: Kind of the one ``EditOp`` of ``paragraph_edit`` (the paper's paragraph-level ablation).
PARAGRAPH_KIND = "paragraph_replace"


@dataclass(frozen=True)
class EditConfig:
    """Configuration of the post-rollout edit rules (paper Sec. 2 "Editing Rule")."""

    tau: float = 0.6
    """Cosine threshold: two entities match when cos > tau; rule (b) replaces when the mean max-cos >= tau.
    Paper Sec. 2 (tau = 0.6)."""

    max_ops: int = 1
    """How many rules (a)-(d) may fire on one response; the authors' released configuration edits once.
    The termination fill of an emptied report (rule e) does not count."""

    matching: Literal["embedding", "exact"] = "embedding"
    """"embedding": cosine of entity embeddings (the paper's main method). "exact": the RadGraph ablation
    (paper Table 2), entities match when their normalised texts are equal; presence labels may be "uncertain"."""

    conflict_requires_spurious: bool = True
    """Rule (a) fires only on entities that are spurious (no similar reference entity with the same presence).
    True: a correct "No right effusion." is not replaced because "Small left effusion." is similar with the opposite
    label. False: the literal reading of the paper (any similar pair with conflicting labels)."""

    anatomy_conflicts: bool = True
    """Rule (a) also covers a normal statement about an anatomy the reference reports as abnormal (paper Fig. 1: "The
    heart is within normal limits." vs "There is mild cardiomegaly." is replaced). A sentence of x whose countable
    entities are all absent conflicts with y_j when one of its ANATOMY entities is similar (cos > tau) to a present
    entity of y_j, or to an ANATOMY entity of a y_j that has a present entity. With ``conflict_requires_spurious``,
    the sentence is kept when the reference backs it: one of its absent entities matches an entity of a reference
    sentence that names no anatomy or a similar one ("No right effusion." stays beside "No right pleural effusion.").
    False: only entity-level conflicts (then Fig. 1's normal-heart sentence stays and rule (d) appends the
    cardiomegaly next to it, because RaTE tags "heart" as ANATOMY and "within normal limits" matches the reference's
    other normal findings)."""

    count_anatomy: bool = False
    """Whether ANATOMY entities (no presence label) can be spurious or missing. Default False: "heart" in "The heart
    is normal." is no finding by itself. They still count in rule (b)'s mean-max cosine over y_j's entities."""

    separator: str = " "
    """Text placed before an appended reference sentence (rule d) and used to join inserted sentences. When the
    sentence it follows has no final punctuation ("No effusion"), a "." is inserted first, so the two do not read as
    one sentence ("No effusion. Mild edema.")."""

    def __post_init__(self) -> None:
        if not (0.0 < self.tau < 1.0):
            # cos > tau: at tau >= 1 no entity can ever match (everything is spurious/missing); at tau <= 0 unrelated
            # entities match
            raise ValueError(f"EditConfig.tau={self.tau} must lie in the open interval (0, 1) (paper: 0.6)")
        if self.max_ops < 0:
            raise ValueError(f"EditConfig.max_ops={self.max_ops} must be >= 0")
        if self.matching not in ("embedding", "exact"):
            raise ValueError(f"EditConfig.matching={self.matching!r} must be 'embedding' or 'exact'")


@dataclass(frozen=True)
class EditOp:
    """One fired rule. ``gen_index``: sentence index in the ORIGINAL generated analysis (None for appends/fills);
    ``ref_index``: reference sentence index (None for deletions)."""

    kind: str
    gen_index: Optional[int] = None
    ref_index: Optional[int] = None
    detail: str = ""


@dataclass(frozen=True)
class Segment:
    """A piece of the edited report; the concatenation of all segments' ``text`` is ``EditResult.text``.

    kind:
        "kept": ``text == generated_text[span[0]:span[1]]`` (reuse the policy's sampled tokens);
        "inserted": new text (a reference sentence or a separator) to be tokenised.
    role: "sentence" or "separator".
    gen_index: generated sentence index for kept sentences, else None.
    ref_index: reference sentence index for inserted sentences, else None.
    """

    kind: Literal["kept", "inserted"]
    role: Literal["sentence", "separator"]
    text: str
    span: Optional[tuple[int, int]] = None
    gen_index: Optional[int] = None
    ref_index: Optional[int] = None


@dataclass(frozen=True)
class EditResult:
    """Outcome of ``edit_report``.

    Attributes:
        text: the edited report (== generated text when nothing changed).
        sentences: the edited report's sentences, stripped, in order.
        changed: whether any rule fired.
        ops: the fired rules, in the order applied.
        segments: the edited report as ordered segments (see ``Segment``), separators included.
        source: for each edited sentence, ("gen", index) or ("ref", index).
    """

    text: str
    sentences: list[str]
    changed: bool
    ops: list[EditOp]
    segments: list[Segment] = field(default_factory=list)
    source: list[tuple[str, int]] = field(default_factory=list)

    def merged_segments(self) -> list[tuple[str, Any]]:
        """Coalesce for token splicing: ``[("kept", (a, b)) | ("inserted", text), ...]``.

        Adjacent kept segments that are contiguous in the generated text become one span; adjacent inserted
        segments become one text. Concatenating the pieces (kept -> generated[a:b]) gives ``text``.
        """
        out: list[tuple[str, Any]] = []
        for seg in self.segments:
            if not seg.text:
                continue
            if seg.kind == "kept":
                assert seg.span is not None
                if out and out[-1][0] == "kept" and out[-1][1][1] == seg.span[0]:
                    out[-1] = ("kept", (out[-1][1][0], seg.span[1]))
                else:
                    out.append(("kept", seg.span))
            else:
                if out and out[-1][0] == "inserted":
                    out[-1] = ("inserted", out[-1][1] + seg.text)
                else:
                    out.append(("inserted", seg.text))
        return out
