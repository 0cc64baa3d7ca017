"""The ``hf`` rollout backend: verl's rollout replica + in-worker adapter pair, serving `HFGenerationServer`.

verl's trainer builds rollout servers from two registries, keyed by ``actor_rollout_ref.rollout.name``:

* ``RolloutReplicaRegistry`` (``verl/workers/rollout/replica.py:318``): ``LLMServerManager`` creates one replica per
  ``rollout_world_size`` training processes and calls ``init_hybrid(worker_group)`` (``llm_server.py:473``), which
  calls ``launch_servers``. `HFReplica.launch_servers` starts one `HFGenerationServer` Ray actor per replica on the
  node of its training workers, as ``vLLMReplica`` starts its ``vLLMHttpServer``;
* ``_ROLLOUT_REGISTRY`` (``verl/workers/rollout/base.py:89``): every hybrid training worker builds its
  ``rollout_cls`` (``engine_workers.py:667``). `HFServerAdapter` is that object: after each step verl's naive
  checkpoint engine calls ``update_weights`` with the FSDP engine's full parameters (``engine_workers.py:728-800``),
  and the replica's first rank forwards them to its server.

The server's weights live in the server's process, so ``resume``/``release`` (device memory juggling for vLLM) do
nothing here.
"""
from __future__ import annotations

import os
from typing import Any, Generator, Optional

import ray
import torch
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica

from verl_ext.cpu.hf_server import HFGenerationServer

__all__ = ["HFReplica", "HFServerAdapter", "server_name"]


def server_name(replica_rank: int) -> str:
    """The Ray actor name of a replica's server (looked up by the adapters of that replica's training workers)."""
    return f"verl_ext_hf_server_{replica_rank}"


def _rollout_world_size(config) -> int:
    return config.tensor_model_parallel_size * config.data_parallel_size * config.pipeline_model_parallel_size


class HFReplica(RolloutReplica):
    """One `HFGenerationServer` per replica (``rollout.name=hf``)."""

    async def launch_servers(self) -> None:
        from verl.utils.fs import copy_to_local

        if self.nnodes != 1:
            raise ValueError(f"rollout.name=hf serves a replica from one process; got {self.nnodes} nodes per replica")
        if self.is_reward_model or self.is_teacher_model:
            raise ValueError("rollout.name=hf serves the policy only (no reward or teacher models)")
        node_id = await self.workers[0].__ray_call__.remote(lambda _: ray.get_runtime_context().get_node_id())
        name = server_name(self.replica_rank)
        model_path = copy_to_local(self.model_config.path)
        threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or None
        server = (
            ray.remote(HFGenerationServer)
            .options(
                name=name,
                num_cpus=1,
                max_concurrency=self.max_concurrency,
                scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                    node_id=node_id, soft=False
                ),
            )
            .remote(
                model_path,
                response_length=self.config.response_length,
                prompt_length=self.config.prompt_length,
                seed=int(self.config.seed) + self.replica_rank,
                num_threads=threads,
            )
        )
        await server.stats.remote()  # surface construction errors here
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"ray://{name}"


class HFServerAdapter(BaseRollout):
    """The training worker's side of an ``hf`` replica: forwards the synced weights to the replica's server."""

    def __init__(self, config, model_config, device_mesh, *args, **kwargs):
        super().__init__(config, model_config, device_mesh, *args, **kwargs)
        world = _rollout_world_size(self.config)
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self.replica_rank = rank // world
        self.is_sender = rank % world == 0
        self._server = None

    def _get_server(self):
        if self._server is None:
            self._server = ray.get_actor(server_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]) -> None:
        """Weights and cache live in the server's own process: nothing to resume."""

    async def release(self) -> None:
        """Weights and cache live in the server's own process: nothing to release."""

    async def update_weights(
        self,
        weights: Generator[tuple[str, torch.Tensor], None, None],
        wire_format: str = "named_tensors",
        peft_config: Optional[dict] = None,
        global_steps: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        if wire_format != "named_tensors":
            raise NotImplementedError(f"rollout.name=hf: weight wire format {wire_format!r} is not supported")
        if peft_config is not None:
            raise NotImplementedError("rollout.name=hf: LoRA adapters are not supported; set model.lora.merge=True")
        # Every rank walks the generator: FSDP gathers each full tensor collectively.
        state = {name: tensor.detach().to("cpu", copy=True) for name, tensor in weights}
        if self.is_sender:
            await self._get_server().set_weights.remote(state, global_steps)
