"""RaTE analyzer (RaTE-NER + BioLORD) and RaTEScore computed from its analyses.

``RateAnalyzer.analyze(texts)`` implements the edit engine's ``ReportAnalyzer`` protocol. For each report it returns
the project's sentences (``verl_ext.editing.sentences.split_sentences``: exact char spans) with their RaTE entities
(text, type) and BioLORD embeddings. To make the edit step and the RaTEScore reward see *the same* entities, the
analyzer reuses RaTEScore 0.6.0's own pipeline piece by piece:

* NER runs on RaTEScore's own sentence units (``RaTEScore.utils.sentence_split``'s medspacy/PyRuSH splitter, with its
  "no word / shorter than 3 characters" filter), tokenised like ``RaTEScore.score.run_ner`` (max_length 512);
* entities are decoded by ``RaTEScore.utils.post_process`` itself (token indices are recovered through a tokenizer
  proxy, so each entity also gets its character span and lands in the project sentence that contains it);
* embeddings are the first-token (CLS) vector of BioLORD's last hidden state at max_length 30, like
  ``RaTEScore.score.process_embedding`` (raw, not normalised);
* ``ratescore(candidate, reference)`` feeds those entity lists to ``RaTEScore.utils.compute`` with the package's
  affinity matrix and takes the harmonic mean, exactly as ``RaTEScore.compute_score``.

Concatenating a report's entities over its sentences therefore gives RaTEScore's entity list for that report, and
``ratescore`` equals ``RaTEScore(...).compute_score([cand], [ref])`` up to float rounding from batching (tested),
and up to tie-breaks: when two candidate entities tie for the top-1 match (typically one entity string tagged with
two types, hence two equal vectors with different type weights), the package breaks the tie by ~1e-6 float noise in
its per-report embeddings and we break it by position, which changes that pair's score (by up to 8e-3 in the audit
of issue 12). ``bench/bench_reward.py`` counts and reports such pairs (none on its 8 x 10 workload when last run).

What differs from the package, on purpose: everything is batched across all texts of a call (NER over sentences
sorted by length, embeddings over unique entity strings), analyses are cached per text, NER results per NER unit
(so an edited report made of sentences already seen costs no NER) and embeddings per entity string (LRU), and the
package's two pairing hazards are not reproduced: it drops a report with no kept sentence and
shifts every later pair (so callers must guard), and it returns 0.5 when a side has no entity. ``ratescore`` returns
``None`` for those cases and the caller decides (the reward scores an empty response 0 and an entity-free one
``ratescore_no_entity``, the package's 0.5 by default). The weight set (``affinity``) is selectable: RaTEScore
0.5.0's negation weight differs from 0.6.0's (`WEIGHT_SETS`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from verl_ext.clinical.cache import MiB, LRUCache
from verl_ext.editing.sentences import split_sentences
from verl_ext.editing.types import ENTITY_TYPES, Entity, ReportAnalysis, Sentence

logger = logging.getLogger(__name__)


def _rate_modules():
    """Import RaTEScore lazily (it builds two medspacy pipelines at import, ~3 s) without its side effects."""
    from verl_ext.clinical import compat

    with compat.quiet_imports():
        import RaTEScore.scorer as scorer
        import RaTEScore.utils as utils
    return scorer, utils


#: RaTEScore 0.5.0's negation weight, a constant in its ``utils.compute`` (``neg_weight = 0.3612``), applied with its
#: only matrix, whose type weights are 0.6.0's "long" ones (both read from the PyPI sdists).
RATESCORE_050_NEG_WEIGHT = 0.3612

#: Weight sets ``affinity_matrix`` knows by name: "0.5.0" (RaTEScore 0.5.0: the long type weights, negation weight
#: 0.3612; the release the EditGRPO paper names and ReXrank's RaTEScore column was computed with) and RaTEScore
#: 0.6.0's "long" (negation weight 0.8717) and "short" (0.3612, other type weights). Anything else is a JSON path.
WEIGHT_SETS = ("0.5.0", "long", "short")


def affinity_matrix(name: str = "long") -> dict:
    """RaTEScore's type-affinity matrix as ``{(TYPE_A, TYPE_B): w, ("NEG", "WEIGHT"): neg}`` (a name of
    `WEIGHT_SETS` or a JSON path), built the way ``RaTEScore.__init__`` builds it."""
    import json

    scorer, _ = _rate_modules()
    if name == "0.5.0":
        matrix = affinity_matrix("long")
        matrix[("NEG", "WEIGHT")] = RATESCORE_050_NEG_WEIGHT
        return matrix
    if name.lower() == "long":
        raw = scorer.DEFAULT_MATRIX_LONG
    elif name.lower() == "short":
        raw = scorer.DEFAULT_MATRIX_SHORT
    else:
        with open(name) as f:
            raw = json.load(f)
    return {(k.split("_")[0].upper(), k.split("_")[1].upper()): v for k, v in raw.items()}


def rate_units(text: str) -> list[tuple[int, int]]:
    """RaTEScore's NER units for one report, as exact char spans: medspacy sentences, stripped, without the ones
    that have no word or fewer than 3 characters (``RaTEScore.utils.sentence_split``)."""
    _, utils = _rate_modules()
    if not text:
        return []
    doc = utils.nlp(text)
    units = []
    for sent in doc.sents:
        raw = str(sent)
        stripped = raw.strip()
        if len(stripped.split()) == 0 or len(stripped) < 3:
            continue
        a = sent.start_char + (len(raw) - len(raw.lstrip()))
        units.append((a, a + len(stripped)))
    return units


class _Tok(str):
    """A token string that remembers its index (see ``_decode``)."""

    i: int


class _SpanRecorder:
    """Tokenizer stand-in for ``post_process``: records which token slice became each entity."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.spans: list[Optional[tuple[int, int]]] = []

    def convert_tokens_to_string(self, piece):
        self.spans.append((piece[0].i, piece[-1].i) if piece else None)
        return self.tokenizer.convert_tokens_to_string([str(p) for p in piece])


def _decode(
    tokens: list[str], labels: list[str], tokenizer, post_process
) -> list[tuple[str, str, Optional[tuple[int, int]]]]:
    """``RaTEScore.utils.post_process`` plus the token span of every entity."""
    toks = []
    for i, t in enumerate(tokens):
        s = _Tok(t)
        s.i = i
        toks.append(s)
    rec = _SpanRecorder(tokenizer)
    pairs = post_process(toks, labels, rec)
    return [(str(text), typ, span) for (text, typ), span in zip(pairs, rec.spans)]


@dataclass
class _Unit:
    report: int
    start: int  # char offset of the unit in the report
    text: str


class RateAnalyzer:
    """Batched, cached RaTE analyses (see the module docstring). Implements ``ReportAnalyzer``."""

    def __init__(
        self,
        ner_path: str,
        embedder_path: str,
        device: str = "auto",
        ner_batch_size: int = 32,
        embed_batch_size: int = 256,
        analysis_cache_mb: float = 256.0,
        ner_cache_mb: float = 64.0,
        embedding_cache_mb: float = 128.0,
        affinity: str = "long",
    ):
        """Caches are bounded by bytes (``verl_ext.clinical.cache``): analyses per report text (each with its entity
        vectors and the edit engine's derived matrices), NER results per NER unit, BioLORD vectors per entity
        string. 0 disables a cache. ``affinity``: the RaTEScore weight set (`WEIGHT_SETS` or a JSON path)."""
        from verl_ext.clinical import models

        self.ner = models.load_rate_ner(ner_path, device)
        self.embedder = models.load_biolord(embedder_path, device)
        self.ner_batch_size = int(ner_batch_size)
        self.embed_batch_size = int(embed_batch_size)
        self.matrix = affinity_matrix(affinity)
        self._init_state(analysis_cache_mb, ner_cache_mb, embedding_cache_mb)

    def _init_state(self, analysis_cache_mb: float, ner_cache_mb: float, embedding_cache_mb: float) -> None:
        self.analyses = LRUCache(int(analysis_cache_mb * MiB))
        self.units = LRUCache(int(ner_cache_mb * MiB))  # NER unit text -> (token offsets, entities)
        self.embeddings = LRUCache(int(embedding_cache_mb * MiB))
        self._lock = threading.RLock()
        self.counters = {"texts": 0, "ner_sentences": 0, "ner_batches": 0, "embedded_entities": 0}
        _, utils = _rate_modules()
        self._post_process = utils.post_process
        self._compute = utils.compute

    # ------------------------------------------------------------------------------------------------------------
    # analysis
    # ------------------------------------------------------------------------------------------------------------

    def analyze(self, texts: Sequence[str]) -> list[ReportAnalysis]:
        """One ``ReportAnalysis`` per text, in order (cached per text)."""
        texts = [str(t) for t in texts]
        with self._lock:
            self.counters["texts"] += len(texts)
            return self.analyses.get_many(texts, self._analyze_uncached)

    def _analyze_uncached(self, texts: list[str]) -> list[ReportAnalysis]:
        units = [_Unit(r, a, text[a:b]) for r, text in enumerate(texts) for a, b in rate_units(text)]
        per_unit = self._run_ner([u.text for u in units])
        # entities per report, with absolute char starts, in RaTEScore's order
        found: list[list[tuple[str, str, int]]] = [[] for _ in texts]
        capped = [False] * len(texts)
        for unit, (offsets, ents) in zip(units, per_unit):
            if _unit_capped(offsets, unit.text):
                capped[unit.report] = True
            for ent_text, ent_type, span in ents:
                if ent_type not in ENTITY_TYPES:
                    logger.warning("RaTE-NER produced entity %r of unknown type %r; skipped", ent_text, ent_type)
                    continue
                rel = 0 if span is None else offsets[span[0]][0]
                while rel < len(unit.text) and unit.text[rel].isspace():
                    rel += 1
                found[unit.report].append((ent_text, ent_type, unit.start + rel))
        vectors = self.embed(sorted({e[0] for ents in found for e in ents}))
        analyses = []
        for text, ents in zip(texts, found):
            spans = split_sentences(text)
            buckets: list[list[Entity]] = [[] for _ in spans]
            for ent_text, ent_type, pos in ents:
                k = _sentence_of(spans, pos)
                buckets[k].append(Entity(ent_text, ent_type, vectors[ent_text]))
            sentences = tuple(Sentence(text[a:b], a, b, tuple(b_)) for (a, b), b_ in zip(spans, buckets))
            analysis = ReportAnalysis(text=text, sentences=sentences)
            analysis.__dict__["_input_capped"] = capped[len(analyses)]
            analyses.append(analysis)
        return analyses

    def _run_ner(self, sentences: list[str]) -> list[tuple[list, list]]:
        """For each sentence (NER unit): (token char offsets, [(entity text, type, token span)]), cached per unit
        text: NER of a unit depends on its text only, so an edited report made of sentences already seen (its
        source response's and the reference's) costs no new NER pass."""
        out: list = [self.units.get(t) for t in sentences]
        todo = list(dict.fromkeys(t for t, o in zip(sentences, out) if o is None))
        if todo:
            fresh = dict(zip(todo, self._run_ner_uncached(todo)))
            for t, r in fresh.items():
                self.units.put(t, r)
            out = [o if o is not None else fresh[t] for t, o in zip(sentences, out)]
        return out

    def _run_ner_uncached(self, sentences: list[str]) -> list[tuple[list, list]]:
        import torch

        if not sentences:
            return []
        tok = self.ner.tokenizer
        enc = tok(sentences, truncation=True, max_length=512, return_offsets_mapping=True)
        ids = enc["input_ids"]
        order = sorted(range(len(sentences)), key=lambda i: len(ids[i]))
        labels: list[Optional[list[int]]] = [None] * len(sentences)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        with torch.inference_mode():
            for s in range(0, len(order), self.ner_batch_size):
                idx = order[s : s + self.ner_batch_size]
                width = max(len(ids[i]) for i in idx)
                input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
                attn = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                    attn[row, : len(ids[i])] = 1
                batch = {"input_ids": input_ids.to(self.ner.device), "attention_mask": attn.to(self.ner.device)}
                if "token_type_ids" in enc:
                    batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
                pred = self.ner.model(**batch).logits.argmax(dim=2).cpu().tolist()
                for row, i in enumerate(idx):
                    labels[i] = pred[row][: len(ids[i])]
                self.counters["ner_batches"] += 1
        self.counters["ner_sentences"] += len(sentences)
        out = []
        id2label = self.ner.id2label
        for i in range(len(sentences)):
            tokens = tok.convert_ids_to_tokens(ids[i])
            names = [id2label[l] for l in labels[i]]
            out.append((enc["offset_mapping"][i], _decode(tokens, names, tok, self._post_process)))
        return out

    def overlong(self, analysis: ReportAnalysis) -> bool:
        """Whether a RaTE NER unit (a medspacy sentence) of the analysed report exceeded RaTE-NER's 512 positions:
        it was read up to there, as ``RaTEScore.score.run_ner`` does (entity strings are embedded up to 30 tokens,
        as ``process_embedding`` does).

        This analyzer's own analyses carry the answer; an analysis adopted from elsewhere (the edit step's, which
        travels as ``to_dict()`` and, for an edited copy, is composed from other texts' sentences) does not, so its
        text is tokenised here as NER would tokenise it (no model call) and the answer kept on the analysis."""
        capped = analysis.__dict__.get("_input_capped")
        if capped is None:
            with self._lock:  # medspacy and the fast tokenizer are shared with analyze(); not used concurrently
                units = [analysis.text[a:b] for a, b in rate_units(analysis.text)]
                enc = self.ner.tokenizer(units, truncation=True, max_length=512, return_offsets_mapping=True)
            capped = any(_unit_capped(o, u) for o, u in zip(enc["offset_mapping"], units)) if units else False
            analysis.__dict__["_input_capped"] = capped
        return bool(capped)

    def embed(self, entity_texts: Iterable[str]) -> dict[str, np.ndarray]:
        """BioLORD [CLS] vectors (float32, raw) for entity strings, cached per string."""
        entity_texts = list(dict.fromkeys(entity_texts))
        out: dict[str, np.ndarray] = {}
        missing = []
        for t in entity_texts:
            v = self.embeddings.get(t)
            if v is None:
                missing.append(t)
            else:
                out[t] = v
        if missing:
            for t, v in zip(missing, self._embed_uncached(missing)):
                v = np.ascontiguousarray(v, dtype=np.float32)
                v.setflags(write=False)
                self.embeddings.put(t, v)
                out[t] = v
            self.counters["embedded_entities"] += len(missing)
        return out

    def _embed_uncached(self, entity_texts: list[str]) -> list[np.ndarray]:
        import torch

        tok, model, dev = self.embedder.tokenizer, self.embedder.model, self.embedder.device
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for s in range(0, len(entity_texts), self.embed_batch_size):
                chunk = entity_texts[s : s + self.embed_batch_size]
                enc = tok(chunk, truncation=True, padding=True, return_tensors="pt", max_length=30).to(dev)
                out.extend(model(**enc).last_hidden_state[:, 0, :].float().cpu().numpy())
        return out

    # ------------------------------------------------------------------------------------------------------------
    # RaTEScore
    # ------------------------------------------------------------------------------------------------------------

    def is_compatible(self, analysis: Any, text: str) -> bool:
        """Whether a precomputed analysis (e.g. the edit step's) can stand for this analyzer's analysis of ``text``:
        same text, the project's sentence spans, no RaTE NER unit across two sentences, every entity of a RaTE type
        with an embedding of our dimension. (Models and settings are not checked: the edit step must use the same
        RaTE-NER/BioLORD paths as the reward.)"""
        if isinstance(analysis, dict):
            try:
                analysis = ReportAnalysis.from_dict(analysis)
            except Exception:  # noqa: BLE001 - any malformed dict is simply not reusable
                return False
        if not isinstance(analysis, ReportAnalysis) or analysis.text != text:
            return False
        spans = [(s.start, s.end) for s in analysis.sentences]
        if spans != split_sentences(text):
            return False
        # A precomputed analysis may be composed (an edited copy carries its source sentences' entities). That equals
        # a fresh analysis when no RaTE NER unit crosses a sentence boundary of this text; otherwise recompute (with
        # the per-unit NER cache, that is cheap for sentences seen before).
        for a, b in rate_units(text):
            k = _sentence_of(spans, a)
            if not (spans[k][0] <= a and b <= spans[k][1]):
                return False
        dim = self.embedder.model.config.hidden_size
        return all(
            e.type in ENTITY_TYPES and e.embedding is not None and e.embedding.shape == (dim,)
            for e in analysis.entities
        )

    def adopt(self, analysis: Any) -> ReportAnalysis:
        """Put a compatible precomputed analysis into the cache (so the reward reuses the edit step's work)."""
        if isinstance(analysis, dict):
            analysis = ReportAnalysis.from_dict(analysis)
        self.analyses.put(analysis.text, analysis)
        return analysis

    def ratescore(self, candidate: ReportAnalysis, reference: ReportAnalysis) -> Optional[float]:
        """RaTEScore of a pair from analyses; ``None`` when either side has no entity (where the package says 0.5)."""
        import torch

        cand, ref = candidate.entities, reference.entities
        if not cand or not ref:
            return None
        c_emb = torch.from_numpy(np.stack([e.embedding for e in cand]))
        r_emb = torch.from_numpy(np.stack([e.embedding for e in ref]))
        c_types = [e.type for e in cand]
        r_types = [e.type for e in ref]
        precision = self._compute(r_emb, c_emb, r_types, c_types, self.matrix)
        recall = self._compute(c_emb, r_emb, c_types, r_types, self.matrix)
        if precision + recall == 0:
            return 0.0
        return float(2 * precision * recall / (precision + recall))


def _unit_capped(offsets: Sequence[tuple[int, int]], unit_text: str) -> bool:
    """Whether NER read a unit only in part: its 512 positions are full and text is left after the last token."""
    return len(offsets) >= 512 and max(end for _, end in offsets) < len(unit_text.rstrip())


def _sentence_of(spans: list[tuple[int, int]], pos: int) -> int:
    """Index of the sentence span containing char ``pos`` (else the last one starting before it, else 0)."""
    best = 0
    for k, (a, b) in enumerate(spans):
        if a <= pos < b:
            return k
        if a <= pos:
            best = k
    return best
