"""Analyzers for the edit step: built by name, once per process, and fed in batches across concurrent prompts.

``build_analyzer(cfg)`` constructs the configured ``verl_ext.editing.ReportAnalyzer`` (``rate`` | ``radgraph`` |
``lexicon``) from local model paths; the result is cached per process, so every agent-loop worker thread shares one
analyzer (and ``verl_ext.clinical.models`` shares the underlying models).

``AnalysisBatcher`` collects the texts that concurrent ``_run_prompt`` coroutines of one agent-loop worker ask for
within a few milliseconds and runs them as one ``analyze`` call on a dedicated thread, so the event loop never
blocks on model inference and the NER/embedding models see batches instead of one report at a time (the authors'
extractor analysed one report per HTTP request, editgrpo_reference.md §8.12). A batched call that fails is retried
text by text, so one bad text fails only the requests that asked for it.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Sequence
from typing import Any, Callable, Optional

from verl_ext.rollout.config import EditRolloutConfig

logger = logging.getLogger(__name__)

__all__ = ["AnalysisBatcher", "build_analyzer", "get_analyzer"]

_ANALYZERS: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def build_analyzer(cfg: EditRolloutConfig):
    """Construct the analyzer named by ``cfg.analyzer`` (no caching; see ``get_analyzer``)."""
    from verl_ext.clinical.models import ModelPaths, require

    paths = ModelPaths.from_dict(cfg.models)
    opts = dict(cfg.analyzer_options)
    if cfg.analyzer == "rate":
        from verl_ext.clinical.rate import RateAnalyzer

        return RateAnalyzer(
            ner_path=require(paths.rate_ner, "editgrpo.models.rate_ner", "RaTE-NER model directory"),
            embedder_path=require(paths.biolord, "editgrpo.models.biolord", "BioLORD model directory"),
            device=cfg.device,
            **opts,
        )
    if cfg.analyzer == "radgraph":
        from verl_ext.clinical.radgraph import RadGraphAnalyzer

        return RadGraphAnalyzer.from_paths(
            require(paths.radgraph_cache, "editgrpo.models.radgraph_cache", "radgraph model cache directory"),
            paths.radgraph_model_type,
            cfg.device,
            **opts,
        )
    if cfg.analyzer == "lexicon":
        from verl_ext.clinical.lexicon import LexiconAnalyzer, LexiconAnalyzerConfig

        opts.setdefault("device", cfg.device)
        return LexiconAnalyzer(LexiconAnalyzerConfig(**opts))
    # A custom ReportAnalyzer: "<module file or pkg://module>:<ClassName>".
    from verl.utils.import_utils import load_extern_object

    module_path, _, name = cfg.analyzer.rpartition(":")
    if not module_path or not name:
        raise ValueError(f"editgrpo.analyzer={cfg.analyzer!r} is not one of rate | radgraph | lexicon | <path>:<Class>")
    return load_extern_object(module_path, name)(**opts)


def _key(cfg: EditRolloutConfig) -> tuple:
    def freeze(d: dict) -> tuple:
        return tuple(sorted((k, repr(v)) for k, v in d.items()))

    return (cfg.analyzer, freeze(cfg.models), freeze(cfg.analyzer_options), cfg.device)


def get_analyzer(cfg: EditRolloutConfig):
    """The process-wide analyzer for ``cfg`` (built on first use)."""
    key = _key(cfg)
    with _LOCK:
        analyzer = _ANALYZERS.get(key)
        if analyzer is None:
            logger.info("edit step: building the %r analyzer", cfg.analyzer)
            analyzer = _ANALYZERS[key] = build_analyzer(cfg)
        return analyzer


class AnalysisBatcher:
    """Micro-batches ``analyze`` requests from concurrent coroutines (see the module docstring).

    Args:
        analyzer_factory: returns the analyzer; called once, on the worker thread, at the first batch.
        max_batch: most texts per ``analyze`` call (a full queue is flushed at once).
        wait_s: how long the first queued request waits for company.
    """

    def __init__(self, analyzer_factory: Callable[[], Any], max_batch: int = 256, wait_s: float = 0.005):
        self._factory = analyzer_factory
        self._analyzer = None
        self.max_batch = max(1, int(max_batch))
        self.wait_s = max(0.0, float(wait_s))
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="edit-analyzer")
        self._queue: list[tuple[list[str], asyncio.Future]] = []
        self._timer: Optional[asyncio.TimerHandle] = None
        self.calls = 0
        self.texts = 0

    def _analyze_sync(self, texts: list[str]) -> list:
        if self._analyzer is None:
            self._analyzer = self._factory()
        out = self._analyzer.analyze(texts)
        if len(out) != len(texts):
            raise RuntimeError(f"analyzer returned {len(out)} analyses for {len(texts)} texts")
        return list(out)

    def _analyze_isolated(self, texts: list[str]) -> list:
        """``_analyze_sync``; if the batched call fails, each text alone, so one bad text (or a model error it
        triggers) fails only itself: the result holds the exception in that text's place. A failure to build the
        analyzer fails every text (retrying alone cannot help)."""
        if self._analyzer is None:
            self._analyzer = self._factory()
        try:
            return self._analyze_sync(texts)
        except Exception as exc:  # noqa: BLE001 - narrowed down to the texts that fail on their own
            if len(texts) == 1:
                return [exc]
            logger.warning("edit step: batched analysis of %d texts failed (%s); retrying one by one", len(texts), exc)
        out: list = []
        for text in texts:
            try:
                out.extend(self._analyze_sync([text]))
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
        return out

    async def analyze(self, texts: Sequence[str], return_exceptions: bool = False) -> list:
        """Analyses of ``texts`` in order. A text whose analysis failed raises its exception, or, with
        ``return_exceptions``, has the exception in its place."""
        texts = [str(t) for t in texts]
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._queue.append((texts, fut))
        if sum(len(t) for t, _ in self._queue) >= self.max_batch:
            self._flush(loop)
        elif self._timer is None:
            self._timer = loop.call_later(self.wait_s, self._flush, loop)
        results = await fut
        if not return_exceptions:
            for r in results:
                if isinstance(r, BaseException):
                    raise r
        return results

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        queue, self._queue = self._queue, []
        if not queue:
            return
        # Split into chunks of at most max_batch texts (a single request may exceed it).
        unique = list(dict.fromkeys(t for texts, _ in queue for t in texts))
        chunks = [unique[i : i + self.max_batch] for i in range(0, len(unique), self.max_batch)]
        loop.create_task(self._run(queue, chunks))

    async def _run(self, queue, chunks) -> None:
        loop = asyncio.get_running_loop()
        try:
            results: dict[str, Any] = {}
            for chunk in chunks:
                self.calls += 1
                self.texts += len(chunk)
                analyses = await loop.run_in_executor(self._executor, self._analyze_isolated, chunk)
                results.update(zip(chunk, analyses))
            for texts, fut in queue:
                if not fut.done():
                    fut.set_result([results[t] for t in texts])
        except BaseException as exc:  # noqa: BLE001 - every waiter must learn about the failure
            for _, fut in queue:
                if not fut.done():
                    fut.set_exception(exc)
