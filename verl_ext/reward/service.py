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
* ``ScorerActor``: the same service inside a Ray actor, one per node, named ``verl_ext_radiology_scorer_<node>``
  and created by whichever reward worker asks first (``get_if_exists``). All reward workers of the node send their
  requests there, so a step's requests from all workers are batched together, each model is loaded once per node
  (not once per reward worker), and the caches are shared.

Default (``service="auto"``): the actor when running inside a Ray worker (training), local otherwise (tests, CLI).

GPUs: reward-loop workers are CPU actors and verl's hybrid engine reserves every GPU of its resource pool for the
actor/rollout workers. The scorer actor therefore runs on CPU by default (``actor_num_gpus=0``). To use a GPU,
either reserve a fraction of one that the training pool leaves free (``actor_num_gpus=0.1`` with
``trainer.n_gpus_per_node`` below the node's GPU count), or share the training GPUs without a Ray reservation
(``actor_share_gpus=True``: Ray then does not hide the GPUs from the actor; the models need ~2 GB, so lower vLLM's
``gpu_memory_utilization`` accordingly). Either way set ``device=auto`` (or ``cuda``). Both GPU routes are untested
so far (no GPU machine was available when this was written); the CPU route is tested with a local Ray cluster.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, Callable, Optional, Sequence

from verl_ext.reward.config import RadiologyRewardConfig

logger = logging.getLogger(__name__)

ACTOR_NAME_PREFIX = "verl_ext_radiology_scorer_"


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
    """Models, caches and micro-batchers in this process (one scoring thread)."""

    def __init__(self, cfg: RadiologyRewardConfig):
        self.cfg = cfg
        self._scorer = None
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="radiology-scorer")
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

    def stats(self) -> dict:
        out = {"batch_sizes": [b for m in self._batchers.values() for b in m.batch_sizes]}
        if self._scorer is not None:
            out["scorer"] = dict(self._scorer.counters)
            out["models"] = self._scorer.clinical.stats()
        return out


class ScorerActor:
    """Ray actor body: a ``LocalScoringService`` shared by the reward workers of one node."""

    def __init__(self, cfg_dict: dict):
        self.service = LocalScoringService(RadiologyRewardConfig.from_any(cfg_dict))

    async def score(self, request: Any) -> dict:
        return await self.service.score(request)

    async def stats(self) -> dict:
        return self.service.stats()


class ActorScoringService:
    """Client side: forwards requests to this node's ``ScorerActor`` (created on first use)."""

    def __init__(self, cfg: RadiologyRewardConfig):
        self.cfg = cfg
        self._handle = None
        self._lock = threading.Lock()

    def handle(self):
        with self._lock:
            if self._handle is None:
                self._handle = get_or_create_scorer_actor(self.cfg)
            return self._handle

    async def score(self, request: Any) -> dict:
        return await self.handle().score.remote(request)


def get_or_create_scorer_actor(cfg: RadiologyRewardConfig):
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node_id = ray.get_runtime_context().get_node_id()
    options: dict[str, Any] = {
        "name": ACTOR_NAME_PREFIX + node_id[:16],
        "get_if_exists": True,
        "num_cpus": cfg.actor_num_cpus,
        "num_gpus": cfg.actor_num_gpus,
        "max_concurrency": 4096,
        "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
    }
    if cfg.actor_share_gpus and cfg.actor_num_gpus == 0:
        options["runtime_env"] = {"env_vars": {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"}}
    cfg_dict = cfg.to_dict()
    return ray.remote(ScorerActor).options(**options).remote(cfg_dict)


def in_ray_worker() -> bool:
    try:
        import ray

        return ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE
    except Exception:  # noqa: BLE001
        return False


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
