"""Analyzers for the edit step: built by name, once per process, and fed in batches across concurrent prompts.

``build_analyzer(cfg)`` constructs the configured ``verl_ext.editing.ReportAnalyzer`` (``rate`` | ``radgraph`` |
``lexicon``) from local model paths; ``get_analyzer`` caches it per process (and ``verl_ext.clinical.models`` shares
the underlying models with anything else in that process).

``prepare_analyzer(cfg, trainer_config)`` is what an agent-loop worker calls at start-up: it checks the model paths
(an error names the config key and the path) and loads the analyzer before the first step. Inside Ray
(``editgrpo.service=auto``) the analyzer is an ``AnalyzerJob`` of the node's actor (``verl_ext.node_actor``, the
reward's scorer runs there too), so the 8 agent-loop workers of a node share one copy, a ``rate`` analyzer shares the
reward's RaTE-NER/BioLORD models, and the models sit where that actor was placed (a Ray-reserved GPU share or CPU);
the worker gets a ``RemoteAnalyzer`` whose calls have the actor's call timeout.

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
from dataclasses import asdict
from typing import Any, Callable, Optional

from verl_ext.node_actor import NodeActorConfig, RemoteJob, in_ray_worker
from verl_ext.rollout.config import EditRolloutConfig

logger = logging.getLogger(__name__)

__all__ = ["AnalysisBatcher", "AnalyzerJob", "RemoteAnalyzer", "build_analyzer", "check_analyzer_paths",
           "get_analyzer", "prepare_analyzer"]

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


def check_analyzer_paths(cfg: EditRolloutConfig) -> None:
    """Raise (naming ``editgrpo.models.<key>`` and the path) unless the analyzer's local models are where its loader
    looks (``verl_ext.clinical.models.check_model_paths``)."""
    from verl_ext.clinical.models import ModelPaths, check_model_paths

    if cfg.needs_analyzer:
        check_model_paths(ModelPaths.from_dict(cfg.models), {cfg.analyzer}, "editgrpo.models")


class AnalyzerJob:
    """The edit step's analyzer as a job of the node's actor (``verl_ext.node_actor``): built once per node and
    config, and run on the actor's model thread, so analysis and the reward's scoring never run two models at once."""

    def __init__(self, config: dict, model_thread: concurrent.futures.Executor):
        self.cfg = EditRolloutConfig.from_mapping(config)

    def analyze(self, texts: list[str]) -> list:
        """Analyses of ``texts`` (``[]`` only builds the analyzer)."""
        analyzer = get_analyzer(self.cfg)
        if not texts:
            return []
        out = analyzer.analyze(list(texts))
        if len(out) != len(texts):
            raise RuntimeError(f"analyzer returned {len(out)} analyses for {len(texts)} texts")
        return list(out)


ANALYZER_JOB = f"{__name__}:{AnalyzerJob.__name__}"


class RemoteAnalyzer:
    """A ``ReportAnalyzer`` that forwards ``analyze`` to the ``AnalyzerJob`` of the node's actor (blocking, with the
    actor's call timeout; called from ``AnalysisBatcher``'s worker thread, never from the event loop)."""

    def __init__(self, cfg: EditRolloutConfig, actor: NodeActorConfig):
        self.name = cfg.analyzer
        self.job = RemoteJob(ANALYZER_JOB, asdict(cfg), actor)

    def warmup(self) -> None:
        self.job.call("analyze", [], what=f"loading the edit step's {self.name!r} analyzer")

    def analyze(self, texts: Sequence[str]) -> list:
        return self.job.call("analyze", list(texts), what=f"analysing {len(texts)} texts for the edit step")


def _node_actor_config(trainer_config) -> NodeActorConfig:
    """The node actor's settings: the radiology reward's ``reward.reward_kwargs.actor_*`` (the reward and the
    analyzer share the actor, whichever creates it), or their defaults when the run uses another reward manager."""
    from verl_ext.reward.config import RadiologyRewardConfig

    reward = trainer_config.get("reward", None) if trainer_config is not None else None
    manager = (reward or {}).get("reward_manager", None) or {}
    if manager.get("name", None) == "radiology":
        return RadiologyRewardConfig.from_trainer_config(trainer_config).node_actor()
    return RadiologyRewardConfig().node_actor()


def prepare_analyzer(cfg: EditRolloutConfig, trainer_config=None):
    """Check the analyzer's model paths and load it now (agent-loop worker start-up, before the first step).

    Returns the analyzer the worker should call: a ``RemoteAnalyzer`` on the node's actor
    (``cfg.service`` ``actor``, or ``auto`` inside Ray) or this process's own analyzer (``local``); None when the
    edit step needs no analyzer.
    """
    if not cfg.needs_analyzer:
        return None
    check_analyzer_paths(cfg)
    mode = cfg.service if cfg.service != "auto" else ("actor" if in_ray_worker() else "local")
    if mode == "local":
        return get_analyzer(cfg)
    remote = RemoteAnalyzer(cfg, _node_actor_config(trainer_config))
    remote.warmup()
    return remote


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
