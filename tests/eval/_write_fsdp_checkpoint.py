"""Write real verl FSDP checkpoints of a model on CPU (gloo), as verl's FSDP engine does when it saves.

    RANK=r WORLD_SIZE=W MASTER_ADDR=.. MASTER_PORT=.. python _write_fsdp_checkpoint.py MODEL_DIR ROOT STEP

(or under torchrun). For each strategy of verl's FSDP engine it writes ``ROOT/<strategy>/global_step_STEP/actor/``
(the RL layout) with ``verl.utils.checkpoint.FSDPCheckpointManager.save_checkpoint``, plus the tracker file the
trainers write:

* ``fsdp2``: ``fully_shard`` per decoder layer / vision block, then the root, on a 1-D ``("fsdp",)`` CPU mesh;
* ``fsdp``  (FSDP1, the engine's default): ``FullyShardedDataParallel`` with the same wrap units and mesh (on CPU it
  needs ``device_id=cpu, sync_module_states=False``; the sharded state dict then holds DTensors, as on GPUs).

The weights are perturbed deterministically first (an export that silently fell back to the base weights would be
caught); rank 0 saves the full fp32 state dict to ``ROOT/reference_state.pt`` for the test to compare with.
"""
import copy
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy, fully_shard
from torch.distributed.fsdp.wrap import ModuleWrapPolicy


def _wrap_units(model):
    return list(model.model.language_model.layers) + list(model.model.visual.blocks)


def main(model_dir: str, root: str, step: int) -> None:
    dist.init_process_group(backend="gloo")
    rank = dist.get_rank()
    from transformers import AutoModelForImageTextToText
    from verl.utils import hf_processor
    from verl.utils.checkpoint.fsdp_checkpoint_manager import FSDPCheckpointManager

    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1234)
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    reference = {k: v.detach().clone() for k, v in model.state_dict().items()}
    mesh = init_device_mesh("cpu", (dist.get_world_size(),), mesh_dim_names=("fsdp",))
    processor = hf_processor(model_dir)

    fsdp2 = copy.deepcopy(model)
    for unit in _wrap_units(fsdp2):
        fully_shard(unit, mesh=mesh)
    fully_shard(fsdp2, mesh=mesh)
    fsdp1 = FullyShardedDataParallel(
        copy.deepcopy(model),
        auto_wrap_policy=ModuleWrapPolicy({type(u) for u in _wrap_units(model)}),
        device_mesh=mesh,
        sharding_strategy=ShardingStrategy.FULL_SHARD,
        use_orig_params=False,
        device_id=torch.device("cpu"),
        sync_module_states=False,
    )
    for strategy, wrapped in (("fsdp2", fsdp2), ("fsdp", fsdp1)):
        base = os.path.join(root, strategy)
        manager = FSDPCheckpointManager(model=wrapped, optimizer=None, lr_scheduler=None, processing_class=processor,
                                        checkpoint_config={"save_contents": ["model", "extra"],
                                                           "load_contents": ["model", "extra"]})
        manager.save_checkpoint(os.path.join(base, f"global_step_{step}", "actor"), global_step=step)
        if rank == 0:
            with open(os.path.join(base, "latest_checkpointed_iteration.txt"), "w") as fh:
                fh.write(str(step))
    if rank == 0:
        torch.save(reference, os.path.join(root, "reference_state.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
