"""The edit rules (paper Sec. 2) on hand-built analyses with known answers."""
import math
import random
import time

import numpy as np
import pytest

from verl_ext.editing import (
    OP_KINDS,
    PARAGRAPH_KIND,
    EditConfig,
    EditResult,
    Entity,
    ReportAnalysis,
    Sentence,
    edit_report,
    edit_reports,
    paragraph_edit,
    pick_paragraph_slot,
    split_sentences,
)

DIM = 16
_BASIS = np.eye(DIM, dtype=np.float32)


def v(*parts):
    """A vector from (axis, weight) pairs, e.g. v((0, 0.8), (1, 0.6)); an int means (axis, 1.0)."""
    out = np.zeros(DIM, dtype=np.float32)
    for p in parts:
        axis, w = (p, 1.0) if isinstance(p, int) else p
        out += w * _BASIS[axis]
    return out


def cosv(cos, a=0, b=5):
    """A unit vector with cosine ``cos`` to concept axis ``a``; the rest lies on spare axis ``10 + b % 6`` (axes
    10-15 are no concept), so two such vectors with different ``b`` have cosine ``cos**2`` to each other."""
    return v((a, cos), (10 + b % 6, math.sqrt(max(0.0, 1 - cos * cos))))


def ent(text, type_, vec=None, presence=None):
    return {"text": text, "type": type_, "embedding": None if vec is None else list(map(float, vec)),
            **({"presence": presence} if presence else {})}


def rep(*sentences, text=None):
    """rep(("Sentence text.", [ent...]), ...) -> ReportAnalysis; the text joins sentences with one space."""
    d = {"sentences": [{"text": t, "entities": es} for t, es in sentences]}
    if text is not None:
        d["text"] = text
    return ReportAnalysis.from_dict(d)


def edit(gen, ref, seed=0, **cfg):
    return edit_report(gen, ref, EditConfig(**cfg), rng=random.Random(seed))


def kinds(result):
    return [op.kind for op in result.ops]


def check_invariants(gen: ReportAnalysis, ref: ReportAnalysis, res: EditResult):
    assert "".join(s.text for s in res.segments) == res.text
    rebuilt = "".join(gen.text[p[0]:p[1]] if k == "kept" else p for k, p in res.merged_segments())
    assert rebuilt == res.text
    for seg in res.segments:
        if seg.kind == "kept":
            assert gen.text[seg.span[0]:seg.span[1]] == seg.text
            if seg.role == "sentence":
                assert gen.sentences[seg.gen_index].text == seg.text
        elif seg.role == "sentence":
            assert ref.sentences[seg.ref_index].text == seg.text
    assert len(res.sentences) == len(res.source)
    assert res.changed == bool(res.ops) == (res.text != gen.text or bool(res.ops))
    for op in res.ops:
        assert op.kind in OP_KINDS
    # no duplicate sentences introduced from the reference
    inserted = [res.sentences[k] for k, (src, _) in enumerate(res.source) if src == "ref"]
    assert len(set(inserted)) == len(inserted)


# Concept axes
CARDIO, EFFUSION, PTX, EDEMA, OPACITY, HEART, LUNG, NODULE, FRACTURE, ATELEC = range(10)


# ------------------------------------------------------------------------------------------------ paper's Fig. 1


def test_fig1_cardiomegaly_replaces_normal_heart():
    gen = rep(("The heart is within normal limits.", [ent("heart", "ANATOMY", v(HEART)),
                                                     ent("within normal limits", "NON-ABNORMALITY", cosv(0.8, CARDIO))]),
              ("No pleural effusion.", [ent("pleural effusion", "NON-ABNORMALITY", v(EFFUSION))]))
    ref = rep(("Cardiomegaly.", [ent("cardiomegaly", "ABNORMALITY", v(CARDIO))]),
              ("No pleural effusion.", [ent("pleural effusion", "NON-ABNORMALITY", v(EFFUSION))]))
    res = edit(gen, ref)
    assert kinds(res) == ["conflict_replace"]
    assert (res.ops[0].gen_index, res.ops[0].ref_index) == (0, 0)
    assert res.text == "Cardiomegaly. No pleural effusion."
    assert res.sentences == ["Cardiomegaly.", "No pleural effusion."]
    assert res.changed
    check_invariants(gen, ref, res)


def test_fig1_under_defaults_with_rate_style_entities():
    # Fig. 1 as RaTE-NER tags it: "heart" is ANATOMY, "within normal limits" a NON-ABNORMALITY that is close to the
    # reference's other normal finding ("clear", cos 0.8) and far from "cardiomegaly" (cos 0.3); "heart" and
    # "mild cardiomegaly" are close (0.7). The normal-heart sentence contradicts the reference and is replaced; it
    # must not stay next to an appended "There is mild cardiomegaly.".
    wnl, clear = cosv(0.8, OPACITY, 1), v(OPACITY)  # cos 0.8
    gen = rep(("The heart is within normal limits.", [ent("heart", "ANATOMY", cosv(0.7, CARDIO, 2)),
                                                     ent("within normal limits", "NON-ABNORMALITY", wnl)]),
              ("No pleural effusion.", [ent("pleural effusion", "NON-ABNORMALITY", v(EFFUSION))]))
    ref = rep(("There is mild cardiomegaly.", [ent("mild cardiomegaly", "ABNORMALITY", v(CARDIO))]),
              ("The lungs are clear.", [ent("lungs", "ANATOMY", v(LUNG)), ent("clear", "NON-ABNORMALITY", clear)]),
              ("No pleural effusion.", [ent("pleural effusion", "NON-ABNORMALITY", v(EFFUSION))]))
    # the controlled cosines the scenario needs
    G, R = gen.sentences[0].entities, ref.sentences
    cos = lambda a, b: float(a.embedding @ b.embedding / np.linalg.norm(a.embedding) / np.linalg.norm(b.embedding))
    assert cos(G[1], R[1].entities[1]) > 0.6 and cos(G[1], R[0].entities[0]) < 0.6
    assert cos(G[0], R[0].entities[0]) > 0.6 and cos(G[0], R[1].entities[0]) < 0.6
    for seed in range(20):
        res = edit(gen, ref, seed)
        assert kinds(res) == ["conflict_replace"], res.ops
        assert res.text == "There is mild cardiomegaly. No pleural effusion."
        check_invariants(gen, ref, res)
    # the reference's abnormality can also be stated on its own anatomy entity ("The heart is enlarged.")
    ref2 = rep(("The heart is enlarged.", [ent("heart", "ANATOMY", cosv(0.7, CARDIO, 2)),
                                          ent("enlarged", "ABNORMALITY", v(NODULE))]),
               ("The lungs are clear.", [ent("lungs", "ANATOMY", v(LUNG)), ent("clear", "NON-ABNORMALITY", clear)]))
    res = edit(gen, ref2)
    assert kinds(res) == ["conflict_replace"] and res.text.startswith("The heart is enlarged. ")
    # the old behaviour stays available
    assert kinds(edit(gen, ref, anatomy_conflicts=False)) == ["fn_append"]


def test_anatomy_conflict_keeps_the_no_right_effusion_protection():
    # "No right effusion." names its anatomy ("right", close to "left", cos 0.81) and the reference reports an
    # effusion on the left; but the reference also says the right side is free ("No right pleural effusion."), so the
    # sentence is correct and is kept (the reference's missing left effusion is appended instead).
    right, left = cosv(0.9, HEART, 3), cosv(0.9, HEART, 4)
    gen = rep(("No right effusion.", [ent("right", "ANATOMY", right),
                                      ent("effusion", "NON-ABNORMALITY", cosv(0.9, EFFUSION, 1))]))
    ref = rep(("Small left effusion.", [ent("left", "ANATOMY", left),
                                        ent("small effusion", "ABNORMALITY", cosv(0.9, EFFUSION, 2))]),
              ("No right pleural effusion.", [ent("right pleural", "ANATOMY", right),
                                              ent("effusion", "NON-ABNORMALITY", cosv(0.9, EFFUSION, 1))]))
    for seed in range(10):
        res = edit(gen, ref, seed)
        assert kinds(res) == ["fn_append"]
        assert res.text == "No right effusion. Small left effusion."
    # without the reference's statement about the right side, the normal statement contradicts it: replaced
    ref_left_only = rep(("Small left effusion.", [ent("left", "ANATOMY", left),
                                                  ent("small effusion", "ABNORMALITY", cosv(0.9, EFFUSION, 2))]))
    assert kinds(edit(gen, ref_left_only)) == ["conflict_replace"]
    assert kinds(edit(gen, ref_left_only, conflict_requires_spurious=False)) == ["conflict_replace"]


def test_fn_append_after_sentence_without_final_period():
    gen = rep(("No effusion", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]))
    ref = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]),
              ("Mild edema.", [ent("edema", "ABNORMALITY", v(EDEMA))]))
    res = edit(gen, ref)
    assert kinds(res) == ["fn_append"]
    assert res.text == "No effusion. Mild edema."
    assert pieces_of(res.text) == ["No effusion.", "Mild edema."]
    check_invariants(gen, ref, res)
    heading = rep(("FINDINGS:", []), text="FINDINGS:")
    assert edit(heading, ref).text in ("FINDINGS: No effusion.", "FINDINGS: Mild edema.")


def pieces_of(text):
    return [text[a:b] for a, b in split_sentences(text)]


# ------------------------------------------------------------------------------------------------ rule (a)


def test_conflict_has_priority_over_fp_and_fn():
    gen = rep(("Large effusion.", [ent("effusion", "ABNORMALITY", v(EFFUSION))]),
              ("Nodule.", [ent("nodule", "ABNORMALITY", v(NODULE))]))  # spurious -> fp candidate
    ref = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]),
              ("Edema.", [ent("edema", "ABNORMALITY", v(EDEMA))]))  # missing -> fn candidate
    for seed in range(10):
        res = edit(gen, ref, seed)
        assert kinds(res) == ["conflict_replace"]
        assert res.text == "No effusion. Nodule."


def test_conflict_uniform_over_sentence_pairs_and_seeded():
    gen = rep(("Effusion.", [ent("effusion", "ABNORMALITY", v(EFFUSION))]),
              ("Pneumothorax.", [ent("pneumothorax", "ABNORMALITY", v(PTX))]))
    ref = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]),
              ("No pneumothorax.", [ent("pneumothorax", "NON-ABNORMALITY", v(PTX))]))
    outcomes = {}
    for seed in range(200):
        res = edit(gen, ref, seed)
        outcomes[res.text] = outcomes.get(res.text, 0) + 1
        assert edit(gen, ref, seed).text == res.text  # same seed, same result
    assert set(outcomes) == {"No effusion. Pneumothorax.", "Effusion. No pneumothorax."}
    assert all(60 < c < 140 for c in outcomes.values())  # roughly uniform


def test_conflict_requires_spurious_entity_by_default_literal_reading_optional():
    # "No right effusion" has a same-label match ("right pleural effusion", absent): it is correct, not a conflict,
    # although it is similar to "left effusion" (present). The literal reading replaces it.
    gen = rep(("No right effusion.", [ent("right effusion", "NON-ABNORMALITY", cosv(0.9, EFFUSION, 1))]))
    ref = rep(("Small left effusion.", [ent("left effusion", "ABNORMALITY", cosv(0.9, EFFUSION, 2))]),
              ("No right pleural effusion.", [ent("right pleural effusion", "NON-ABNORMALITY",
                                                  cosv(0.9, EFFUSION, 1))]))
    default = edit(gen, ref)
    assert kinds(default) == ["fn_append"]  # "left effusion" is missing (x has it only as absent)
    assert default.text == "No right effusion. Small left effusion."
    literal = edit(gen, ref, conflict_requires_spurious=False)
    assert kinds(literal) == ["conflict_replace"]
    assert literal.text == "Small left effusion."


def test_conflict_skips_reference_sentence_already_in_report():
    # y_0 already appears verbatim in x (x_1); the conflict of x_0 with y_0 cannot insert a duplicate, so x_0's
    # spurious entity falls through to deletion.
    gen = rep(("Effusion present.", [ent("effusion", "ABNORMALITY", v(EFFUSION))]),
              ("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]))
    ref = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]))
    res = edit(gen, ref)
    assert kinds(res) == ["fp_delete"]
    assert res.text == "No effusion."


def test_uncertain_presence_conflicts_with_present_and_absent():
    gen = rep(("Possible pneumonia.", [ent("pneumonia", "DISEASE", v(OPACITY), presence="uncertain")]))
    ref_present = rep(("Pneumonia.", [ent("pneumonia", "DISEASE", v(OPACITY))]))
    ref_absent = rep(("No pneumonia.", [ent("pneumonia", "NON-DISEASE", v(OPACITY))]))
    ref_uncertain = rep(("Pneumonia is possible.", [ent("pneumonia", "DISEASE", v(OPACITY), presence="uncertain")]))
    assert kinds(edit(gen, ref_present)) == ["conflict_replace"]
    assert kinds(edit(gen, ref_absent)) == ["conflict_replace"]
    assert kinds(edit(gen, ref_uncertain)) == []


# ------------------------------------------------------------------------------------------------ rule (b)


def test_fp_replace_picks_argmax_reference_sentence():
    # The spurious "lobe opacity" (present) has no labelled counterpart; y_1's ANATOMY entity is close (0.8), y_0's is
    # farther (0.65): replace x_0 by y_1.
    gen = rep(("Left lower lobe opacity.", [ent("left lower lobe opacity", "ABNORMALITY", v(OPACITY))]),
              ("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]))
    ref = rep(("The upper lobes are clear.", [ent("upper lobes", "ANATOMY", cosv(0.65, OPACITY, 3))]),
              ("The left lower lobe is clear.", [ent("left lower lobe", "ANATOMY", cosv(0.8, OPACITY, 4))]),
              ("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]))
    res = edit(gen, ref)
    assert kinds(res) == ["fp_replace"]
    assert (res.ops[0].gen_index, res.ops[0].ref_index) == (0, 1)
    assert res.text == "The left lower lobe is clear. No effusion."
    check_invariants(gen, ref, res)


def test_fp_replace_mean_over_spurious_set_threshold_inclusive():
    # E_fp = {a, b}; y_0 gives max cos 0.8 and 0.4 -> mean 0.6 >= tau -> replace (>= is inclusive).
    gen = rep(("A and B.", [ent("a", "ABNORMALITY", v(OPACITY)), ent("b", "ABNORMALITY", v(NODULE))]))
    ref = rep(("Region.", [ent("r1", "ANATOMY", cosv(0.8, OPACITY, 5)), ent("r2", "ANATOMY", cosv(0.4, NODULE, 6))]))
    res = edit(gen, ref)
    assert kinds(res) == ["fp_replace"]
    # mean 0.55 < tau -> no replacement, the sentence is deleted instead
    ref_low = rep(("Region.", [ent("r1", "ANATOMY", cosv(0.7, OPACITY, 5)), ent("r2", "ANATOMY", cosv(0.4, NODULE, 6))]))
    res_low = edit(gen, ref_low)
    assert kinds(res_low) == ["fp_delete", "empty_fill"]


def test_fp_replace_uses_only_the_spurious_entities_of_the_sentence():
    # x_0 has a correct entity (effusion, matched) and a spurious one (opacity). Only the spurious one enters the mean:
    # y_1 (anatomy close to opacity) wins over y_0 (which contains effusion but nothing close to opacity).
    gen = rep(("No effusion; lobe opacity.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION)),
                                              ent("lobe opacity", "ABNORMALITY", v(OPACITY))]))
    ref = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]),
              ("Lobes clear.", [ent("lobes", "ANATOMY", cosv(0.7, OPACITY, 7))]))
    res = edit(gen, ref)
    assert kinds(res) == ["fp_replace"]
    assert res.ops[0].ref_index == 1


def test_fp_replace_never_uses_sentence_equal_to_x_i_or_already_present():
    gen = rep(("Lobe opacity.", [ent("lobe opacity", "ABNORMALITY", v(OPACITY))]),
              ("The lobe is clear.", [ent("lobe", "ANATOMY", cosv(0.9, OPACITY, 3))]))
    ref = rep(("The lobe is clear.", [ent("lobe", "ANATOMY", cosv(0.9, OPACITY, 3))]))
    res = edit(gen, ref)
    assert kinds(res) == ["fp_delete"]
    assert res.text == "The lobe is clear."


def test_fp_replace_ties_broken_by_rng():
    gen = rep(("Opacity.", [ent("opacity", "ABNORMALITY", v(OPACITY))]))
    ref = rep(("Lobe one.", [ent("lobe", "ANATOMY", cosv(0.7, OPACITY, 3))]),
              ("Lobe two.", [ent("lobe", "ANATOMY", cosv(0.7, OPACITY, 4))]))
    seen = {edit(gen, ref, s).ops[0].ref_index for s in range(50)}
    assert seen == {0, 1}
    assert all(kinds(edit(gen, ref, s)) == ["fp_replace"] for s in range(5))


def test_fp_replace_chooses_best_scoring_sentence_among_several_fp_sentences():
    gen = rep(("Opacity.", [ent("opacity", "ABNORMALITY", v(OPACITY))]),
              ("Nodule.", [ent("nodule", "ABNORMALITY", v(NODULE))]))
    ref = rep(("Lobe.", [ent("lobe", "ANATOMY", cosv(0.7, OPACITY, 3))]),
              ("Hilum.", [ent("hilum", "ANATOMY", cosv(0.9, NODULE, 4))]))
    for s in range(20):
        res = edit(gen, ref, s)
        assert (res.ops[0].kind, res.ops[0].gen_index, res.ops[0].ref_index) == ("fp_replace", 1, 1)


# ------------------------------------------------------------------------------------------------ rule (c)


def test_fp_delete_prefers_largest_spurious_fraction():
    gen = rep(("No effusion, but a nodule.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION)),
                                              ent("nodule", "ABNORMALITY", v(NODULE))]),
              ("Fracture.", [ent("fracture", "ABNORMALITY", v(FRACTURE))]),
              ("Heart normal.", [ent("heart", "ANATOMY", v(HEART))]))
    ref = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]))
    for s in range(20):
        res = edit(gen, ref, s)
        assert kinds(res) == ["fp_delete"] and res.ops[0].gen_index == 1
        assert res.text == "No effusion, but a nodule. Heart normal."


def test_fp_delete_ties_random():
    gen = rep(("Nodule.", [ent("nodule", "ABNORMALITY", v(NODULE))]),
              ("Fracture.", [ent("fracture", "ABNORMALITY", v(FRACTURE))]))
    ref = rep(("Normal.", []))
    assert {edit(gen, ref, s).ops[0].gen_index for s in range(50)} == {0, 1}


def test_anatomy_is_not_spurious_by_default():
    gen = rep(("The heart is seen.", [ent("heart", "ANATOMY", v(HEART))]))
    ref = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]))
    res = edit(gen, ref)
    assert kinds(res) == ["fn_append"]
    res2 = edit(gen, ref, count_anatomy=True)
    assert kinds(res2) == ["fp_delete", "empty_fill"]
    assert res2.text == "No effusion."


def test_count_anatomy_anatomy_matches_anatomy_only():
    gen = rep(("The heart is seen.", [ent("heart", "ANATOMY", v(HEART))]))
    ref = rep(("Heart size normal.", [ent("heart", "ANATOMY", v(HEART))]))
    assert kinds(edit(gen, ref, count_anatomy=True)) == []
    ref2 = rep(("Heart size normal.", [ent("heart", "ANATOMY", v(HEART))]),
               ("The lungs.", [ent("lungs", "ANATOMY", v(LUNG))]))
    res = edit(gen, ref2, count_anatomy=True)
    assert kinds(res) == ["fn_append"] and res.text == "The heart is seen. The lungs."
    assert kinds(edit(gen, ref2)) == []  # anatomy not counted


# ------------------------------------------------------------------------------------------------ rule (d) + (e)


def test_fn_append_adds_missing_sentence_at_end_keeping_trailing_whitespace():
    gen = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]), text="No effusion.\n")
    ref = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]),
              ("Mild edema.", [ent("edema", "ABNORMALITY", v(EDEMA))]))
    res = edit(gen, ref)
    assert kinds(res) == ["fn_append"]
    assert (res.ops[0].gen_index, res.ops[0].ref_index) == (None, 1)
    assert res.text == "No effusion. Mild edema.\n"
    check_invariants(gen, ref, res)
    custom = edit(gen, ref, separator="\n")
    assert custom.text == "No effusion.\nMild edema.\n"


def test_fn_append_random_among_candidates_never_duplicates():
    gen = rep(("Mild edema.", [ent("edema", "ABNORMALITY", v(CARDIO))]))  # entity mismatched, text duplicate of y_0
    ref = rep(("Mild edema.", [ent("edema", "ABNORMALITY", v(EDEMA))]),
              ("Small effusion.", [ent("effusion", "ABNORMALITY", v(EFFUSION))]),
              ("Atelectasis.", [ent("atelectasis", "ABNORMALITY", v(ATELEC))]))
    appended = set()
    for s in range(60):
        res = edit(gen, ref, s)
        # x_0's "edema" has axis CARDIO: spurious, and y_0 (the would-be replacement) is already in x -> delete.
        assert kinds(res) == ["fp_delete", "empty_fill"]
        res3 = edit(gen, ref, s, max_ops=3)
        for op in res3.ops:
            if op.kind == "fn_append":
                appended.add(op.ref_index)
        check_invariants(gen, ref, res3)
    assert 0 in appended or 1 in appended


def test_fn_append_uniform_over_sentences_with_missing_entities():
    gen = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]))
    ref = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]),
              ("Edema.", [ent("edema", "ABNORMALITY", v(EDEMA))]),
              ("Atelectasis.", [ent("atelectasis", "ABNORMALITY", v(ATELEC))]),
              ("Heart.", [ent("heart", "ANATOMY", v(HEART))]))  # anatomy: not a finding
    counts = {}
    for s in range(300):
        j = edit(gen, ref, s).ops[0].ref_index
        counts[j] = counts.get(j, 0) + 1
    assert set(counts) == {1, 2}
    assert all(100 < c < 200 for c in counts.values())


def test_termination_returns_x_unchanged():
    text = "  No effusion.\n\nHeart   normal.  \n"
    gen = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]),
              ("Heart   normal.", [ent("heart", "ANATOMY", v(HEART))]), text=text)
    ref = rep(("No pleural effusion.", [ent("pleural effusion", "NON-ABNORMALITY", cosv(0.95, EFFUSION, 3))]))
    res = edit(gen, ref)
    assert res.text == text and not res.changed and res.ops == []
    assert res.sentences == ["No effusion.", "Heart   normal."]
    assert res.merged_segments() == [("kept", (0, len(text)))]


def test_empty_fill_after_deleting_only_sentence():
    gen = rep(("Fracture.", [ent("fracture", "ABNORMALITY", v(FRACTURE))]))
    ref = rep(("Heart normal.", [ent("heart", "ANATOMY", v(HEART))]),
              ("Mild edema.", [ent("edema", "ABNORMALITY", v(EDEMA))]))
    res = edit(gen, ref)
    assert kinds(res) == ["fp_delete", "empty_fill"]
    assert res.ops[1].ref_index == 1  # prefers a false-negative sentence
    assert res.text == "Mild edema."
    check_invariants(gen, ref, res)


def test_empty_fill_without_false_negatives_uses_any_reference_sentence():
    gen = rep(("Fracture.", [ent("fracture", "ABNORMALITY", v(FRACTURE))]))
    ref = rep(("The study is unremarkable.", []))
    res = edit(gen, ref)
    assert kinds(res) == ["fp_delete", "empty_fill"]
    assert res.text == "The study is unremarkable."


# ------------------------------------------------------------------------------------------------ edge inputs


def test_empty_generated_gets_reference_sentence():
    gen = ReportAnalysis("", ())
    ref = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]),
              ("Heart normal.", [ent("heart", "ANATOMY", v(HEART))]))
    res = edit(gen, ref)
    assert kinds(res) == ["fn_append"] and res.text == "No effusion."
    check_invariants(gen, ref, res)
    ref_no_entities = rep(("Normal chest.", []))
    res2 = edit(gen, ref_no_entities)
    assert kinds(res2) == ["empty_fill"] and res2.text == "Normal chest."


def test_whitespace_only_generated_keeps_its_whitespace():
    gen = ReportAnalysis(" \n", ())
    ref = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]))
    res = edit(gen, ref)
    assert res.text == " \nNo effusion."
    check_invariants(gen, ref, res)


def test_both_empty():
    res = edit(ReportAnalysis("", ()), ReportAnalysis("", ()))
    assert res.text == "" and not res.changed and res.sentences == []


def test_empty_reference_deletes_spurious_and_may_leave_empty():
    gen = rep(("Fracture.", [ent("fracture", "ABNORMALITY", v(FRACTURE))]), ("Heart.", []))
    res = edit(gen, ReportAnalysis("", ()))
    assert kinds(res) == ["fp_delete"] and res.text == "Heart."
    res2 = edit(rep(("Fracture.", [ent("fracture", "ABNORMALITY", v(FRACTURE))])), ReportAnalysis("", ()))
    assert kinds(res2) == ["fp_delete"] and res2.text == "" and res2.sentences == []


def test_response_without_entities_only_appends():
    gen = rep(("The study is fine.", []), ("Nothing else.", []))
    ref = rep(("Mild edema.", [ent("edema", "ABNORMALITY", v(EDEMA))]))
    res = edit(gen, ref, max_ops=5)
    assert kinds(res) == ["fn_append"]
    assert res.text == "The study is fine. Nothing else. Mild edema."


def test_reference_without_entities_deletes_findings_only():
    gen = rep(("Mild edema.", [ent("edema", "ABNORMALITY", v(EDEMA))]), ("Heart seen.", [ent("heart", "ANATOMY", v(HEART))]))
    ref = rep(("Normal study.", []))
    res = edit(gen, ref, max_ops=5)
    assert kinds(res) == ["fp_delete"] and res.text == "Heart seen."


def test_max_ops_zero_disables_editing():
    gen = rep(("Fracture.", [ent("fracture", "ABNORMALITY", v(FRACTURE))]))
    ref = rep(("Mild edema.", [ent("edema", "ABNORMALITY", v(EDEMA))]))
    res = edit(gen, ref, max_ops=0)
    assert res.text == gen.text and not res.changed


def test_max_ops_sequence_of_rules():
    gen = rep(("Large effusion.", [ent("effusion", "ABNORMALITY", v(EFFUSION))]),
              ("Rib fracture.", [ent("fracture", "ABNORMALITY", v(FRACTURE))]),
              ("Heart normal.", [ent("heart size", "NON-ABNORMALITY", v(CARDIO))]),
              text="Large effusion.\nRib fracture.\nHeart normal.")
    ref = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]),
              ("Heart size normal.", [ent("heart size", "NON-ABNORMALITY", v(CARDIO))]),
              ("Mild edema.", [ent("edema", "ABNORMALITY", v(EDEMA))]),
              ("Small atelectasis.", [ent("atelectasis", "ABNORMALITY", v(ATELEC))]))
    one = edit(gen, ref, max_ops=1)
    assert kinds(one) == ["conflict_replace"]
    assert one.text == "No effusion.\nRib fracture.\nHeart normal."
    many = edit(gen, ref, seed=3, max_ops=10)
    assert kinds(many) == ["conflict_replace", "fp_delete", "fn_append", "fn_append"]
    assert many.ops[1].gen_index == 1  # gen indices refer to the original analysis
    assert many.text.startswith("No effusion.\nHeart normal. ")
    assert set(many.sentences[2:]) == {"Mild edema.", "Small atelectasis."}
    check_invariants(gen, ref, many)
    # once everything is fixed, further ops do nothing
    again = edit(gen, ref, seed=3, max_ops=100)
    assert again.text == many.text
    # max_ops bounds the number of operations
    two = edit(gen, ref, seed=3, max_ops=2)
    assert kinds(two) == ["conflict_replace", "fp_delete"]
    assert two.text == "No effusion.\nHeart normal."


def test_deleting_last_sentence_takes_preceding_whitespace():
    text = "No effusion.\n\nRib fracture.\n"
    gen = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]),
              ("Rib fracture.", [ent("fracture", "ABNORMALITY", v(FRACTURE))]), text=text)
    ref = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]))
    res = edit(gen, ref)
    assert res.text == "No effusion.\n"
    text2 = "Rib fracture.\n\nNo effusion.\n"
    gen2 = rep(("Rib fracture.", [ent("fracture", "ABNORMALITY", v(FRACTURE))]),
               ("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]), text=text2)
    assert edit(gen2, ref).text == "No effusion.\n"


def test_unicode_and_whitespace_byte_identity():
    text = "\u00a0Héart sïze normal…\r\n\r\n  Ünïcode · opacity 1.5 cm.\t\tPleura: no effusion.  \n"
    spans = split_sentences(text)
    assert [text[a:b] for a, b in spans] == ["Héart sïze normal…", "Ünïcode · opacity 1.5 cm.", "Pleura: no effusion."]
    ents = [[ent("héart", "ANATOMY", v(HEART))], [ent("opacity", "ABNORMALITY", v(OPACITY))],
            [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]]
    gen = ReportAnalysis(text, tuple(Sentence(text[a:b], a, b, tuple(Entity.from_dict(e) for e in es))
                                     for (a, b), es in zip(spans, ents)))
    ref = rep(("Pleura: no effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]),
              ("Ödem leicht 😷.", [ent("ödem", "ABNORMALITY", v(EDEMA))]))
    res = edit(gen, ref, max_ops=5)
    assert kinds(res) == ["fp_delete", "fn_append"]
    assert res.text == "\u00a0Héart sïze normal…\r\n\r\n  Pleura: no effusion. Ödem leicht 😷.  \n"
    check_invariants(gen, ref, res)
    for seg in res.segments:
        if seg.kind == "kept":
            assert text[seg.span[0]:seg.span[1]].encode() == seg.text.encode()


def test_very_long_reports_fast():
    rng = np.random.default_rng(0)
    n = 400

    def big(prefix, present):
        sents = []
        for i in range(n):
            es = [ent(f"{prefix}{i}-{k}", "ABNORMALITY" if present else "NON-ABNORMALITY",
                      rng.standard_normal(DIM)) for k in range(3)]
            sents.append((f"Sentence {prefix} {i} " + "word " * 20 + ".", es))
        return rep(*sents)

    gen, ref = big("g", True), big("r", False)
    t0 = time.perf_counter()
    res = edit(gen, ref, max_ops=20)
    elapsed = time.perf_counter() - t0
    assert 1 <= len(res.ops) <= 20
    check_invariants(gen, ref, res)
    assert elapsed < 10


def test_determinism_and_rng_is_the_only_randomness():
    gen = rep(("Effusion.", [ent("effusion", "ABNORMALITY", v(EFFUSION))]),
              ("Pneumothorax.", [ent("pneumothorax", "ABNORMALITY", v(PTX))]),
              ("Fracture.", [ent("fracture", "ABNORMALITY", v(FRACTURE))]))
    ref = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]),
              ("No pneumothorax.", [ent("pneumothorax", "NON-ABNORMALITY", v(PTX))]),
              ("Edema.", [ent("edema", "ABNORMALITY", v(EDEMA))]),
              ("Atelectasis.", [ent("atelectasis", "ABNORMALITY", v(ATELEC))]))
    for seed in range(30):
        random.seed(seed * 7)
        np.random.seed(seed)
        a = edit(gen, ref, seed, max_ops=4)
        random.seed(12345)
        np.random.seed(999)
        b = edit(gen, ref, seed, max_ops=4)
        assert (a.text, a.ops) == (b.text, b.ops)
    assert len({edit(gen, ref, s, max_ops=4).text for s in range(30)}) > 1
    # default rng (None) is deterministic too
    assert edit_report(gen, ref).text == edit_report(gen, ref).text


def test_threshold_is_strict_for_matching():
    gen = rep(("No opacity.", [ent("opacity", "NON-ABNORMALITY", cosv(0.6, OPACITY))]))
    ref = rep(("No consolidation.", [ent("consolidation", "NON-ABNORMALITY", v(OPACITY))]))
    # cos == tau: not a match -> spurious; no anatomy -> fp_replace mean 0.6 >= tau (inclusive)
    res = edit(gen, ref, tau=0.6)
    assert kinds(res) == ["fp_replace"]
    assert kinds(edit(gen, ref, tau=0.59)) == []  # cos > tau: a match


def test_embedding_errors_are_explicit():
    gen = rep(("Effusion.", [ent("effusion", "ABNORMALITY", None)]))
    ref = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]))
    with pytest.raises(ValueError, match="no embedding"):
        edit(gen, ref)
    gen2 = rep(("Effusion.", [ent("effusion", "ABNORMALITY", [1.0, 0.0])]))
    with pytest.raises(ValueError, match="differ in size"):
        edit(gen2, ref)


def test_edit_reports_matches_edit_report_and_pickles_without_cache():
    import pickle

    rng = np.random.default_rng(5)
    types = ["ABNORMALITY", "NON-ABNORMALITY", "DISEASE", "NON-DISEASE", "ANATOMY"]

    def random_report(k):
        return rep(*[(f"S{i}.", [ent(f"e{j}", str(rng.choice(types)), _BASIS[int(rng.integers(0, 8))]
                                    + 0.2 * rng.standard_normal(DIM)) for j in range(int(rng.integers(0, 4)))])
                     for i in range(k)])

    refs = [random_report(6) for _ in range(10)]
    gens = [random_report(int(rng.integers(0, 9))) for _ in range(50)]
    pair_refs = [refs[i // 5] for i in range(50)]
    for single in (True, False):
        batched = edit_reports(gens, pair_refs, EditConfig(max_ops=2),
                               [random.Random(i) for i in range(50)], single_thread_blas=single)
        for i, res in enumerate(batched):
            alone = edit(gens[i], pair_refs[i], i, max_ops=2)
            assert (res.text, res.ops) == (alone.text, alone.ops)
    assert "_edit_cache" in refs[0].__dict__
    clone = pickle.loads(pickle.dumps(refs[0]))
    assert "_edit_cache" not in clone.__dict__ and clone.to_dict() == refs[0].to_dict()


def test_reference_cache_reused_across_responses():
    ref = rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]),
              ("Mild edema.", [ent("edema", "ABNORMALITY", v(EDEMA))]))
    gens = [rep(("Effusion.", [ent("effusion", "ABNORMALITY", v(EFFUSION))])),
            rep(("No effusion.", [ent("effusion", "NON-ABNORMALITY", v(EFFUSION))]))]
    results = edit_reports(gens, [ref, ref], EditConfig(), [random.Random(1), random.Random(2)])
    assert [kinds(r) for r in results] == [["conflict_replace"], ["fn_append"]]
    assert "_edit_cache" in ref.__dict__
    with pytest.raises(ValueError):
        edit_reports(gens, [ref], EditConfig())


# ------------------------------------------------------------------------------------------------ RadGraph variant


def test_exact_matching_radgraph_variant():
    gen = rep(("Possible Pneumonia.", [ent("Pneumonia", "DISEASE", None, presence="uncertain")]),
              ("No effusion.", [ent("effusion", "NON-ABNORMALITY", None)]),
              ("Heart enlarged.", [ent("enlarged", "ABNORMALITY", None), ent("heart", "ANATOMY", None)]))
    ref = rep(("Pneumonia in the right lung.", [ent("pneumonia", "DISEASE", None), ent("lung", "ANATOMY", None)]),
              ("No  Effusion.", [ent("effusion.", "NON-ABNORMALITY", None)]),
              ("Cardiomegaly.", [ent("cardiomegaly", "ABNORMALITY", None)]))
    res = edit(gen, ref, matching="exact")
    assert kinds(res) == ["conflict_replace"]
    assert (res.ops[0].gen_index, res.ops[0].ref_index) == (0, 0)
    many = edit(gen, ref, matching="exact", max_ops=5)
    # "enlarged" vs "cardiomegaly": phrasing differs -> delete + append (RadGraph is sensitive to phrasing)
    assert kinds(many) == ["conflict_replace", "fp_delete", "fn_append"]
    assert many.text == "Pneumonia in the right lung. No effusion. Cardiomegaly."
    check_invariants(gen, ref, many)


def test_exact_matching_uncertain_matches_uncertain():
    gen = rep(("Possible pneumonia.", [ent("pneumonia", "DISEASE", None, presence="uncertain")]))
    ref = rep(("Pneumonia not excluded.", [ent("pneumonia", "DISEASE", None, presence="uncertain")]))
    assert kinds(edit(gen, ref, matching="exact")) == []


# ------------------------------------------------------------------------------------------------ paragraph level


def test_paragraph_edit():
    gen = rep(("Effusion.", []), text="Effusion.\n")
    ref = rep(("No effusion.", []), ("Heart normal.", []), text="No effusion.\nHeart normal.")
    res = paragraph_edit(gen, ref)
    assert res.text == "No effusion.\nHeart normal." and res.changed
    assert res.sentences == ["No effusion.", "Heart normal."]
    assert [op.kind for op in res.ops] == [PARAGRAPH_KIND]
    assert res.merged_segments() == [("inserted", "No effusion.\nHeart normal.")]
    same = paragraph_edit("No effusion. Heart normal.", "No effusion. Heart normal.")
    assert not same.changed and same.text == "No effusion. Heart normal."
    assert same.sentences == ["No effusion.", "Heart normal."]
    from_str = paragraph_edit("x", "No effusion. Heart normal.")
    assert from_str.sentences == ["No effusion.", "Heart normal."]
    assert {pick_paragraph_slot(5, random.Random(s)) for s in range(100)} == set(range(5))
    with pytest.raises(ValueError):
        pick_paragraph_slot(0, random.Random(0))


# ------------------------------------------------------------------------------------------------ fuzz


def test_random_fuzz_invariants():
    rng = np.random.default_rng(1)
    types = ["ABNORMALITY", "NON-ABNORMALITY", "DISEASE", "NON-DISEASE", "ANATOMY"]
    words = ["Heart", "lungs", "effusion", "é", "\u00a0", "1.5 cm", "no", "Dr.", "opacity"]
    seps = [" ", "\n", "  ", "\n\n", "\t", " \r\n"]

    def random_report():
        k = int(rng.integers(0, 8))
        sents = []
        for _ in range(k):
            t = " ".join(rng.choice(words, size=int(rng.integers(1, 5)))).strip() + "."
            es = [ent(f"e{int(rng.integers(0, 6))}", str(rng.choice(types)),
                      _BASIS[int(rng.integers(0, 6))] + 0.3 * rng.standard_normal(DIM),
                      presence=("uncertain" if rng.random() < 0.1 else None)) for _ in range(int(rng.integers(0, 4)))]
            es = [e for e in es if not (e.get("presence") and e["type"] == "ANATOMY")]
            sents.append((t, es))
        text = str(rng.choice(["", " ", "\n"]))
        spans = []
        for t, _ in sents:
            spans.append((len(text), len(text) + len(t)))
            text += t + str(rng.choice(seps))
        return ReportAnalysis(text, tuple(Sentence(t, a, b, tuple(Entity.from_dict(e) for e in es))
                                          for (t, es), (a, b) in zip(sents, spans)))

    for i in range(300):
        gen, ref = random_report(), random_report()
        for matching in ("embedding", "exact"):
            for max_ops in (1, 3):
                res = edit(gen, ref, i, max_ops=max_ops, matching=matching)
                check_invariants(gen, ref, res)
                assert len([o for o in res.ops if o.kind != "empty_fill"]) <= max_ops
                again = edit(gen, ref, i, max_ops=max_ops, matching=matching)
                assert again.text == res.text and again.ops == res.ops
