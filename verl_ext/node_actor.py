"""One Ray actor per node that hosts the clinical models for every worker of that node and runs their jobs.

verl 0.9.1 runs ``reward.num_workers`` (default 8) reward-loop workers and as many agent-loop workers per node, each a
CPU Ray actor. Loading the reward's models (RadGraph, CheXbert, RaTE-NER, BioLORD) and the edit step's analyzer in
each would hold a copy per worker and batch nothing across workers. Instead the first worker that asks creates the
node's actor (named ``verl_ext_node_actor_<node>``, ``get_if_exists``) and the others find it by name. It lives as
long as the worker that created it (a reward or agent-loop worker, alive for the whole run).

The actor knows nothing of what it hosts: it runs *jobs*. A job is a class named by its import path
(``"module:Class"``), built once per (job, config) in the actor process as ``Class(config, model_thread)`` from a
plain-dict config; its constructor stays cheap (models load on first use). ``RemoteJob`` calls a job's method by
name: a coroutine method runs on the actor's event loop (e.g. a micro-batcher that hands its batches to
``model_thread``), a plain method on ``model_thread``, the actor's single thread for model work, so two jobs never
run models at once. The jobs: ``verl_ext.reward.service.ScoringJob`` (the reward) and
``verl_ext.rollout.analysis.AnalyzerJob`` (the edit step's analyzer). A ``rate`` analyzer with the reward's
RaTE-NER/BioLORD paths uses the very models the reward loaded (``verl_ext.clinical.models`` caches them per process
and device).

Placement (``NodeActorConfig``, set as ``reward.reward_kwargs.actor_*``; documented on ``RadiologyRewardConfig``).
No model runs on a GPU that Ray did not assign to its process (``verl_ext.clinical.models.resolve_device``):

* ``pool`` (what ``auto`` picks when the trainer's colocated pool has a GPU bundle on this node): the actor goes into
  one of those placement-group bundles with ``actor_num_gpus`` (default 0.2) of its GPU. verl's worker groups take
  1/3 of each bundle (``max_colocate_count=3``; the vLLM servers reserve no Ray GPU, they run on their workers'
  devices), so Ray accounts for the share and narrows ``CUDA_VISIBLE_DEVICES`` to that bundle's GPU; the models run
  there next to the FSDP actor and vLLM.
* ``node``: outside any placement group, pinned to this node. ``actor_num_gpus=0`` (the default here) runs on CPU
  with ``actor_cpu_threads`` torch threads (Ray starts workers with ``OMP_NUM_THREADS=1``); ``actor_num_gpus>0``
  needs GPUs that the training pool leaves free (``trainer.n_gpus_per_node`` below the node's GPU count).

A request the node can never satisfy fails when the actor is created; an actor that Ray does not schedule within
``actor_start_timeout_s`` fails the run instead of pending forever; every call has ``actor_call_timeout_s``.

Memory budget per node (Qwen2.5-VL-3B, 3.75 B parameters, on the paper's 4 x 80 GB):

* each GPU, training: FSDP2 actor states at 16 B/param (fp32 weights, grads, two Adam moments) / 4 GPUs = 15 GB,
  plus activations (gradient checkpointing, micro-batch 2); the reference policy is offloaded to CPU;
* each GPU, rollout: vLLM's ``gpu_memory_utilization`` (0.6: 48 GB of 80) for weights and KV cache;
* the GPU hosting the node actor (``pool``): RaTE-NER (DeBERTa-v3-base, 0.74 GB fp32), BioLORD (MPNet-base,
  0.44 GB), CheXbert (BERT-base, 0.44 GB), RadGraph-XL (BERT-base + heads, ~0.5 GB), a CUDA context (~0.5 GB) and
  batch activations: about 3-4 GB. The edit analyzer adds nothing when it shares the RaTE models;
* host RAM: the node actor ~3 GB (models, medspacy, per-text caches); before this layout each of the 8 agent-loop
  workers also loaded its own RaTE-NER + BioLORD.

``python -m verl_ext.preflight`` prints this estimate for the composed config and the visible GPUs.

This module sits below ``verl_ext.reward`` and ``verl_ext.rollout`` (both import it; it imports neither:
``tests/test_node_actor.py``).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional

logger = logging.getLogger(__name__)

ACTOR_NAME_PREFIX = "verl_ext_node_actor_"
#: Where users set ``NodeActorConfig``'s fields (named in error messages): ``RadiologyRewardConfig.actor_*``.
SETTINGS = "reward.reward_kwargs.actor_"
PLACEMENTS = ("auto", "pool", "node")


@dataclass(frozen=True)
class NodeActorConfig:
    """Placement, resources and timeouts of the node's actor (the meaning and defaults of each field are those of
    ``RadiologyRewardConfig.actor_<field>``, which builds this with ``node_actor()``)."""

    placement: str
    num_gpus: Optional[float]
    num_cpus: float
    cpu_threads: Optional[int]
    pool_name: str
    start_timeout_s: float
    call_timeout_s: float

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ValueError(f"actor_placement={self.placement!r}: expected 'auto', 'pool' or 'node'")
        if self.num_gpus is not None and not 0 <= float(self.num_gpus):
            raise ValueError(f"actor_num_gpus={self.num_gpus!r} must be >= 0")
        if self.placement == "pool" and self.num_gpus is not None and not 0 < self.num_gpus < 1:
            raise ValueError(f"actor_num_gpus={self.num_gpus} with actor_placement=pool: a fraction in (0, 1) of "
                             "one pool bundle's GPU")

    @property
    def torch_threads(self) -> int:
        return int(self.cpu_threads or max(1, int(self.num_cpus)))


class NodeActor:
    """Ray actor body: the node's jobs (see the module docstring) and the one thread their model work runs on."""

    def __init__(self, torch_threads: int):
        import torch

        torch.set_num_threads(torch_threads)
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="node-models")
        self._jobs: dict[tuple[str, str], Any] = {}

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
            "device": str(resolve_device("auto")),
            "torch_threads": torch.get_num_threads(),
        }

    def _job(self, job: str, config: dict) -> Any:
        key = (job, json.dumps(config, sort_keys=True, default=repr))
        obj = self._jobs.get(key)
        if obj is None:
            module, _, name = job.partition(":")
            logger.info("node actor: starting job %s", job)
            obj = self._jobs[key] = getattr(importlib.import_module(module), name)(config, self._model_thread)
        return obj

    async def run(self, job: str, config: dict, method: str, *args: Any) -> Any:
        """``method(*args)`` of the ``job`` built from ``config`` (built on first use)."""
        fn = getattr(self._job(job, config), method)
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, fn, *args)

    def stats(self) -> dict:
        """The jobs started and how often each model family was loaded in this process."""
        from verl_ext.clinical.models import LOAD_COUNTS

        return {"jobs": sorted(job for job, _ in self._jobs), "model_loads": dict(LOAD_COUNTS)}


class RemoteJob:
    """A job on this node's actor as a worker sees it: the actor is found or created (and placed) at the first call,
    and every call fails after ``actor.call_timeout_s`` with an error saying what it was waiting for."""

    def __init__(self, job: str, config: dict, actor: NodeActorConfig):
        self.job = job
        self.config = config
        self.actor = actor
        self._handle = None
        self._lock = threading.Lock()

    def handle(self):
        with self._lock:
            if self._handle is None:
                self._handle = get_or_create(self.actor)
            return self._handle

    def call(self, method: str, *args: Any, what: str) -> Any:
        """Blocking call (from a worker thread, never from an event loop)."""
        ref = self.handle().run.remote(self.job, self.config, method, *args)
        return call_actor(ref, self.actor.call_timeout_s, what)

    async def acall(self, method: str, *args: Any, what: str) -> Any:
        ref = self.handle().run.remote(self.job, self.config, method, *args)
        return await async_call_actor(ref, self.actor.call_timeout_s, what)


def _timeout_message(what: str, timeout_s: float) -> str:
    return (
        f"node actor (reward scorer, edit analyzer): {what} took longer than {timeout_s:.0f} s "
        f"({SETTINGS}call_timeout_s). The actor is alive but busy or stuck: see its log (`ray logs`, the Ray "
        "dashboard) and the device it runs on (CPU scoring is slow, see actor_placement), or raise the timeout"
    )


def call_actor(ref, timeout_s: float, what: str) -> Any:
    """``ray.get(ref)`` with a timeout and an error that says what was being waited for."""
    import ray

    try:
        return ray.get(ref, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError as exc:
        raise TimeoutError(_timeout_message(what, timeout_s)) from exc
    except ray.exceptions.RayActorError as exc:
        raise RuntimeError(f"node actor died while {what}: {exc}") from exc


async def async_call_actor(ref, timeout_s: float, what: str) -> Any:
    """``await ref`` with a timeout and an error that says what was being waited for."""
    import ray

    try:
        return await asyncio.wait_for(ref, timeout=timeout_s)
    except asyncio.TimeoutError as exc:
        raise TimeoutError(_timeout_message(what, timeout_s)) from exc
    except ray.exceptions.RayActorError as exc:
        raise RuntimeError(f"node actor died while {what}: {exc}") from exc


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


def actor_options(cfg: NodeActorConfig, node_id: str) -> tuple[dict, str]:
    """Ray options of the node's actor under ``cfg.placement`` and a description of the placement.
    Raises when the request can never be satisfied on this node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

    placement = cfg.placement
    bundles = pool_bundles(node_id, cfg.pool_name) if placement in ("auto", "pool") else []
    if placement == "auto":
        placement = "pool" if bundles else "node"
    options: dict[str, Any] = {"name": ACTOR_NAME_PREFIX + node_id[:16], "get_if_exists": True, "max_concurrency": 4096}
    if placement == "pool":
        if not bundles:
            raise RuntimeError(
                f"{SETTINGS}placement=pool: verl's resource pool '{cfg.pool_name}' has no GPU bundle on this node "
                f"({node_id[:16]}); use actor_placement=node (CPU, or GPUs outside the training pool) or set "
                "actor_pool_name"
            )
        gpus = 0.2 if cfg.num_gpus is None else float(cfg.num_gpus)
        pg, index = bundles[0]
        strategy = PlacementGroupSchedulingStrategy(
            placement_group=pg, placement_group_bundle_index=index, placement_group_capture_child_tasks=False
        )
        options.update(num_cpus=0, num_gpus=gpus, scheduling_strategy=strategy)
        return options, f"bundle {index} of verl's pool placement group {pg.id.hex()[:8]}, {gpus:g} GPU"
    gpus = 0.0 if cfg.num_gpus is None else float(cfg.num_gpus)
    total, available = _node_resources(node_id)
    for resource, want in (("GPU", gpus), ("CPU", float(cfg.num_cpus))):
        if want > 0 and available.get(resource, 0.0) + 1e-9 < want:
            if resource == "GPU":
                hint = ("verl's resource pool holds trainer.n_gpus_per_node GPUs of every node for the whole run: use "
                        "actor_placement=pool (a Ray-accounted share of a training GPU), lower "
                        "trainer.n_gpus_per_node, or actor_num_gpus=0 (CPU)")
            else:
                hint = f"lower {SETTINGS}num_cpus"
            raise RuntimeError(
                f"the node actor asks for {resource}={want:g} on node {node_id[:16]}, which has "
                f"{total.get(resource, 0.0):g} in total and {available.get(resource, 0.0):g} unreserved: it could "
                f"never be scheduled ({hint})"
            )
    options.update(num_cpus=float(cfg.num_cpus), num_gpus=gpus,
                   scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False))
    if gpus == 0:
        # Belt and braces: with no GPU the models cannot even see one (Ray leaves CUDA_VISIBLE_DEVICES as is).
        options["runtime_env"] = {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}
    return options, f"node {node_id[:16]}, {gpus:g} GPU, {cfg.num_cpus:g} CPU"


def get_or_create(cfg: NodeActorConfig):
    """This node's actor: found by name, or created under ``cfg``'s placement; then waited for (at most
    ``cfg.start_timeout_s``: a pending actor is killed and the run fails, naming what it asked for)."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    try:
        handle, where = ray.get_actor(ACTOR_NAME_PREFIX + node_id[:16]), "the existing actor"
    except ValueError:
        options, where = actor_options(cfg, node_id)
        handle = ray.remote(NodeActor).options(**options).remote(cfg.torch_threads)
    try:
        info = ray.get(handle.ready.remote(), timeout=cfg.start_timeout_s)
    except ray.exceptions.GetTimeoutError:
        ray.kill(handle)
        total, available = _node_resources(node_id)
        raise RuntimeError(
            f"the node actor ({where}) was not scheduled within {cfg.start_timeout_s:g} s "
            f"({SETTINGS}start_timeout_s). Node {node_id[:16]}: GPU {total.get('GPU', 0):g} / CPU "
            f"{total.get('CPU', 0):g} in total, {available.get('GPU', 0):g} / {available.get('CPU', 0):g} unreserved. "
            "With actor_placement=pool the GPU share verl's workers leave in the bundle must cover actor_num_gpus; "
            "otherwise lower actor_num_gpus / actor_num_cpus, or use actor_placement=node."
        ) from None
    logger.info("node actor: %s: %s", where, info)
    return handle


def in_ray_worker() -> bool:
    """Whether this process is a Ray worker (where ``service=auto`` means the node actor)."""
    try:
        import ray

        return ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE
    except Exception:  # noqa: BLE001
        return False
