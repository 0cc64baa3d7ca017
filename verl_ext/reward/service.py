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

The scorer actor is also the node's host for the edit step's analyzer (``verl_ext.rollout.analysis``): agent-loop
workers send their analysis batches to it, so the analyzer is loaded once per node, and a RaTE analyzer with the
reward's RaTE-NER/BioLORD paths shares the very models the reward loaded (``verl_ext.clinical.models`` caches them
per process and device).

Placement (``actor_placement``). No model runs on a GPU that Ray did not assign to its process
(``verl_ext.clinical.models.resolve_device``):

* ``pool`` (what ``auto`` picks when the trainer's colocated pool has a GPU bundle on this node): the actor goes into
  one of those placement-group bundles with ``actor_num_gpus`` (default 0.2) of its GPU. verl's worker groups take
  1/3 of each bundle (``max_colocate_count=3``; the vLLM servers reserve no Ray GPU, they run on their workers'
  devices), so Ray accounts for the share and narrows ``CUDA_VISIBLE_DEVICES`` to that bundle's GPU; the models run
  there next to the FSDP actor and vLLM.
* ``node``: outside any placement group, pinned to this node. ``actor_num_gpus=0`` (the default here) runs on CPU
  with ``actor_cpu_threads`` torch threads (Ray starts workers with ``OMP_NUM_THREADS=1``); ``actor_num_gpus>0``
  needs GPUs that the training pool leaves free (``trainer.n_gpus_per_node`` below the node's GPU count).

The actor lives as long as the worker that created it (a reward or agent-loop worker, alive for the whole run).
A request the node can never satisfy fails when the actor is created; an actor that Ray does not schedule within
``actor_start_timeout_s`` fails the run instead of pending forever; every call has ``actor_call_timeout_s``.

Memory budget per node (Qwen2.5-VL-3B, 3.75 B parameters, on the paper's 4 x 80 GB):

* each GPU, training: FSDP2 actor states at 16 B/param (fp32 weights, grads, two Adam moments) / 4 GPUs = 15 GB,
  plus activations (gradient checkpointing, micro-batch 2); the reference policy is offloaded to CPU;
* each GPU, rollout: vLLM's ``gpu_memory_utilization`` (0.6: 48 GB of 80) for weights and KV cache;
* the GPU hosting the scorer actor (``pool``): RaTE-NER (DeBERTa-v3-base, 0.74 GB fp32), BioLORD (MPNet-base,
  0.44 GB), CheXbert (BERT-base, 0.44 GB), RadGraph-XL (BERT-base + heads, ~0.5 GB), a CUDA context (~0.5 GB) and
  batch activations: about 3-4 GB. The edit analyzer adds nothing when it shares the RaTE models;
* host RAM: the scorer actor ~3 GB (models, medspacy, per-text caches); before this layout each of the 8 agent-loop
  workers also loaded its own RaTE-NER + BioLORD.

``python -m verl_ext.preflight`` prints this estimate for the composed config and the visible GPUs.
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


class ScorerActor:
    """Ray actor body: a ``LocalScoringService`` shared by the reward workers of one node, and the node's host of the
    edit step's analyzer (all model work runs on the service's one scoring thread)."""

    def __init__(self, cfg_dict: dict):
        import torch

        cfg = RadiologyRewardConfig.from_any(cfg_dict)
        torch.set_num_threads(int(cfg.actor_cpu_threads or max(1, int(cfg.actor_num_cpus))))
        self.service = LocalScoringService(cfg)

    def ready(self) -> dict:
        """Where Ray placed this actor (answers as soon as it is scheduled; loads nothing)."""
        import ray
        import torch

        from verl_ext.clinical.models import resolve_device

        ctx = ray.get_runtime_context()
        return {
            "node_id": ctx.get_node_id(),
            "gpu_ids": [str(i) for i in ctx.get_accelerator_ids().get("GPU", [])],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "device": str(resolve_device(self.service.cfg.device)),
            "torch_threads": torch.get_num_threads(),
        }

    async def warmup(self) -> dict:
        """Load every model the reward's components need now (a bad path fails here, naming its config key)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.service._executor, self.service.warmup)

    async def score(self, request: Any) -> dict:
        return await self.service.score(request)

    async def analyze(self, edit_cfg: dict, texts: list) -> list:
        """The edit step's analysis of ``texts`` (``verl_ext.rollout.analysis.analyze_locally``), on the scoring
        thread, so analysis and scoring never run two models at once."""
        from verl_ext.rollout.analysis import analyze_locally

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.service._executor, analyze_locally, edit_cfg, list(texts))

    async def stats(self) -> dict:
        from verl_ext.clinical.models import LOAD_COUNTS

        return dict(self.service.stats(), model_loads=dict(LOAD_COUNTS))


class ActorScoringService:
    """Client side: forwards requests to this node's ``ScorerActor`` (created, placed and checked on first use)."""

    def __init__(self, cfg: RadiologyRewardConfig):
        self.cfg = cfg
        self._handle = None
        self._lock = threading.Lock()

    def handle(self):
        with self._lock:
            if self._handle is None:
                self._handle = get_or_create_scorer_actor(self.cfg)
            return self._handle

    def start(self) -> dict:
        """Create (or find) the node's actor and load the reward's models now, so that a placement or path problem
        fails the run at start-up rather than at the first step."""
        return call_actor(self.handle().warmup.remote(), self.cfg.actor_call_timeout_s, "loading the scorer models")

    async def score(self, request: Any) -> dict:
        ref = self.handle().score.remote(request)
        return await async_call_actor(ref, self.cfg.actor_call_timeout_s, "scoring a response")


def _timeout_message(what: str, timeout_s: float) -> str:
    return (
        f"radiology scorer actor: {what} took longer than {timeout_s:.0f} s "
        "(reward.reward_kwargs.actor_call_timeout_s). The actor is alive but busy or stuck: see its log (`ray logs`, "
        "the Ray dashboard) and the device it runs on (CPU scoring is slow, see actor_placement), or raise the timeout"
    )


def call_actor(ref, timeout_s: float, what: str):
    """``ray.get(ref)`` with a timeout and an error that says what was being waited for."""
    import ray

    try:
        return ray.get(ref, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError as exc:
        raise TimeoutError(_timeout_message(what, timeout_s)) from exc
    except ray.exceptions.RayActorError as exc:
        raise RuntimeError(f"radiology scorer actor died while {what}: {exc}") from exc


async def async_call_actor(ref, timeout_s: float, what: str):
    """``await ref`` with a timeout and an error that says what was being waited for."""
    import ray

    try:
        return await asyncio.wait_for(ref, timeout=timeout_s)
    except asyncio.TimeoutError as exc:
        raise TimeoutError(_timeout_message(what, timeout_s)) from exc
    except ray.exceptions.RayActorError as exc:
        raise RuntimeError(f"radiology scorer actor died while {what}: {exc}") from exc


def pool_bundles(node_id: str, pool_name: str = "global_pool") -> list[tuple[Any, int]]:
    """(placement group, bundle index) of every GPU bundle of verl's colocated pool ``pool_name`` on ``node_id``
    (verl names them ``<pool>verl_group_<counts>:<i>``, ``verl.single_controller.ray.base.RayResourcePool``)."""
    from ray.util import get_placement_group, placement_group_table

    out = []
    for info in placement_group_table().values():
        name = info.get("name") or ""
        if not name.startswith(pool_name) or info.get("state") != "CREATED":
            continue
        nodes = info.get("bundles_to_node_id", {})
        for index, resources in sorted(info.get("bundles", {}).items()):
            if resources.get("GPU", 0) > 0 and nodes.get(index) == node_id:
                try:
                    pg = get_placement_group(name)
                except ValueError:  # a group of another Ray namespace
                    continue
                out.append((pg, int(index)))
    return out


def _node_resources(node_id: str) -> tuple[dict, dict]:
    """(total, unreserved) resources of one node."""
    import ray
    from ray._private.state import available_resources_per_node

    total = next((n.get("Resources", {}) for n in ray.nodes() if n.get("NodeID") == node_id), {})
    return total, available_resources_per_node().get(node_id, {})


def scorer_actor_options(cfg: RadiologyRewardConfig, node_id: str) -> tuple[dict, str]:
    """Ray options of the node's scorer actor under ``cfg.actor_placement`` and a description of the placement.
    Raises when the request can never be satisfied on this node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

    placement = cfg.actor_placement
    bundles = pool_bundles(node_id, cfg.actor_pool_name) if placement in ("auto", "pool") else []
    if placement == "auto":
        placement = "pool" if bundles else "node"
    options: dict[str, Any] = {"name": ACTOR_NAME_PREFIX + node_id[:16], "get_if_exists": True, "max_concurrency": 4096}
    if placement == "pool":
        if not bundles:
            raise RuntimeError(
                f"reward.reward_kwargs.actor_placement=pool: verl's resource pool '{cfg.actor_pool_name}' has no GPU "
                f"bundle on this node ({node_id[:16]}); use actor_placement=node (CPU, or GPUs outside the training "
                "pool) or set actor_pool_name"
            )
        gpus = 0.2 if cfg.actor_num_gpus is None else float(cfg.actor_num_gpus)
        pg, index = bundles[0]
        strategy = PlacementGroupSchedulingStrategy(
            placement_group=pg, placement_group_bundle_index=index, placement_group_capture_child_tasks=False
        )
        options.update(num_cpus=0, num_gpus=gpus, scheduling_strategy=strategy)
        return options, f"bundle {index} of verl's pool placement group {pg.id.hex()[:8]}, {gpus:g} GPU"
    gpus = 0.0 if cfg.actor_num_gpus is None else float(cfg.actor_num_gpus)
    total, available = _node_resources(node_id)
    for resource, want in (("GPU", gpus), ("CPU", float(cfg.actor_num_cpus))):
        if want > 0 and available.get(resource, 0.0) + 1e-9 < want:
            if resource == "GPU":
                hint = ("verl's resource pool holds trainer.n_gpus_per_node GPUs of every node for the whole run: use "
                        "actor_placement=pool (a Ray-accounted share of a training GPU), lower "
                        "trainer.n_gpus_per_node, or actor_num_gpus=0 (CPU)")
            else:
                hint = "lower reward.reward_kwargs.actor_num_cpus"
            raise RuntimeError(
                f"the radiology scorer actor asks for {resource}={want:g} on node {node_id[:16]}, which has "
                f"{total.get(resource, 0.0):g} in total and {available.get(resource, 0.0):g} unreserved: it could "
                f"never be scheduled ({hint})"
            )
    options.update(num_cpus=float(cfg.actor_num_cpus), num_gpus=gpus,
                   scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False))
    if gpus == 0:
        # Belt and braces: with no GPU the models cannot even see one (Ray leaves CUDA_VISIBLE_DEVICES as is).
        options["runtime_env"] = {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}
    return options, f"node {node_id[:16]}, {gpus:g} GPU, {cfg.actor_num_cpus:g} CPU"


def get_or_create_scorer_actor(cfg: RadiologyRewardConfig):
    """This node's scorer actor: found by name, or created under ``cfg``'s placement; then waited for (at most
    ``actor_start_timeout_s``: a pending actor is killed and the run fails, naming what it asked for)."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    try:
        handle, where = ray.get_actor(ACTOR_NAME_PREFIX + node_id[:16]), "the existing actor"
    except ValueError:
        options, where = scorer_actor_options(cfg, node_id)
        handle = ray.remote(ScorerActor).options(**options).remote(cfg.to_dict())
    try:
        info = ray.get(handle.ready.remote(), timeout=cfg.actor_start_timeout_s)
    except ray.exceptions.GetTimeoutError:
        ray.kill(handle)
        total, available = _node_resources(node_id)
        raise RuntimeError(
            f"the radiology scorer actor ({where}) was not scheduled within {cfg.actor_start_timeout_s:g} s "
            f"(reward.reward_kwargs.actor_start_timeout_s). Node {node_id[:16]}: GPU {total.get('GPU', 0):g} / CPU "
            f"{total.get('CPU', 0):g} in total, {available.get('GPU', 0):g} / {available.get('CPU', 0):g} unreserved. "
            "With actor_placement=pool the GPU share verl's workers leave in the bundle must cover actor_num_gpus; "
            "otherwise lower actor_num_gpus / actor_num_cpus, or use actor_placement=node."
        ) from None
    logger.info("radiology scorer actor: %s: %s", where, info)
    return handle


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
