"""Export: verl FSDP checkpoint layouts -> a Hugging Face directory that loads and generates."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from verl_ext.eval.export import ExportError, export_checkpoint, main, resolve_checkpoint


def _fake_shard_dir(path, world_size=1):
    path.mkdir(parents=True)
    (path / "fsdp_config.json").write_text(json.dumps({"FSDP_version": 2, "world_size": world_size}))
    for rank in range(world_size):
        (path / f"model_world_size_{world_size}_rank_{rank}.pt").write_bytes(b"x")
    (path / "huggingface").mkdir()
    (path / "huggingface" / "config.json").write_text("{}")
    return path


def test_resolve_every_level_of_the_tree(tmp_path):
    # RL layout: root/latest_checkpointed_iteration.txt -> global_step_N/actor
    rl = tmp_path / "rl"
    actor = _fake_shard_dir(rl / "global_step_7" / "actor")
    _fake_shard_dir(rl / "global_step_5" / "actor")
    (rl / "latest_checkpointed_iteration.txt").write_text("7")
    for level in (rl, rl / "global_step_7", actor):
        resolved = resolve_checkpoint(level)
        assert resolved.shard_dir == actor.resolve()
        assert resolved.global_step == 7 and resolved.kind == "fsdp_shards"
    # SFT layout: shards directly in global_step_N
    sft = _fake_shard_dir(tmp_path / "sft" / "global_step_2")
    assert resolve_checkpoint(sft).shard_dir == sft.resolve()
    # An HF dir with weights (checkpoint.save_contents included hf_model)
    hf = tmp_path / "hf" / "global_step_4" / "huggingface"
    hf.mkdir(parents=True)
    (hf / "config.json").write_text("{}")
    (hf / "model.safetensors").write_bytes(b"x")
    resolved = resolve_checkpoint(hf.parent)
    assert resolved.kind == "hf_weights" and resolved.hf_dir == hf.resolve() and resolved.global_step == 4


def test_resolve_errors_name_what_to_do(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "global_step_1").mkdir()
    with pytest.raises(ExportError, match=r"global_step_1"):
        resolve_checkpoint(root)
    (root / "latest_checkpointed_iteration.txt").write_text("9")
    with pytest.raises(ExportError, match="names step 9"):
        resolve_checkpoint(root)
    shard = _fake_shard_dir(tmp_path / "noconf")
    (shard / "huggingface" / "config.json").unlink()
    with pytest.raises(ExportError, match="huggingface/config.json"):
        resolve_checkpoint(shard)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fsdp2", "fsdp"])
def test_round_trip_loads_and_generates(fsdp_checkpoints, strategy, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out = tmp_path / "hf"
    assert main(["--checkpoint", str(fsdp_checkpoints / strategy), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json", "chat_template.jinja",
            "generation_config.json"} <= names
    info = json.loads((out / "verl_ext_export.json").read_text())
    assert info["kind"] == "fsdp_shards" and info["global_step"] == 3
    assert info["files_from"] == {"tokenizer": "checkpoint", "processor": "checkpoint",
                                  "chat_template": "checkpoint", "generation_config": "checkpoint"}

    model = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)
    reference = torch.load(fsdp_checkpoints / "reference_state.pt")
    state = model.state_dict()
    assert set(state) == set(reference)
    for key, value in reference.items():
        # verl's merger writes bf16: the export equals the trained (perturbed) weights rounded to bf16.
        assert torch.equal(state[key], value.to(torch.bfloat16).float()), key

    processor = AutoProcessor.from_pretrained(out)
    image = Image.fromarray((np.random.default_rng(0).random((70, 90, 3)) * 255).astype("uint8"))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Findings?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    with torch.inference_mode():
        generated = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert generated.shape[1] > inputs["input_ids"].shape[1]


@pytest.mark.slow
def test_missing_files_come_from_base_model(fsdp_checkpoints, tiny_model, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(fsdp_checkpoints / "fsdp2", ckpt)
    hf = ckpt / "global_step_3" / "actor" / "huggingface"
    (hf / "chat_template.jinja").unlink()
    (hf / "generation_config.json").unlink()
    with pytest.raises(ExportError, match="no chat template"):
        export_checkpoint(ckpt, tmp_path / "no_base")
    summary = export_checkpoint(ckpt, tmp_path / "with_base", base_model=tiny_model)
    assert summary["files_from"]["chat_template"] == "base-model"
    assert summary["files_from"]["generation_config"] == "base-model"
    assert (tmp_path / "with_base" / "generation_config.json").read_text() == \
        (tiny_model / "generation_config.json").read_text()
    with pytest.raises(ExportError, match="not empty"):
        export_checkpoint(ckpt, tmp_path / "with_base", base_model=tiny_model)


@pytest.mark.slow
def test_missing_rank_file_is_refused(fsdp_checkpoints, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(fsdp_checkpoints / "fsdp2" / "global_step_3", ckpt / "global_step_3")
    (ckpt / "global_step_3" / "actor" / "model_world_size_2_rank_1.pt").unlink()
    with pytest.raises(ExportError, match="world_size=2 but 1 model shard"):
        export_checkpoint(ckpt / "global_step_3", tmp_path / "out")
