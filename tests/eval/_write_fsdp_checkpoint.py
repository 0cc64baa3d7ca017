"""Write a real verl FSDP checkpoint of a model on CPU (torchrun, gloo), as verl's FSDP engine does when it saves.

    RANK=r WORLD_SIZE=W MASTER_ADDR=.. MASTER_PORT=.. python _write_fsdp_checkpoint.py MODEL_DIR ROOT STEP [--hf-model]

(or under torchrun).

The model is wrapped with FSDP2 (``fully_shard`` per decoder layer + root, on a 1-D ``("fsdp",)`` CPU mesh, as
``FSDPEngine`` does with strategy=fsdp2), its weights are perturbed deterministically (so an export that silently
fell back to the base weights would be caught), and ``verl.utils.checkpoint.FSDPCheckpointManager.save_checkpoint``
writes ``ROOT/global_step_STEP/actor/`` — the RL layout; the tracker file is written like verl's trainers do.
Rank 0 also saves the full (unsharded) state dict to ``ROOT/reference_state.pt`` for the test to compare with.
"""
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard


def main(model_dir: str, root: str, step: int, hf_model: bool) -> None:
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
    mesh = init_device_mesh("cpu", (dist.get_world_size(),), mesh_dim_names=("fsdp",))
    for layer in model.model.language_model.layers:
        fully_shard(layer, mesh=mesh)
    for block in model.model.visual.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)

    contents = ["model", "extra"] + (["hf_model"] if hf_model else [])
    manager = FSDPCheckpointManager(model=model, optimizer=None, lr_scheduler=None,
                                    processing_class=hf_processor(model_dir),
                                    checkpoint_config={"save_contents": contents, "load_contents": contents})
    manager.save_checkpoint(os.path.join(root, f"global_step_{step}", "actor"), global_step=step)
    full = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in model.state_dict().items()}
    if rank == 0:
        torch.save({k: v.detach().clone() for k, v in full.items()}, os.path.join(root, "reference_state.pt"))
        with open(os.path.join(root, "latest_checkpointed_iteration.txt"), "w") as fh:
            fh.write(str(step))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), "--hf-model" in sys.argv[4:])
