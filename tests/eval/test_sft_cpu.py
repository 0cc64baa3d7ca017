"""verl's own SFT trainer (``python -m verl.trainer.sft_trainer``) on CPU in the CPU debug profile (``verl_ext.cpu``:
``VERL_PLATFORM=cpu``, gloo, the FSDP engine registered for device cpu) on a data-prep parquet, then the checkpoint it
writes through export and generation: the whole SFT -> evaluation path."""
import json

import pytest

from verl_ext.eval.export import export_checkpoint
from verl_ext.eval.generate import GenerateConfig, run



@pytest.mark.slow
def test_sft_steps_then_export_and_generate(tiny_model, test_parquet, tmp_path, distributed_runner):
    ckpt = tmp_path / "sft"
    overrides = [
        f"data.train_files={test_parquet}", "data.val_files=null", "data.messages_key=messages",
        "+data.image_key=images", "data.train_batch_size=2", "data.micro_batch_size_per_gpu=1",
        "data.max_length=256", "data.num_workers=0", f"model.path={tiny_model}",
        "+model.override_config.attn_implementation=sdpa", "model.use_remove_padding=False",
        "engine=fsdp", "engine.strategy=fsdp2", "trainer.device=cpu", "trainer.logger=[console]",
        "trainer.total_training_steps=2", "trainer.save_freq=2", f"trainer.default_local_dir={ckpt}",
        "optim.lr=1e-3",
    ]
    proc = distributed_runner("verl.trainer.sft_trainer", *overrides, world_size=1, cwd=tmp_path,
                              env={"VERL_PLATFORM": "cpu"})
    losses = [float(line.split("train/loss:")[1].split()[0]) for line in proc.stdout.splitlines()
              if "train/loss:" in line]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    assert (ckpt / "global_step_2" / "model_world_size_1_rank_0.pt").is_file()  # SFT layout: no actor/

    hf = tmp_path / "hf"
    summary = export_checkpoint(ckpt, hf, base_model=tiny_model)
    assert summary["global_step"] == 2 and summary["processor"] == "Qwen2_5_VLProcessor"
    out = tmp_path / "rows.jsonl"
    counts = run(GenerateConfig(model=str(hf), data=[str(test_parquet)], out=str(out), backend="hf",
                                max_new_tokens=4, limit=2))
    assert counts["generated"] == 2
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["S0000", "S0001"]
