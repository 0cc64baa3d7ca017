"""RadGraph F1 from annotations (pure Python; no model).

An annotation is radgraph's per-report dict ``{"entities": {id: {"tokens", "label", "relations": [[type, id]]}}}``.
The three reward levels of radgraph 0.1.18's ``rewards.py`` (set-based P/R/F1 between hypothesis and reference items):

* ``simple`` (RG_E): items (tokens, label);
* ``partial`` (RG_ER, the "RadGraph F1" of RRG papers and of the paper's reward and Table 1): (tokens, label, True)
  for entities with relations, (tokens, label) for entities without;
* ``complete``: (tokens, label, relation type, target tokens) per relation, (tokens, label) for entities without.

If either report has no entity the F1 is 0. ``lowercase=False`` reproduces the released package exactly (its entity
tokens are compared case-sensitively, except inside ``complete`` relation items); ``lowercase=True`` applies the
upstream fix made after the last release (Stanford-AIMI/radgraph b5ab8d0: tokens lower-cased at all levels).
"""

from __future__ import annotations

LEVELS = ("simple", "partial", "complete")


def _items(annotation: dict, level: str, lowercase: bool) -> set:
    ents = annotation["entities"]
    out = []
    for ent in ents.values():
        tokens = ent["tokens"].lower() if lowercase else ent["tokens"]
        label = ent["label"]
        if level == "simple":
            out.append((tokens, label))
        elif level == "partial":
            out.append((tokens, label, True) if ent["relations"] else (tokens, label))
        elif level == "complete":
            if not ent["relations"]:
                out.append((tokens, label))
            else:
                out.extend((ent["tokens"].lower(), label, r[0], ents[r[1]]["tokens"].lower()) for r in ent["relations"])
        else:
            raise ValueError(f"level={level!r}: expected one of {LEVELS}")
    return set(out)


def _f1(hyp: set, ref: set) -> float:
    # Same operations, in the same order, as radgraph.rewards (bit-identical floats).
    precision = sum([1 for x in hyp if x in ref]) / len(hyp) if len(hyp) > 0 else 0.0
    recall = sum([1 for x in ref if x in hyp]) / len(ref) if len(ref) > 0 else 0.0
    return (2 * precision * recall / (precision + recall)) if (precision + recall) > 0 else 0.0


def radgraph_f1(hyp_annotation: dict, ref_annotation: dict, level: str = "partial", lowercase: bool = False) -> float:
    """RadGraph F1 of one pair of annotations at ``level`` ("simple" | "partial" | "complete")."""
    if level not in LEVELS:
        raise ValueError(f"level={level!r}: expected one of {LEVELS}")
    if not hyp_annotation["entities"] or not ref_annotation["entities"]:
        return 0.0
    return _f1(_items(hyp_annotation, level, lowercase), _items(ref_annotation, level, lowercase))


def radgraph_f1_all(hyp_annotation: dict, ref_annotation: dict, lowercase: bool = False) -> tuple[float, float, float]:
    """(simple, partial, complete)."""
    simple, partial, complete = (radgraph_f1(hyp_annotation, ref_annotation, lv, lowercase) for lv in LEVELS)
    return simple, partial, complete
