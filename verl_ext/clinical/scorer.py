"""``ClinicalScorer``: one object holding the analyzers/labelers a process needs, built lazily from ``ModelPaths``.

It is what the reward service and the evaluation runner use: each accessor builds its model family on first use
(through ``verl_ext.clinical.models``, so a model is loaded once per process), and each batch method deduplicates
texts and hits the per-text caches of the underlying analyzer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Sequence

import numpy as np

from verl_ext.clinical.models import ModelPaths


@dataclass
class ClinicalScorerConfig:
    models: ModelPaths = field(default_factory=ModelPaths)
    device: str = "auto"
    """"auto" (cuda if available), "cpu", "cuda", "cuda:1"."""
    ner_batch_size: int = 32
    """RaTE-NER sentences per forward pass."""
    embed_batch_size: int = 256
    """BioLORD entity strings per forward pass."""
    chexbert_batch_size: int = 64
    """CheXbert reports per forward pass."""
    radgraph_batch_size: int = 16
    """RadGraph reports packed per forward pass."""
    cache_mb: float = 256.0
    """Byte budget (MiB) of each model's per-text cache: RaTE analyses, RadGraph annotations; the CheXbert labels and
    the RaTE per-sentence NER results get a quarter. References repeat G times per step and every epoch."""
    embedding_cache_mb: float = 128.0
    """Byte budget (MiB) of the entity-string -> BioLORD vector cache (3 KiB per string)."""
    rate_affinity: str = "long"
    """RaTEScore weight set (``verl_ext.clinical.rate.WEIGHT_SETS``): "long" (RaTEScore 0.6.0's default), "short",
    "0.5.0" (RaTEScore 0.5.0's negation weight 0.3612), or a JSON path."""

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "ClinicalScorerConfig":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"ClinicalScorerConfig: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        if "models" in d and not isinstance(d["models"], ModelPaths):
            d["models"] = ModelPaths.from_dict(d["models"])
        return cls(**d)


class ClinicalScorer:
    def __init__(self, config: ClinicalScorerConfig):
        self.config = config
        self._lock = threading.RLock()
        self._rate = None
        self._radgraph = None
        self._chexbert = None

    @property
    def rate(self):
        with self._lock:
            if self._rate is None:
                from verl_ext.clinical.rate import RateAnalyzer

                c = self.config
                self._rate = RateAnalyzer(
                    c.models.rate_ner,
                    c.models.biolord,
                    device=c.device,
                    ner_batch_size=c.ner_batch_size,
                    embed_batch_size=c.embed_batch_size,
                    analysis_cache_mb=c.cache_mb,
                    ner_cache_mb=c.cache_mb / 4,
                    embedding_cache_mb=c.embedding_cache_mb,
                    affinity=c.rate_affinity,
                )
            return self._rate

    @property
    def radgraph(self):
        with self._lock:
            if self._radgraph is None:
                from verl_ext.clinical.radgraph import RadGraphAnnotator

                c = self.config
                self._radgraph = RadGraphAnnotator(
                    c.models.radgraph_cache,
                    c.models.radgraph_model_type,
                    device=c.device,
                    batch_size=c.radgraph_batch_size,
                    cache_mb=c.cache_mb,
                )
            return self._radgraph

    @property
    def chexbert(self):
        with self._lock:
            if self._chexbert is None:
                from verl_ext.clinical.chexbert import CheXbertLabeler

                c = self.config
                self._chexbert = CheXbertLabeler(
                    c.models.chexbert_checkpoint,
                    c.models.chexbert_bert,
                    device=c.device,
                    batch_size=c.chexbert_batch_size,
                    cache_mb=c.cache_mb / 4,
                )
            return self._chexbert

    def rate_analyses(
        self, texts: Sequence[str], precomputed: Optional[Sequence[Any]] = None
    ) -> tuple[list, list[bool]]:
        """RaTE analyses of ``texts``; a compatible ``precomputed[i]`` (e.g. the edit step's analysis) is adopted
        into the cache instead of recomputed. Returns (analyses, reused flags)."""
        rate = self.rate
        reused = [False] * len(texts)
        if precomputed is not None:
            for i, (t, a) in enumerate(zip(texts, precomputed)):
                if a is not None and t not in rate.analyses and rate.is_compatible(a, t):
                    rate.adopt(a)
                    reused[i] = True
        return rate.analyze(list(texts)), reused

    def radgraph_annotations(self, texts: Sequence[str]) -> list[dict]:
        return self.radgraph.annotate(list(texts))

    def chexbert_classes(self, texts: Sequence[str]) -> np.ndarray:
        return self.chexbert.classes(list(texts))

    def overlong(
        self, text: str, needs: Sequence[str], rate_analysis: Any = None, radgraph_annotation: Optional[dict] = None
    ) -> list[str]:
        """The scorers (of ``needs``) that read ``text`` only up to their model's input limit: RaTE-NER 512 tokens
        per sentence, RadGraph one 512-wordpiece BERT window, CheXbert 512 positions."""
        out = []
        if "rate" in needs and rate_analysis is not None and self.rate.overlong(rate_analysis):
            out.append("rate")
        if "radgraph" in needs and radgraph_annotation is not None and radgraph_annotation.get("input_capped"):
            out.append("radgraph")
        if "chexbert" in needs and self.chexbert.overlong(text):
            out.append("chexbert")
        return out

    def stats(self) -> dict:
        out: dict = {}
        if self._rate is not None:
            out["rate"] = dict(
                self._rate.counters, cache_hits=self._rate.analyses.hits, cache_misses=self._rate.analyses.misses
            )
        if self._radgraph is not None:
            out["radgraph"] = dict(self._radgraph.counters, cache_hits=self._radgraph.cache.hits)
        if self._chexbert is not None:
            out["chexbert"] = dict(self._chexbert.counters, cache_hits=self._chexbert.cache.hits)
        return out
