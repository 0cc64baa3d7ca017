"""ReXrank's report metrics, the pure parts: BLEU-2, RadGraph entity/relation F1, SembScore's cosine, RadCliQ-v1.

ReXrank (rajpurkarlab/ReXrank, ``example_files/evaluation_script.md``) scores with rajpurkarlab/CXR-Report-Metric
(``CXRMetric/run_eval.py``, commit "Updated composite metric computation to RadCliQ-v1"), plus the RaTEScore and
GREEN packages. What each column is, per study (the board shows the mean over studies):

* **BLEU** — BLEU-2 of one generated report against its one reference, as ``fast_bleu.BLEU([ref], {"bigram":
  (1/2, 1/2)}).get_score([hyp])``: fast-bleu is "a C++ implementation of NLTK BLEU" whose default smoothing is NLTK's
  ``method1`` (epsilon 0.1 for a zero n-gram count), so `bleu2` is nltk's ``sentence_bleu`` with that smoothing
  (checked against the values in fast-bleu's README). Tokens: ``str(text).lower().replace(".", " .").split(" ")``
  without empty strings (``prep_reports``): only spaces split, so ``"effusion.\\nThe"`` gives ``"effusion"``,
  ``".\\nthe"``.
* **BertScore** — F1 of ``bert_score.BERTScorer(model_type="distilroberta-base", lang="en",
  rescale_with_baseline=True, idf=False)`` on texts with runs of spaces collapsed (``re.sub(r" +", " ", t)``);
  model-backed, in ``verl_ext.clinical.bertscore``.
* **SembScore** — cosine of the CheXbert [CLS] embeddings of the two reports (`cosine`; embeddings from
  ``verl_ext.clinical.chexbert_embed``).
* **RadGraph** — ``radgraph_combined``: the mean of the entity F1 and the relation F1 of the RadGraph annotations
  (``CXRMetric/radgraph_evaluate_model.py``). Entities are ``(tokens, label)`` pairs (radgraph's ``simple`` reward
  level: the same set F1, checked against ``radgraph.rewards``); relations are ``((tokens, label), (target tokens,
  target label), relation)`` triples — not radgraph's ``complete`` level, which also counts entities without
  relations and leaves out the target's label. An empty set on either side gives 0.
* **1/RadCliQ-v1** — RadCliQ-v1 is a linear model over ``[RadGraph, BertScore, SembScore, BLEU]``, standardised
  with a fitted ``StandardScaler`` (``CXRMetric/radcliq-v1.pkl``; `RADCLIQ_V1_MEAN`, `RADCLIQ_V1_SCALE`,
  `RADCLIQ_V1_COEFS`, `RADCLIQ_V1_INTERCEPT` are its numbers, read from the pickle). Lower is better; the board shows
  ``1 / mean(RadCliQ-v1)``. Being linear, that equals ``1 / radcliq_v1(mean components)``, and every row of ReXrank's
  findings boards satisfies it to rounding (tested). RadCliQ-v1 reaches 0, and its reciprocal infinity, for reports
  scoring at the scaler's mean on every component; better ones make it negative.
* **RaTEScore** — the RaTEScore package's score (0.5 when a side has no entity, `RATESCORE_NO_ENTITY`).
* **GREEN** — the GREEN model's score ``matched / (matched + significant errors)``.

`BOARD_COLUMNS` are the metric columns of ReXrank's results CSVs (``results/findings_result_*.csv`` for the
findings board, ``results/result_*.csv`` for findings + impression); `RESULTS_HEADER` is their full header.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

BLEU = "BLEU"
BERTSCORE = "BertScore"
SEMBSCORE = "SembScore"
RADGRAPH = "RadGraph"
RADCLIQ_V1 = "RadCliQ-v1"
INV_RADCLIQ_V1 = "1/RadCliQ-v1"
RATESCORE = "RaTEScore"
GREEN = "GREEN"
FINERADSCORE = "1/FineRadScore"

#: The metric columns of ReXrank's results CSVs, in their order (FineRadScore needs an API LLM; not computed here).
BOARD_COLUMNS: tuple[str, ...] = (BLEU, BERTSCORE, SEMBSCORE, RADGRAPH, INV_RADCLIQ_V1, RATESCORE, GREEN,
                                  FINERADSCORE)
RESULTS_HEADER: tuple[str, ...] = ("Rank", "Date", "Model Name", "Institution", "Model URL") + BOARD_COLUMNS
#: The column the website ranks by (``generate_rank_from_csv.py``: ``sort_values(by='1/RadCliQ-v1', ascending=False)``).
RANK_BY = INV_RADCLIQ_V1

#: RadCliQ-v1's inputs, in the order of ``CXRMetric/run_eval.py``'s ``COLS``.
RADCLIQ_V1_FEATURES: tuple[str, ...] = (RADGRAPH, BERTSCORE, SEMBSCORE, BLEU)
RADCLIQ_V1_MEAN = np.array([0.5379231241355762, 0.6175725628125001, 0.7647942121140658, 0.44738335396242174])
RADCLIQ_V1_SCALE = np.array([0.3028258411486429, 0.22430938459304575, 0.2539439110169773, 0.2989271671041838])
RADCLIQ_V1_COEFS = np.array([-0.37708368261038905, -0.37030009974480316, -0.25261621789593225,
                             4.315048405024756e-12])
RADCLIQ_V1_INTERCEPT = 2.4665525613232559e-10

#: RaTEScore's score (0.5.0 and 0.6.0) for a pair where either report has no RaTE entity.
RATESCORE_NO_ENTITY = 0.5


# ----------------------------------------------------------------------------------------------------------- BLEU


def bleu_tokens(text: str) -> list[str]:
    """CXR-Report-Metric's ``prep_reports`` for one report."""
    return [tok for tok in str(text).lower().replace(".", " .").split(" ") if tok != ""]


def bleu2(hypothesis: str, references: str | Sequence[str]) -> float:
    """BLEU-2 (weights 1/2, 1/2; NLTK smoothing method1), as fast-bleu's default ``BLEU.get_score``."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    refs = [references] if isinstance(references, str) else list(references)
    hyp = bleu_tokens(hypothesis) if isinstance(hypothesis, str) else list(hypothesis)
    ref_tokens = [bleu_tokens(r) if isinstance(r, str) else list(r) for r in refs]
    if not hyp:
        return 0.0
    return float(sentence_bleu(ref_tokens, hyp, weights=(0.5, 0.5),
                               smoothing_function=SmoothingFunction().method1))


# ------------------------------------------------------------------------------------------------------- RadGraph


def entity_set(annotation: dict) -> set:
    """``{(tokens, label)}`` of a radgraph annotation (``{"entities": {id: {tokens, label, relations}}}``)."""
    return {(e["tokens"], e["label"]) for e in annotation["entities"].values()}


def relation_set(annotation: dict) -> set:
    """``{((tokens, label), (target tokens, target label), relation)}``."""
    ents = annotation["entities"]
    out = set()
    for e in ents.values():
        for rel_type, target in e["relations"]:
            t = ents[target]
            out.add(((e["tokens"], e["label"]), (t["tokens"], t["label"]), rel_type))
    return out


def set_f1(reference: set, hypothesis: set) -> float:
    """CXR-Report-Metric's ``compute_f1``: 0 when precision + recall is 0 (so also when either set is empty)."""
    tp = len(reference & hypothesis)
    precision = tp / len(hypothesis) if hypothesis else 0.0
    recall = tp / len(reference) if reference else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def radgraph_scores(hyp_annotation: dict, ref_annotation: dict) -> tuple[float, float, float]:
    """(entity F1, relation F1, their mean = the board's RadGraph)."""
    ent = set_f1(entity_set(ref_annotation), entity_set(hyp_annotation))
    rel = set_f1(relation_set(ref_annotation), relation_set(hyp_annotation))
    return ent, rel, (ent + rel) / 2


# ------------------------------------------------------------------------------------------------- SembScore, RadCliQ


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``(n, d)`` arrays (``add_semb_col``: ``a·b / (|a| |b|)``)."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def radcliq_v1(radgraph, bertscore, semb_score, bleu) -> np.ndarray:
    """RadCliQ-v1 per study (or of means): ``standardise([RadGraph, BertScore, SembScore, BLEU]) @ coefs + b``."""
    x = np.stack([np.asarray(v, dtype=np.float64) for v in (radgraph, bertscore, semb_score, bleu)], axis=-1)
    return ((x - RADCLIQ_V1_MEAN) / RADCLIQ_V1_SCALE) @ RADCLIQ_V1_COEFS + RADCLIQ_V1_INTERCEPT


def inverse(value: float) -> float:
    """The board's ``1/RadCliQ-v1`` of a mean RadCliQ-v1 (``nan`` for a mean of exactly 0)."""
    return 1.0 / value if value != 0 and not math.isnan(value) else float("nan")
