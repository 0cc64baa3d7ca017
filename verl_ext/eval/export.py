"""Export a verl FSDP checkpoint (SFT or RL) to a Hugging Face model directory that vLLM and transformers load.

    python -m verl_ext.eval.export --checkpoint CKPT --out DIR [--base-model BASE_DIR]

What verl 0.9.1 writes (``verl/utils/checkpoint/fsdp_checkpoint_manager.py``, called by the FSDP engine):

* SFT (``verl.trainer.sft_trainer``): ``<default_local_dir>/global_step_N/`` holds the shards directly;
* RL (V1 and legacy PPO trainers):    ``<default_local_dir>/global_step_N/actor/``;
* either way the shard directory holds ``model_world_size_W_rank_R.pt`` (one sharded state dict per rank, DTensors
  under FSDP2 / FSDP1-with-mesh), ``optim_*``/``extra_state_*``, ``fsdp_config.json`` (``world_size``) and
  ``huggingface/`` with the model config, tokenizer/processor files, chat template and (when the training model
  had one) ``generation_config.json`` — but **no weights** unless ``checkpoint.save_contents`` included
  ``hf_model``; ``<default_local_dir>/latest_checkpointed_iteration.txt`` names the newest step.

`--checkpoint` may be any of these levels: the trainer's ``default_local_dir`` (the newest step is used), a
``global_step_N`` directory, an ``actor`` directory, or a ``huggingface`` directory that already holds weights.

The shards are merged by verl's own merger (``verl.model_merger``, ``FSDPModelMerger``), which writes bf16
safetensors plus the processor, tokenizer and generation config found in ``huggingface/``. When ``huggingface/``
lacks a file family (tokenizer, processor, chat template, generation config), `--base-model` fills it from the
model training started from. The result is checked by loading its config, tokenizer and processor.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

TRACKER_FILE = "latest_checkpointed_iteration.txt"
FSDP_CONFIG = "fsdp_config.json"
HF_SUBDIR = "huggingface"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")

# File families an HF model directory needs besides config + weights. A family counts as present when any of its
# "marker" files is there; when it is missing, all of its files that exist in --base-model are copied.
FAMILIES: dict[str, tuple[str, ...]] = {
    "tokenizer": ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
                  "added_tokens.json"),
    "processor": ("processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json"),
    "chat_template": ("chat_template.jinja", "chat_template.json"),
    "generation_config": ("generation_config.json",),
}
MARKERS: dict[str, tuple[str, ...]] = {
    "tokenizer": ("tokenizer.json", "vocab.json"),
    "processor": ("processor_config.json", "preprocessor_config.json"),
    "chat_template": ("chat_template.jinja", "chat_template.json"),
    "generation_config": ("generation_config.json",),
}


class ExportError(RuntimeError):
    """The checkpoint cannot be exported; the message says what was found and what to do."""


@dataclass
class ResolvedCheckpoint:
    """Where the weights of a checkpoint live."""

    shard_dir: Path | None  # the directory with model_world_size_*_rank_*.pt + fsdp_config.json, if any
    hf_dir: Path  # the huggingface/ directory (config, tokenizer, processor; weights only with hf_model)
    global_step: int | None
    kind: str  # "fsdp_shards" | "hf_weights"
    notes: list[str] = field(default_factory=list)


def _has_weights(path: Path) -> bool:
    return any((path / name).is_file() for name in WEIGHT_FILES)


def _step_of(path: Path) -> int | None:
    for part in reversed(path.parts):
        match = re.fullmatch(r"global_step_(\d+)", part)
        if match:
            return int(match.group(1))
    return None


def resolve_checkpoint(path: str | Path) -> ResolvedCheckpoint:
    """Find the shard directory (or an HF directory with weights) under any level of a verl checkpoint tree."""
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise ExportError(f"checkpoint {path} is not a directory")
    tracker = path / TRACKER_FILE
    if tracker.is_file():
        step = int(tracker.read_text().strip())
        step_dir = path / f"global_step_{step}"
        if not step_dir.is_dir():
            raise ExportError(f"{tracker} names step {step} but {step_dir} does not exist; pass a global_step_N "
                              f"directory explicitly")
        resolved = resolve_checkpoint(step_dir)
        resolved.notes.insert(0, f"{TRACKER_FILE} -> global_step_{step}")
        return resolved
    if (path / FSDP_CONFIG).is_file():
        hf_dir = path / HF_SUBDIR
        if not (hf_dir / "config.json").is_file():
            raise ExportError(f"{path} has FSDP shards but no {HF_SUBDIR}/config.json; verl writes it on rank 0 "
                              f"with every checkpoint — is the checkpoint complete?")
        return ResolvedCheckpoint(path, hf_dir, _step_of(path), "fsdp_shards")
    if (path / "actor" / FSDP_CONFIG).is_file():
        return resolve_checkpoint(path / "actor")
    if (path / "config.json").is_file() and _has_weights(path):
        return ResolvedCheckpoint(None, path, _step_of(path), "hf_weights")
    if (path / HF_SUBDIR / "config.json").is_file() and _has_weights(path / HF_SUBDIR):
        return ResolvedCheckpoint(None, path / HF_SUBDIR, _step_of(path), "hf_weights")
    steps = sorted(p.name for p in path.glob("global_step_*"))
    hint = f" It holds {steps[:5]}; pass one of them." if steps else ""
    raise ExportError(
        f"{path} is not a verl checkpoint: expected {FSDP_CONFIG} + model_world_size_*_rank_*.pt (a shard dir), an "
        f"actor/ subdirectory, a {TRACKER_FILE}, or a Hugging Face directory with weights.{hint}"
    )


def _present_families(directory: Path) -> set[str]:
    present = {fam for fam, markers in MARKERS.items() if any((directory / m).is_file() for m in markers)}
    if "chat_template" not in present:
        # Older layouts keep the template inside tokenizer_config.json / processor_config.json.
        for name in ("tokenizer_config.json", "processor_config.json"):
            file = directory / name
            if file.is_file():
                try:
                    if json.loads(file.read_text()).get("chat_template"):
                        present.add("chat_template")
                except (json.JSONDecodeError, OSError):
                    pass
    return present


def _merge_shards(resolved: ResolvedCheckpoint, out: Path, trust_remote_code: bool) -> None:
    """Merge the FSDP shards with verl's FSDPModelMerger (the code path of ``python -m verl.model_merger merge``)."""
    from verl.model_merger.base_model_merger import ModelMergerConfig
    from verl.model_merger.fsdp_model_merger import FSDPModelMerger

    shards = sorted(resolved.shard_dir.glob("model_world_size_*_rank_*.pt"))
    world_size = json.loads((resolved.shard_dir / FSDP_CONFIG).read_text()).get("world_size")
    if len(shards) != world_size:
        raise ExportError(f"{resolved.shard_dir}: {FSDP_CONFIG} says world_size={world_size} but "
                          f"{len(shards)} model shard files are present; copy all ranks' files first")
    config = ModelMergerConfig(
        operation="merge",
        backend="fsdp",
        local_dir=str(resolved.shard_dir),
        target_dir=str(out),
        hf_model_config_path=str(resolved.hf_dir),
        trust_remote_code=trust_remote_code,
    )
    merger = FSDPModelMerger(config)
    merger.merge_and_save()
    merger.cleanup()


def _copy_hf_dir(src: Path, out: Path) -> None:
    for item in src.iterdir():
        if item.is_file():
            shutil.copy2(item, out / item.name)


def _fill_from_base(source_hf: Path, out: Path, base: Path | None) -> dict[str, str]:
    """Copy file families the checkpoint lacks from the base model; returns {family: where it came from}."""
    origin = {}
    have = _present_families(source_hf)
    for family, names in FAMILIES.items():
        if family in have:
            origin[family] = "checkpoint"
            continue
        base_has = base is not None and family in _present_families(base)
        if not base_has:
            # verl's merger always writes a generation_config.json, derived from the model config when the
            # checkpoint has none (it then lacks e.g. Qwen's second EOS id).
            derived = family == "generation_config" and (out / "generation_config.json").is_file()
            origin[family] = "derived-from-config" if derived else "missing"
            continue
        for name in names:
            if (base / name).is_file():
                shutil.copy2(base / name, out / name)
        origin[family] = "base-model"
    return origin


def check_export(out: Path, trust_remote_code: bool = False) -> dict:
    """Load the exported directory's config, tokenizer and processor the way vLLM/transformers will; returns facts."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    config = AutoConfig.from_pretrained(out, trust_remote_code=trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(out, trust_remote_code=trust_remote_code)
    facts = {
        "architectures": list(getattr(config, "architectures", None) or []),
        "model_type": config.model_type,
        "vocab": len(tokenizer),
        "eos_token": tokenizer.eos_token,
        "has_chat_template": bool(getattr(tokenizer, "chat_template", None)),
    }
    is_vl = hasattr(config, "vision_config")
    if is_vl:
        from verl.utils import hf_processor

        processor = hf_processor(str(out), trust_remote_code=trust_remote_code)
        if processor is None:
            raise ExportError(f"{out}: the model has a vision tower but no processor loads from it; pass "
                              f"--base-model with the directory training started from")
        facts["processor"] = type(processor).__name__
        facts["has_chat_template"] = facts["has_chat_template"] or bool(getattr(processor, "chat_template", None))
    if not facts["has_chat_template"]:
        raise ExportError(f"{out} has no chat template; rerun with --base-model (the model training started from) "
                          f"and --overwrite")
    if (out / "generation_config.json").is_file():
        gen = GenerationConfig.from_pretrained(out)
        facts["generation_eos_token_id"] = gen.eos_token_id
    return facts


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, base_model: str | Path | None = None,
                      overwrite: bool = False, trust_remote_code: bool = False) -> dict:
    """Export `checkpoint` (any level of a verl FSDP checkpoint tree) to the HF directory `out`; returns a summary.

    Raises:
        ExportError: when the checkpoint layout is not recognised, shards are missing, `out` is not empty (without
            `overwrite`), or the result cannot be loaded (no processor/chat template and no `base_model` to fill it).
    """
    out = Path(out).expanduser().resolve()
    base = Path(base_model).expanduser().resolve() if base_model else None
    if base is not None and not (base / "config.json").is_file():
        raise ExportError(f"--base-model {base} is not a Hugging Face model directory (no config.json)")
    resolved = resolve_checkpoint(checkpoint)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f"{out} exists and is not empty; pass --overwrite or choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    started = time.time()
    if resolved.kind == "fsdp_shards":
        if (resolved.shard_dir / "lora_train_meta.json").is_file():
            resolved.notes.append("LoRA checkpoint: verl's merger writes the adapter to lora_adapter/ next to the "
                                  "base weights")
        _merge_shards(resolved, out, trust_remote_code)
    else:
        _copy_hf_dir(resolved.hf_dir, out)
    origin = _fill_from_base(resolved.hf_dir, out, base)
    missing = [family for family, where in origin.items() if where in ("missing", "derived-from-config")]
    if missing:
        logger.warning("the checkpoint lacks %s and no --base-model supplied them", ", ".join(missing))
    facts = check_export(out, trust_remote_code=trust_remote_code)

    from importlib.metadata import version

    summary = {
        "checkpoint": str(Path(checkpoint).expanduser().resolve()),
        "source": str(resolved.shard_dir or resolved.hf_dir),
        "kind": resolved.kind,
        "global_step": resolved.global_step,
        "base_model": str(base) if base else None,
        "files_from": origin,
        "notes": resolved.notes,
        "verl_version": version("verl"),
        "seconds": round(time.time() - started, 2),
        **facts,
    }
    (out / "verl_ext_export.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verl_ext.eval.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="trainer default_local_dir, global_step_N, actor/, or an HF dir with weights")
    parser.add_argument("--out", required=True, help="the Hugging Face model directory to write")
    parser.add_argument("--base-model", default=None,
                        help="the model training started from; fills tokenizer/processor/chat-template/"
                             "generation-config files the checkpoint lacks")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--trust-remote-code", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = export_checkpoint(args.checkpoint, args.out, base_model=args.base_model,
                                    overwrite=args.overwrite, trust_remote_code=args.trust_remote_code)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
