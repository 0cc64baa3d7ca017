"""ReXrank's metric definitions (verl_ext.metrics.rexrank) against values their sources publish.

* BLEU-2: fast-bleu's README example (CXR-Report-Metric scores BLEU with ``fast_bleu.BLEU``):
  BLEU-2 = 0.7453559924999299 and 0.0191380231127159 for its two hypotheses.
* 1/RadCliQ-v1: every row of ReXrank's published Findings boards (the results CSVs shipped in
  verl_ext/eval/resources/rexrank, copied from rajpurkarlab/ReXrank gh-pages) must equal 1/RadCliQ-v1 of its own
  BLEU, BertScore, SembScore and RadGraph columns, to the rounding of those 3-decimal numbers; and the older
  non-inverted RadCliQ-v1 column of the main branch's ``results/result_mimic-cxr.csv`` likewise.
* RadGraph: the entity F1 is radgraph's own ``simple`` reward level (radgraph.rewards as the oracle).
"""
import csv
import math

import numpy as np
import pytest

from verl_ext.eval.rexrank_board import RESOURCES
from verl_ext.metrics import rexrank as rx

# fast-bleu README "Sample Usage" (Danial-Alh/fast-bleu).
REF1 = "It is a guide to action that ensures that the military will forever heed Party commands".split()
REF2 = ("It is the guiding principle which guarantees the military forces always being under the command of the "
        "Party").split()
REF3 = "It is the practical guide for the army always to heed the directions of the party".split()
HYP1 = "It is a guide to action which ensures that the military always obeys the commands of the party".split()
HYP2 = "he read the book because he was interested in world history".split()

# rajpurkarlab/ReXrank main branch, results/result_mimic-cxr.csv (Model, BLEU, BertScore, SembScore, RadGraph,
# RadCliQ-v1): the board before the column was inverted.
OLD_MIMIC_ROWS = (
    ("CheXagent*", 0.094, 0.304, 0.331, 0.146, 1.437),
    ("CheXpertPlus-mimic*", 0.128, 0.308, 0.365, 0.168, 1.369),
    ("Cvt2distilgpt2*", 0.109, 0.278, 0.315, 0.145, 1.498),
    ("MedVersa*", 0.193, 0.43, 0.315, 0.273, 1.088),
    ("RadFM*", 0.081, 0.281, 0.245, 0.111, 1.604),
    ("RaDialog*", 0.112, 0.322, 0.381, 0.168, 1.33),
    ("RGRG*", 0.125, 0.323, 0.337, 0.176, 1.363),
    ("VLCI*", 0.124, 0.252, 0.293, 0.136, 1.573),
    ("LLM-CXR*", 0.036, 0.158, 0.15, 0.047, 1.983),
    ("GPT4V", 0.065, 0.204, 0.19, 0.085, 1.819),
)
# How far RadCliQ-v1 can move when each input is only known to +-0.0005 (3 decimals).
RADCLIQ_ROUNDING = float(np.abs(rx.RADCLIQ_V1_COEFS / rx.RADCLIQ_V1_SCALE).sum() * 0.0005)


def test_bleu2_matches_fast_bleu_readme():
    refs = [REF1, REF2, REF3]
    assert rx.bleu2(HYP1, refs) == pytest.approx(0.7453559924999299, abs=1e-15)
    assert rx.bleu2(HYP2, refs) == pytest.approx(0.0191380231127159, abs=1e-15)


def test_bleu_tokens_split_on_spaces_only():
    # CXR-Report-Metric's prep_reports: lower-case, "." -> " .", split(" "), drop "".
    assert rx.bleu_tokens("Small  effusion.\nThe heart") == ["small", "effusion", ".\nthe", "heart"]
    assert rx.bleu2("", "No effusion.") == 0.0
    assert rx.bleu2("No effusion.", "No effusion.") == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["findings_result_mimiccxr.csv", "findings_result_iu_xray.csv",
                                  "findings_result_chexpertplus.csv"])
def test_inverse_radcliq_v1_reproduces_every_published_findings_row(name):
    with (RESOURCES / name).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 7
    for row in rows:
        value = rx.radcliq_v1(*(float(row[c]) for c in rx.RADCLIQ_V1_FEATURES))
        tolerance = RADCLIQ_ROUNDING / value ** 2 + 0.0005
        assert 1 / value == pytest.approx(float(row[rx.INV_RADCLIQ_V1]), abs=tolerance), row["Model Name"]


@pytest.mark.parametrize("row", OLD_MIMIC_ROWS, ids=[r[0] for r in OLD_MIMIC_ROWS])
def test_radcliq_v1_reproduces_the_older_non_inverted_column(row):
    _, bleu, bertscore, semb, radgraph, published = row
    assert rx.radcliq_v1(radgraph, bertscore, semb, bleu) == pytest.approx(published, abs=RADCLIQ_ROUNDING + 5e-4)


def test_radcliq_v1_is_linear_so_the_board_value_is_one_over_the_mean():
    rng = np.random.default_rng(0)
    x = rng.random((50, 4))
    per_study = rx.radcliq_v1(*x.T)
    assert per_study.mean() == pytest.approx(float(rx.radcliq_v1(*x.mean(axis=0))))
    assert rx.inverse(0.0) != rx.inverse(0.0)  # nan, not a division error


def _ann(*entities):
    """entities: (tokens, label, [(relation, target index)])."""
    return {"entities": {str(i + 1): {"tokens": t, "label": lab, "start_ix": i, "end_ix": i,
                                      "relations": [[rel, str(j + 1)] for rel, j in rels]}
                         for i, (t, lab, rels) in enumerate(entities)}}


REF = _ann(("effusion", "OBS-DP", [("located_at", 1)]), ("pleural", "ANAT-DP", []), ("heart", "ANAT-DP", []),
           ("enlarged", "OBS-DP", [("located_at", 2)]))
HYP = _ann(("effusion", "OBS-DP", [("located_at", 1)]), ("pleural", "ANAT-DP", []), ("heart", "ANAT-DP", []),
           ("enlarged", "OBS-DA", [("located_at", 2)]), ("pneumothorax", "OBS-DA", []))


def test_radgraph_entity_and_relation_f1_known_answer():
    ent, rel, combined = rx.radgraph_scores(HYP, REF)
    # entities: 3 of 5 hypothesis items match 3 of 4 reference items -> P 3/5, R 3/4
    assert ent == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    # relations: ref {(effusion,OBS-DP)->(pleural,ANAT-DP), (enlarged,OBS-DP)->(heart,ANAT-DP)}; hyp keeps the
    # first; the second's source label differs -> P 1/2, R 1/2
    assert rel == pytest.approx(0.5)
    assert combined == pytest.approx((ent + rel) / 2)
    assert rx.radgraph_scores({"entities": {}}, REF) == (0.0, 0.0, 0.0)
    no_rel = _ann(("effusion", "OBS-DP", []))
    assert rx.radgraph_scores(no_rel, no_rel) == (1.0, 0.0, 0.5)  # no relation on either side: relation F1 0


def test_entity_f1_is_radgraphs_simple_reward_level():
    from verl_ext.clinical import compat

    compat.install()
    with compat.quiet_imports():
        from radgraph.rewards import compute_reward

    pairs = [(HYP, REF), (REF, HYP), (REF, REF), (_ann(("Effusion", "OBS-DP", [])), _ann(("effusion", "OBS-DP", [])))]
    for hyp, ref in pairs:
        expected = compute_reward(hyp, ref, "simple")
        assert rx.radgraph_scores(hyp, ref)[0] == pytest.approx(expected)


def test_cosine_rows():
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.0], [-1.0, -1.0]])
    assert rx.cosine(a, b).tolist() == pytest.approx([1.0, -1.0])
    assert not math.isnan(float(rx.cosine(a[0], a[1])[0]))
