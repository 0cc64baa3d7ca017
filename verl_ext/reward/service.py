"""Where the scorer models live, and how concurrent per-response requests become batches.

verl 0.9.1 scores each trajectory separately: the agent loop (or ``RewardLoopManager``) calls
``RewardLoopWorker.compute_score`` once per response, concurrently, on ``reward.num_workers`` (default 8) CPU Ray
actors chosen at random; each call ends in our manager's ``async run_single``. Scoring one pair at a time through
the models (as the authors' Flask server did) wastes almost all of the work: a step of B prompts x G responses
repeats each reference G times, and the models are far faster per item in batches.

* ``MicroBatcher``: an asyncio queue. The first request starts a short window (``max_wait_ms``); every request that
  arrives in the window or while a batch is running joins the next batch (up to ``max_batch``). The batch runs in
  one worker thread (``RewardScorer.score_batch``), so the event loop keeps accepting requests meanwhile.
* ``LocalScoringService``: models + caches in this process, fed by a ``MicroBatcher`` per event loop.
* ``ScoringJob``: the same service as a job of the node's actor (``verl_ext.node_actor``), one per reward config on
  the node; ``ActorScoringService`` sends it the requests of every reward worker of the node, so a step's requests
  from all workers are batched together, each model is loaded once per node (not once per reward worker), and the
  caches are shared. Placement, timeouts and the memory budget: ``verl_ext.node_actor``.

Default (``service="auto"``): the actor when running inside a Ray worker (training), local otherwise (tests, CLI).
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, Callable, Optional, Sequence

from verl_ext.node_actor import RemoteJob, in_ray_worker
from verl_ext.reward.config import RadiologyRewardConfig


class MicroBatcher:
    """Coalesce concurrent ``submit`` calls into batches for ``process_batch`` (run in ``executor``)."""

    def __init__(
        self,
        process_batch: Callable[[list], list],
        max_batch: int = 512,
        max_wait_s: float = 0.02,
        executor: Optional[ThreadPoolExecutor] = None,
    ):
        self.process_batch = process_batch
        self.max_batch = max(1, int(max_batch))
        self.max_wait_s = max(0.0, float(max_wait_s))
        self.executor = executor
        self._pending: list[tuple[Any, asyncio.Future]] = []
        self._runner: Optional[asyncio.Task] = None
        self._wake: Optional[asyncio.Event] = None
        self.batch_sizes: list[int] = []

    async def submit(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        if self._wake is None:
            self._wake = asyncio.Event()
        fut = loop.create_future()
        self._pending.append((item, fut))
        if len(self._pending) >= self.max_batch:
            self._wake.set()
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run())
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        while self._pending:
            if len(self._pending) < self.max_batch and self.max_wait_s > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.max_wait_s)
                except asyncio.TimeoutError:
                    pass
            self._wake.clear()
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            items = [item for item, _ in batch]
            self.batch_sizes.append(len(items))
            try:
                results = await loop.run_in_executor(self.executor, self.process_batch, items)
                if len(results) != len(items):
                    raise RuntimeError(f"process_batch returned {len(results)} results for {len(items)} items")
            except BaseException as exc:  # noqa: BLE001 - delivered to every waiter of the batch
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                continue
            for (_, fut), res in zip(batch, results):
                if not fut.done():
                    fut.set_result(res)


class LocalScoringService:
    """Models, caches and micro-batchers in this process, scored on one thread: ``executor`` when given (the node
    actor's model thread, shared with the edit analyzer), else a thread of its own."""

    def __init__(self, cfg: RadiologyRewardConfig, executor: Optional[ThreadPoolExecutor] = None):
        self.cfg = cfg
        self._scorer = None
        self._lock = threading.Lock()
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="radiology-scorer")
        self._batchers: dict[int, MicroBatcher] = {}

    @property
    def scorer(self):
        with self._lock:
            if self._scorer is None:
                from verl_ext.reward.scoring import RewardScorer

                self._scorer = RewardScorer(self.cfg)
            return self._scorer

    def score_many(self, requests: Sequence[Any]) -> list[dict]:
        """Score a list of ``ScoreRequest`` synchronously, in one batch."""
        return self.scorer.score_batch(list(requests))

    async def score(self, request: Any) -> dict:
        loop = asyncio.get_running_loop()
        key = id(loop)
        batcher = self._batchers.get(key)
        if batcher is None:
            batcher = self._batchers[key] = MicroBatcher(
                self.score_many, self.cfg.max_batch, self.cfg.max_wait_ms / 1000.0, self._executor
            )
        return await batcher.submit(request)

    def start(self) -> dict:
        """Nothing to do in-process: models load at the first batch (``warmup`` loads them on demand)."""
        return {}

    def warmup(self) -> dict:
        """Check the configured model paths and load every model the reward's components need."""
        check_model_paths(self.cfg)
        scorer = self.scorer
        for need in sorted(scorer.needs):
            getattr(scorer.clinical, need)  # ClinicalScorer builds (and thereby loads) each model family once
        from verl_ext.clinical.models import resolve_device

        return {"loaded": sorted(scorer.needs), "device": str(resolve_device(self.cfg.device))}

    def stats(self) -> dict:
        out = {"batch_sizes": [b for m in self._batchers.values() for b in m.batch_sizes]}
        if self._scorer is not None:
            out["scorer"] = dict(self._scorer.counters)
            out["models"] = self._scorer.clinical.stats()
        return out


def check_model_paths(cfg: RadiologyRewardConfig, prefix: str = "reward.reward_kwargs.models") -> None:
    """Raise (naming each setting and path) unless every model the components need is where its loader looks
    (``verl_ext.clinical.models.check_model_paths``: the loaders' own rules, RadGraph's model-type folder included)."""
    from verl_ext.clinical.models import check_model_paths as check
    from verl_ext.reward.components import get_component

    check(cfg.models, set().union(*(get_component(name).needs for name in cfg.components)), prefix)


class ScoringJob:
    """The reward's scoring service as a job of the node's actor (``verl_ext.node_actor``): requests of all reward
    workers of the node are micro-batched together and scored on the actor's model thread."""

    def __init__(self, config: dict, model_thread: ThreadPoolExecutor):
        self.service = LocalScoringService(RadiologyRewardConfig.from_any(config), model_thread)

    async def score(self, request: Any) -> dict:
        return await self.service.score(request)

    def warmup(self) -> dict:
        return self.service.warmup()

    def stats(self) -> dict:
        return self.service.stats()


SCORING_JOB = f"{__name__}:{ScoringJob.__name__}"


class ActorScoringService:
    """Client side: forwards requests to the ``ScoringJob`` of this node's actor (created, placed and checked on
    first use)."""

    def __init__(self, cfg: RadiologyRewardConfig):
        self.cfg = cfg
        self.job = RemoteJob(SCORING_JOB, cfg.to_dict(), cfg.node_actor())

    def start(self) -> dict:
        """Create (or find) the node's actor and load the reward's models now, so that a placement or path problem
        fails the run at start-up rather than at the first step."""
        return self.job.call("warmup", what="loading the scorer models")

    async def score(self, request: Any) -> dict:
        return await self.job.acall("score", request, what="scoring a response")


_SERVICES: dict[tuple, Any] = {}
_SERVICES_LOCK = threading.Lock()


def get_service(cfg: RadiologyRewardConfig):
    """The process-wide service for ``cfg`` (one per distinct configuration)."""
    mode = cfg.service
    if mode == "auto":
        mode = "actor" if in_ray_worker() else "local"
    key = (mode, repr(sorted(asdict(cfg).items(), key=lambda kv: kv[0])), os.getpid())
    with _SERVICES_LOCK:
        svc = _SERVICES.get(key)
        if svc is None:
            svc = _SERVICES[key] = LocalScoringService(cfg) if mode == "local" else ActorScoringService(cfg)
        return svc


def reset_services() -> None:
    with _SERVICES_LOCK:
        _SERVICES.clear()
