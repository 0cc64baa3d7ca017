"""EditGRPO's sentence-level editing rules (paper Sec. 2 "Editing Rule", Fig. 1), as a pure function.

``edit_report(generated, reference, config, rng)`` edits a generated report x toward its reference y.

Definitions (paper Sec. 2). Two entities *match* when cos(e, e') > tau and their presence labels are equal; they
*conflict* when cos(e, e') > tau and both carry presence labels that differ ("present" / "absent" / "uncertain").
An entity of x is *spurious* (a false positive) if it matches no entity of any reference sentence, i.e. it lies in
no E[y_j] with a matching presence label. An entity of y is *missing* (a false negative) if it matches no entity of x.

Rules, tried in priority order; one "operation" is the first rule that fires; at most ``max_ops`` operations run,
re-analysing the edited report (from the precomputed entities) after each:
  (a) conflict_replace: pick one conflict uniformly at random and replace x_i by y_j;
  (b) fp_replace: for a sentence x_i with spurious set E_fp, s* = argmax_{j: y_j != x_i} mean_{e in E_fp}
      max_{e' in y_j} cos(e, e'); replace x_i by y_{s*} if that mean is >= tau;
  (c) fp_delete: delete a sentence that still has spurious entities;
  (d) fn_append: append a reference sentence that contains a missing entity;
  (e) termination: return x; if x became empty, fill it with an unused false-negative sentence (empty_fill).

Choices where the paper is silent or ambiguous (each is tested in tests/editing/test_rules.py):
  * Conflicts need a spurious entity (``EditConfig.conflict_requires_spurious``, default True): an entity with a
    matching reference entity is correct, so "No right effusion." is not "corrected" by "Small left effusion." when the
    reference also says "No right pleural effusion.". False gives the literal reading (any similar entity pair).
  * Anatomy conflicts (``EditConfig.anatomy_conflicts``, default True) are conflicts too: a sentence of x that
    states only absent findings about an anatomy ("The heart is within normal limits.": ANATOMY "heart" + absent
    "within normal limits") conflicts with a y_j reporting an abnormality of that anatomy (a present entity, or
    y_j's anatomy, similar to "heart": "There is mild cardiomegaly."). This is how we read Fig. 1, whose normal-heart
    sentence is replaced: with RaTE's entity types, "heart" carries no presence and "within normal limits" matches the
    reference's other normal findings ("The lungs are clear."), so entity-level conflicts alone would keep it and
    rule (d) would append the cardiomegaly beside it. With ``conflict_requires_spurious`` such a sentence is kept when
    the reference backs it (an absent entity matches one of a reference sentence naming no anatomy or a similar one).
  * (a) draws uniformly over distinct (x_i, y_j) sentence pairs, not over entity pairs.
  * (b) considers every sentence with spurious entities and fires on the (x_i, y_j) pair with the highest mean
    (ties: uniformly at random). Its cosine is raw: presence labels and types play no part, as in the paper's formula;
    a y_j without entities scores nothing.
  * (c) deletes the sentence with the largest fraction of spurious entities among its countable entities (ties:
    uniformly at random), which loses the least correct content.
  * (d) draws uniformly over reference sentences that contain at least one missing entity.
  * ANATOMY entities carry no presence label: by default (``EditConfig.count_anatomy=False``) they are never spurious,
    missing or conflicting, but they still count in (b)'s mean-max cosine over y_j's entities. With True they can be
    spurious/missing, matching only other ANATOMY entities.
  * "uncertain" (RadGraph OBS-U) is a presence label of its own: it matches only "uncertain" and conflicts with both
    "present" and "absent".
  * No duplicates: a reference sentence is never inserted (a, b, d, e) if the edited report already holds it (compared
    case-insensitively with whitespace collapsed); sentences inserted from the reference are never edited again.
  * The termination fill does not count toward ``max_ops`` (otherwise deleting the only sentence with max_ops=1
    would return an empty report). It prefers reference sentences with missing entities; if the reference has none,
    any unused reference sentence; if the reference is empty, the report stays empty. ``max_ops=0`` disables editing.
  * Thresholds compare with a 1e-6 tolerance (cos > tau + 1e-6 and mean >= tau - 1e-6), so float32 rounding of
    identical embeddings cannot flip a decision at the threshold.
  * Layout: a replaced sentence takes the place of x_i; a deleted sentence takes the whitespace after it with it (the
    whitespace before it, if it was last); an appended sentence goes after the last sentence, joined by
    ``EditConfig.separator``, before the report's trailing whitespace (after an inserted "." when the last
    sentence has no final punctuation). Everything else is kept byte for byte.
  * ``matching="exact"`` (the RadGraph ablation, paper Table 2/4): the similarity of two entities is 1 when their
    texts are equal after lower-casing, collapsing whitespace and trimming punctuation, else 0; the same rules apply.

All randomness comes from ``rng`` (a ``random.Random``); with no ``rng``, ``random.Random(0)`` is used.
"""
from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from verl_ext.editing.sentences import ends_with_terminal, split_sentences
from verl_ext.editing.types import (
    ABSENT,
    PARAGRAPH_KIND,
    PRESENT,
    UNCERTAIN,
    EditConfig,
    EditOp,
    EditResult,
    Entity,
    ReportAnalysis,
    Segment,
)

__all__ = ["edit_report", "edit_reports", "paragraph_edit", "pick_paragraph_slot", "normalize_sentence_key"]

_EPS = 1e-6
_PRESENCE_CODE = {None: 0, PRESENT: 1, ABSENT: 2, UNCERTAIN: 3}
_PUNCT = " \t\n\r.,;:!?()[]{}\"'"


def normalize_sentence_key(text: str) -> str:
    """Key used to detect duplicate sentences: lower-cased, whitespace collapsed."""
    return " ".join(text.split()).lower()


def _normalize_entity_text(text: str) -> str:
    return " ".join(text.lower().split()).strip(_PUNCT)


# ----------------------------------------------------------------------------------------------------------------
# Per-analysis precomputation (cached on the analysis object: a reference is edited against many responses)
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    entities: list[Entity]
    sent_of: np.ndarray  # (n_ent,) sentence index of each entity; entities ordered by sentence
    codes: np.ndarray  # (n_ent,) presence code
    rows_of_sent: list[np.ndarray]  # entity indices per sentence
    keys: list[str]  # normalised sentence texts
    texts: list[str]  # sentence texts
    emb: Optional[np.ndarray]  # (n_ent, d) L2-normalised, embedding matching only
    text_ids: Optional[list[str]]  # normalised entity texts, exact matching only
    group_starts: np.ndarray  # first entity index of each sentence that has entities
    group_sents: np.ndarray  # the sentence index of each such group


def _prepare(analysis: ReportAnalysis, matching: str) -> _Prepared:
    cache = analysis.__dict__.setdefault("_edit_cache", {})
    hit = cache.get(matching)
    if hit is not None:
        return hit
    entities: list[Entity] = []
    sent_of: list[int] = []
    rows_of_sent: list[np.ndarray] = []
    for i, s in enumerate(analysis.sentences):
        start = len(entities)
        entities.extend(s.entities)
        sent_of.extend([i] * len(s.entities))
        rows_of_sent.append(np.arange(start, len(entities), dtype=np.int64))
    n = len(entities)
    emb = None
    text_ids = None
    if matching == "embedding":
        if n:
            missing = [e.text for e in entities if e.embedding is None]
            if missing:
                raise ValueError(
                    f"edit_report(matching='embedding'): entities {missing[:5]} have no embedding; analyse the report"
                    " with an analyzer that embeds entities, or use EditConfig(matching='exact')"
                )
            dims = {e.embedding.shape[0] for e in entities}
            if len(dims) != 1:
                raise ValueError(f"edit_report: entity embeddings of one report have different sizes {sorted(dims)}")
            mat = np.stack([e.embedding for e in entities]).astype(np.float32, copy=False)
            norms = np.linalg.norm(mat, axis=1, keepdims=True)
            emb = mat / np.maximum(norms, 1e-12)
        else:
            emb = np.zeros((0, 0), dtype=np.float32)
    else:
        text_ids = [_normalize_entity_text(e.text) for e in entities]
    sent_arr = np.asarray(sent_of, dtype=np.int64)
    if n:
        change = np.flatnonzero(np.diff(sent_arr)) + 1
        group_starts = np.concatenate([[0], change]).astype(np.int64)
        group_sents = sent_arr[group_starts]
    else:
        group_starts = np.zeros(0, dtype=np.int64)
        group_sents = np.zeros(0, dtype=np.int64)
    prepared = _Prepared(
        entities=entities,
        sent_of=sent_arr,
        codes=np.asarray([_PRESENCE_CODE[e.presence] for e in entities], dtype=np.int8),
        rows_of_sent=rows_of_sent,
        keys=[normalize_sentence_key(s.text) for s in analysis.sentences],
        texts=[s.text for s in analysis.sentences],
        emb=emb,
        text_ids=text_ids,
        group_starts=group_starts,
        group_sents=group_sents,
    )
    cache[matching] = prepared
    return prepared


def _similarity(a: _Prepared, b: _Prepared) -> np.ndarray:
    """(len(a.entities), len(b.entities)) cosine (embedding) or equality (exact) matrix, float32."""
    na, nb = len(a.entities), len(b.entities)
    if na == 0 or nb == 0:
        return np.zeros((na, nb), dtype=np.float32)
    if a.emb is not None and b.emb is not None:
        if a.emb.shape[1] != b.emb.shape[1]:
            raise ValueError(
                f"edit_report: generated and reference embeddings differ in size ({a.emb.shape[1]} vs"
                f" {b.emb.shape[1]}); analyse both with the same analyzer"
            )
        return a.emb @ b.emb.T
    assert a.text_ids is not None and b.text_ids is not None
    vocab: dict[str, int] = {}
    ia = np.asarray([vocab.setdefault(t, len(vocab)) for t in a.text_ids])
    ib = np.asarray([vocab.setdefault(t, len(vocab)) for t in b.text_ids])
    return (ia[:, None] == ib[None, :]).astype(np.float32)


def _self_similarity(ref: ReportAnalysis, prepared: _Prepared, matching: str) -> np.ndarray:
    cache = ref.__dict__.setdefault("_edit_cache", {})
    key = ("self", matching)
    if key not in cache:
        cache[key] = _similarity(prepared, prepared)
    return cache[key]


# ----------------------------------------------------------------------------------------------------------------
# The edited report: slots (sentences) and separators
# ----------------------------------------------------------------------------------------------------------------

# A separator piece: ("kept", (a, b)) for a span of the generated text, or ("inserted", text).
_Piece = tuple[str, Union[tuple[int, int], str]]


@dataclass
class _Slot:
    source: str  # "gen" | "ref"
    index: int
    sep_after: Optional[_Piece]  # separator to the next slot; None for the last slot


def _pick(candidates: list, rng: random.Random):
    return candidates[0] if len(candidates) == 1 else candidates[rng.randrange(len(candidates))]


def _describe(e: Entity) -> str:
    return f"{e.text!r}[{e.presence or e.type}]"


def edit_report(
    generated: ReportAnalysis,
    reference: ReportAnalysis,
    config: Optional[EditConfig] = None,
    rng: Optional[random.Random] = None,
) -> EditResult:
    """Edit ``generated`` toward ``reference`` with the paper's rules (see the module docstring).

    Args:
        generated: analysis of the sampled response (sentences are exact spans of ``generated.text``).
        reference: analysis of the reference report.
        config: thresholds, number of operations, matching mode; ``EditConfig()`` if None.
        rng: the only source of randomness; ``random.Random(0)`` if None.

    For many responses, prefer ``edit_reports``: it shares one matrix product per reference and keeps BLAS
    single-threaded for these tiny products.
    """
    return _edit_report(generated, reference, config, rng, None)


def _edit_report(
    generated: ReportAnalysis,
    reference: ReportAnalysis,
    config: Optional[EditConfig],
    rng: Optional[random.Random],
    sim_gen_ref: Optional[np.ndarray],
) -> EditResult:
    cfg = config if config is not None else EditConfig()
    rng = rng if rng is not None else random.Random(0)
    gen_text = generated.text
    gsents = generated.sentences
    rsents = reference.sentences

    # Slots and the kept whitespace around/between the generated sentences.
    if gsents:
        prefix: _Piece = ("kept", (0, gsents[0].start))
        suffix: _Piece = ("kept", (gsents[-1].end, len(gen_text)))
    else:
        prefix, suffix = ("kept", (0, len(gen_text))), ("kept", (len(gen_text), len(gen_text)))
    slots = [
        _Slot("gen", i, ("kept", (s.end, gsents[i + 1].start)) if i + 1 < len(gsents) else None)
        for i, s in enumerate(gsents)
    ]
    ops: list[EditOp] = []

    if cfg.max_ops > 0:
        G = _prepare(generated, cfg.matching)
        R = _prepare(reference, cfg.matching)
        n_g = len(G.entities)
        # Similarity of every entity that can be in the edited report (generated, then reference) to the reference.
        if sim_gen_ref is None:
            sim_gen_ref = _similarity(G, R)
        sim_univ = np.concatenate([sim_gen_ref, _self_similarity(reference, R, cfg.matching)], axis=0)
        codes_univ = np.concatenate([G.codes, R.codes])
        entities_univ = G.entities + R.entities
        elig_r = (R.codes != 0) if not cfg.count_anatomy else np.ones(len(R.entities), dtype=bool)

        for _ in range(cfg.max_ops):
            op = _one_operation(slots, G, R, n_g, sim_univ, codes_univ, entities_univ, elig_r, cfg, rng)
            if op is None:
                break
            ops.append(op)

        # (e) termination: an emptied report is filled with an unused false-negative sentence.
        if not slots and rsents:
            fn_sents = sorted({int(R.sent_of[c]) for c in np.flatnonzero(elig_r)})
            j = _pick(fn_sents or list(range(len(rsents))), rng)
            slots.append(_Slot("ref", j, None))
            ops.append(EditOp("empty_fill", None, j, "report empty after editing"))

    return _assemble(generated, reference, prefix, suffix, slots, ops)


def _one_operation(
    slots: list[_Slot],
    G: _Prepared,
    R: _Prepared,
    n_g: int,
    sim_univ: np.ndarray,
    codes_univ: np.ndarray,
    entities_univ: list[Entity],
    elig_r: np.ndarray,
    cfg: EditConfig,
    rng: random.Random,
) -> Optional[EditOp]:
    """Apply the first rule of (a)-(d) that fires to ``slots`` in place; return its record, or None."""
    tau = cfg.tau
    # Rows: the entities of the current report, in slot order.
    row_lists = [G.rows_of_sent[s.index] if s.source == "gen" else R.rows_of_sent[s.index] + n_g for s in slots]
    rows = np.concatenate(row_lists) if row_lists else np.zeros(0, dtype=np.int64)
    slot_of_row = np.repeat(np.arange(len(slots)), [len(r) for r in row_lists])
    editable_slot = np.asarray([s.source == "gen" for s in slots], dtype=bool)
    editable_row = editable_slot[slot_of_row] if len(rows) else np.zeros(0, dtype=bool)

    S = sim_univ[rows]  # (n_rows, n_ref_entities)
    cx = codes_univ[rows]
    close = S > tau + _EPS
    match = close & (cx[:, None] == R.codes[None, :])
    elig_x = (cx != 0) if not cfg.count_anatomy else np.ones(len(rows), dtype=bool)
    spurious = elig_x & ~match.any(axis=1) & editable_row

    present_keys = {G.keys[s.index] if s.source == "gen" else R.keys[s.index] for s in slots}
    insertable = np.asarray([k not in present_keys for k in R.keys], dtype=bool)  # (n_ref_sentences,)

    def replace(slot_pos: int, j: int, kind: str, detail: str) -> EditOp:
        gi = slots[slot_pos].index
        slots[slot_pos] = _Slot("ref", j, slots[slot_pos].sep_after)
        return EditOp(kind, gi, j, detail)

    # (a) conflicting presence labels.
    if len(rows) and len(R.entities):
        conflict = close & (cx[:, None] != R.codes[None, :]) & (cx[:, None] != 0) & (R.codes[None, :] != 0)
        conflict &= editable_row[:, None] & insertable[R.sent_of][None, :]
        if cfg.conflict_requires_spurious:
            conflict &= spurious[:, None]
        pairs: dict[tuple[int, int], tuple[int, int]] = {}
        if conflict.any():
            r_idx, c_idx = np.nonzero(conflict)
            for r, c in zip(r_idx.tolist(), c_idx.tolist()):
                pairs.setdefault((int(slot_of_row[r]), int(R.sent_of[c])), (r, c))
        if cfg.anatomy_conflicts:
            for key, rc in _anatomy_conflicts(slots, slot_of_row, cx, S, close, match, R, insertable, cfg).items():
                pairs.setdefault(key, rc)
        if pairs:
            slot_pos, j = _pick(sorted(pairs), rng)
            r, c = pairs[(slot_pos, j)]
            detail = (
                f"{_describe(entities_univ[rows[r]])} vs {_describe(R.entities[c])}, cos={float(S[r, c]):.3f}"
            )
            return replace(slot_pos, j, "conflict_replace", detail)

    fp_slots = np.unique(slot_of_row[spurious]) if spurious.any() else np.zeros(0, dtype=np.int64)

    # (b) false-positive replacement: mean over E_fp of the max cosine to y_j's entities.
    if len(fp_slots) and len(R.group_starts):
        col_ok = insertable[R.group_sents]
        if col_ok.any():
            per_sent_max = np.maximum.reduceat(S, R.group_starts, axis=1)  # (n_rows, n_ref_sents_with_entities)
            weights = np.zeros((len(fp_slots), len(rows)), dtype=np.float32)
            for k, sp in enumerate(fp_slots):
                member = spurious & (slot_of_row == sp)
                weights[k, member] = 1.0 / member.sum()
            scores = weights @ per_sent_max  # (n_fp_slots, n_ref_sents_with_entities)
            scores[:, ~col_ok] = -np.inf
            best = float(scores.max())
            if best >= tau - _EPS:
                ks, gs = np.nonzero(scores >= best - _EPS)
                k, g = _pick(sorted(zip(ks.tolist(), gs.tolist())), rng)
                slot_pos, j = int(fp_slots[k]), int(R.group_sents[g])
                fp_texts = [entities_univ[rows[r]].text for r in np.flatnonzero(spurious & (slot_of_row == slot_pos))]
                return replace(slot_pos, j, "fp_replace", f"E_fp={fp_texts}, mean max cos={float(scores[k, g]):.3f}")

    # (c) false-positive deletion: the sentence with the largest spurious fraction.
    if len(fp_slots):
        fractions = []
        for sp in fp_slots:
            in_slot = slot_of_row == sp
            fractions.append(float((spurious & in_slot).sum()) / float(max((elig_x & in_slot).sum(), 1)))
        top = max(fractions)
        slot_pos = int(_pick([int(sp) for sp, f in zip(fp_slots, fractions) if f >= top - _EPS], rng))
        fp_texts = [entities_univ[rows[r]].text for r in np.flatnonzero(spurious & (slot_of_row == slot_pos))]
        gi = slots[slot_pos].index
        _delete(slots, slot_pos)
        return EditOp("fp_delete", gi, None, f"E_fp={fp_texts}")

    # (d) false-negative augmentation.
    if len(R.entities):
        missing = elig_r & ~match.any(axis=0) if len(rows) else elig_r.copy()
        candidates = sorted({int(R.sent_of[c]) for c in np.flatnonzero(missing) if insertable[R.sent_of[c]]})
        if candidates:
            j = _pick(candidates, rng)
            if slots:
                last = slots[-1]
                last_text = (G if last.source == "gen" else R).texts[last.index]
                glue = "" if ends_with_terminal(last_text) else "."
                slots[-1].sep_after = ("inserted", glue + cfg.separator)
            slots.append(_Slot("ref", j, None))
            fn_texts = [R.entities[c].text for c in np.flatnonzero(missing) if R.sent_of[c] == j]
            return EditOp("fn_append", None, j, f"missing={fn_texts}")
    return None


def _anatomy_conflicts(
    slots: list[_Slot],
    slot_of_row: np.ndarray,
    cx: np.ndarray,
    S: np.ndarray,
    close: np.ndarray,
    match: np.ndarray,
    R: _Prepared,
    insertable: np.ndarray,
    cfg: EditConfig,
) -> dict[tuple[int, int], tuple[int, int]]:
    """(slot, reference sentence) -> (row, column) of the anatomy conflicts (``EditConfig.anatomy_conflicts``): a
    normal statement (only absent countable entities) about an anatomy the reference reports as abnormal."""
    out: dict[tuple[int, int], tuple[int, int]] = {}
    ref_anat = R.codes == 0
    ref_present = R.codes == _PRESENCE_CODE[PRESENT]
    sent_abnormal = np.zeros(len(R.rows_of_sent), dtype=bool)
    sent_abnormal[R.sent_of[ref_present]] = True
    sent_has_anat = np.zeros(len(R.rows_of_sent), dtype=bool)
    sent_has_anat[R.sent_of[ref_anat]] = True
    # a column links a normal sentence's anatomy to an abnormality: a present entity, or the anatomy of an abnormal
    # sentence
    link_col = (ref_present | (ref_anat & sent_abnormal[R.sent_of])) & insertable[R.sent_of]
    if not link_col.any():
        return out
    absent = _PRESENCE_CODE[ABSENT]
    for slot_pos, slot in enumerate(slots):
        if slot.source != "gen":
            continue
        in_slot = np.flatnonzero(slot_of_row == slot_pos)
        codes = cx[in_slot]
        anat_rows = in_slot[codes == 0]
        countable = codes[codes != 0]
        if not len(anat_rows) or not len(countable) or (countable != absent).any():
            continue
        links = close[anat_rows] & link_col[None, :]
        if not links.any():
            continue
        if cfg.conflict_requires_spurious:
            # backed by the reference: an absent entity matches one of a sentence naming no anatomy or a similar one
            same_anat = close[anat_rows][:, ref_anat].any(axis=0)  # per reference anatomy column
            anat_ok_sent = ~sent_has_anat.copy()
            anat_ok_sent[R.sent_of[ref_anat][same_anat]] = True
            absent_rows = in_slot[codes == absent]
            backed = match[absent_rows] & anat_ok_sent[R.sent_of][None, :]
            if backed.any():
                continue
        a_idx, c_idx = np.nonzero(links)
        for a, c in zip(a_idx.tolist(), c_idx.tolist()):
            out.setdefault((slot_pos, int(R.sent_of[c])), (int(anat_rows[a]), c))
    return out


def _delete(slots: list[_Slot], pos: int) -> None:
    if pos == len(slots) - 1 and pos > 0:
        slots[pos - 1].sep_after = None  # the last sentence takes the whitespace before it
    del slots[pos]


def _assemble(
    generated: ReportAnalysis,
    reference: ReportAnalysis,
    prefix: _Piece,
    suffix: _Piece,
    slots: list[_Slot],
    ops: list[EditOp],
) -> EditResult:
    gen_text = generated.text
    segments: list[Segment] = []

    def add_sep(piece: Optional[_Piece]) -> None:
        if piece is None:
            return
        kind, value = piece
        if kind == "kept":
            a, b = value  # type: ignore[misc]
            if b > a:
                segments.append(Segment("kept", "separator", gen_text[a:b], (a, b)))
        elif value:
            segments.append(Segment("inserted", "separator", str(value)))

    add_sep(prefix)
    for slot in slots:
        if slot.source == "gen":
            s = generated.sentences[slot.index]
            segments.append(Segment("kept", "sentence", s.text, (s.start, s.end), gen_index=slot.index))
        else:
            s = reference.sentences[slot.index]
            segments.append(Segment("inserted", "sentence", s.text, None, ref_index=slot.index))
        add_sep(slot.sep_after)
    add_sep(suffix)
    text = "".join(seg.text for seg in segments)
    sentences = [seg.text.strip() for seg in segments if seg.role == "sentence"]
    source = list(
        ("gen", seg.gen_index) if seg.kind == "kept" else ("ref", seg.ref_index)  # type: ignore[misc]
        for seg in segments
        if seg.role == "sentence"
    )
    return EditResult(
        text=text,
        sentences=sentences,
        changed=bool(ops),
        ops=ops,
        segments=segments,
        source=source,  # type: ignore[arg-type]
    )


# ----------------------------------------------------------------------------------------------------------------
# Paragraph-level ablation (paper Table 2, "EditGRPO (para)")
# ----------------------------------------------------------------------------------------------------------------


def paragraph_edit(
    generated: Union[ReportAnalysis, str], reference: Union[ReportAnalysis, str]
) -> EditResult:
    """Replace the whole response by the reference report (the paper's paragraph-level ablation).

    The edited text is the reference text exactly, as one inserted segment. ``changed`` is False (and ``ops`` empty)
    when the response already equals the reference. Which response of a group is replaced is the caller's choice;
    ``pick_paragraph_slot`` draws it.
    """
    gen_text = generated.text if isinstance(generated, ReportAnalysis) else str(generated)
    if isinstance(reference, ReportAnalysis):
        ref_text = reference.text
        ref_sents = [s.text.strip() for s in reference.sentences]
    else:
        ref_text = str(reference)
        ref_sents = [ref_text[a:b] for a, b in split_sentences(ref_text)]
    if gen_text == ref_text:
        sentences = ref_sents
        segments = [Segment("kept", "sentence", gen_text, (0, len(gen_text)))] if gen_text else []
        return EditResult(gen_text, sentences, False, [], segments, [("gen", j) for j in range(len(sentences))])
    ops = [EditOp(PARAGRAPH_KIND, None, None, "whole response replaced by the reference")]
    # one inserted segment holding the whole reference text (all its sentences)
    segments = [Segment("inserted", "sentence", ref_text)] if ref_text else []
    return EditResult(ref_text, ref_sents, True, ops, segments, [("ref", j) for j in range(len(ref_sents))])


def pick_paragraph_slot(group_size: int, rng: random.Random) -> int:
    """Index (in [0, group_size)) of the one response per group that ``paragraph_edit`` replaces."""
    if group_size <= 0:
        raise ValueError(f"pick_paragraph_slot: group_size={group_size} must be positive")
    return rng.randrange(group_size)


def edit_reports(
    generated: Sequence[ReportAnalysis],
    references: Sequence[ReportAnalysis],
    config: Optional[EditConfig] = None,
    rngs: Optional[Sequence[random.Random]] = None,
    single_thread_blas: bool = True,
) -> list[EditResult]:
    """``edit_report`` over aligned lists (one rng per pair); the same results as calling it pair by pair (up to
    float32 rounding of the cosines).

    Pairs that share a reference object (the G/2 responses of a prompt) get their generated-vs-reference cosines
    from one matrix product, and the reference's matrices are computed once and cached on it. With
    ``single_thread_blas`` the batch runs with BLAS limited to one thread (threadpoolctl, when installed): these
    products are tiny, and a multi-threaded BLAS on a busy machine costs milliseconds each in thread wake-ups.
    """
    if len(generated) != len(references):
        raise ValueError(f"edit_reports: {len(generated)} generated vs {len(references)} references")
    if rngs is not None and len(rngs) != len(generated):
        raise ValueError(f"edit_reports: {len(rngs)} rngs for {len(generated)} pairs")
    cfg = config if config is not None else EditConfig()
    with _blas_limit(single_thread_blas):
        sims: list[Optional[np.ndarray]] = [None] * len(generated)
        if cfg.matching == "embedding" and cfg.max_ops > 0:
            groups: dict[int, list[int]] = {}
            for i, r in enumerate(references):
                groups.setdefault(id(r), []).append(i)
            for idxs in groups.values():
                R = _prepare(references[idxs[0]], cfg.matching)
                Gs = [_prepare(generated[i], cfg.matching) for i in idxs]
                mats = [g.emb for g in Gs if len(g.entities)]
                if len(R.entities) == 0 or not mats or len({m.shape[1] for m in mats} | {R.emb.shape[1]}) != 1:
                    continue  # nothing to share (or sizes differ: let edit_report raise its message)
                full = np.concatenate(mats, axis=0) @ R.emb.T
                offset = 0
                for i, g in zip(idxs, Gs):
                    n = len(g.entities)
                    sims[i] = full[offset : offset + n] if n else np.zeros((0, len(R.entities)), np.float32)
                    offset += n
        return [
            _edit_report(g, r, cfg, rngs[i] if rngs is not None else None, sims[i])
            for i, (g, r) in enumerate(zip(generated, references))
        ]


_BLAS_CONTROLLER = None


def _blas_limit(enabled: bool):
    """Context limiting BLAS to one thread (no-op when disabled or threadpoolctl is missing)."""
    global _BLAS_CONTROLLER
    if not enabled:
        return contextlib.nullcontext()
    if _BLAS_CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _BLAS_CONTROLLER = False
        else:
            _BLAS_CONTROLLER = ThreadpoolController()
    if _BLAS_CONTROLLER is False:
        return contextlib.nullcontext()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")
