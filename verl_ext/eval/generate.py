"""Generate reports for a test parquet with an exported model, resumably: ``(id, generated, reference)`` rows.

    python -m verl_ext.eval.generate --model HF_DIR --data test.parquet --out rows.jsonl

Input: the data-prep parquet (``verl_ext/data/schema.py``): ``prompt`` chat messages with ``<image>`` placeholders,
``images`` as ``{"bytes", "path", "min_pixels", "max_pixels"}`` or ``{"image": path, ...}`` dicts,
``reward_model.ground_truth`` (the reference), ``extra_info.study_id`` (the row id) and ``data_source``.
`--data` takes files, globs, or a directory (its ``test*.parquet`` files), and may repeat.

Prompts are built by verl's own code, so evaluation sees exactly the tokens RL rollouts saw:
``RLHFDataset.__getitem__`` (``_build_messages``: ``<image>`` → image content items, per-image min/max pixels),
``RLHFDataset._process_multi_modal_info`` (qwen_vl_utils resizing) and the continuous-token builder that
``SingleTurnAgentLoop`` uses (the processor's chat template with ``add_generation_prompt=True`` + the processor).
`--apply-chat-template-kwargs` / `--mm-processor-kwargs` mirror ``data.apply_chat_template_kwargs`` /
``data.mm_processor_kwargs``; `--min-pixels` / `--max-pixels` override the per-image budget stored in the parquet
(leave them unset to match training, which reads the parquet's values).

Backends: vLLM when it is installed and a GPU is visible (the prompt token ids and PIL images go to
``LLM.generate`` as verl's vLLM server sends them, image-pad runs collapsed; ``limit_mm_per_prompt`` from the data),
else transformers (much slower; batched with left padding; mrope positions from ``mm_token_type_ids``).
Decoding defaults to greedy, ``repetition_penalty=1.0`` (verl's rollout default; the model's
``generation_config.json`` may carry another value, e.g. 1.05 for Qwen2.5-VL-Instruct, which is ignored here).

Output: JSON lines ``{"id", "data_source", "generated", "reference", "finish_reason", "num_generated_tokens"}``,
appended batch by batch; a rerun skips ids already in the file (a torn last line is dropped). A sidecar
``<out>.meta.json`` records the model, data and decoding settings; resuming with different settings is refused
unless `--allow-settings-change`.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from verl_ext.eval.resume import check_settings, read_done_ids
from verl_ext.help_format import HelpFormatter

logger = logging.getLogger(__name__)

# Settings that change what is generated; a resumed run must match them.
_RESUME_KEYS = ("model", "data", "max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed",
                "min_pixels", "max_pixels", "apply_chat_template_kwargs", "mm_processor_kwargs", "prompt_key",
                "image_key")


@dataclass
class GenerateConfig:
    """Settings of one generation run (the CLI flags)."""

    model: str
    """Hugging Face model directory (e.g. the output of ``verl_ext.eval.export``)."""
    data: list[str]
    """Test parquet files, globs or directories (a directory contributes its ``test*.parquet``)."""
    out: str
    """Output JSON-lines file; appended to and resumed."""
    backend: str = "auto"
    """``auto`` (vLLM if importable and CUDA is available, else transformers), ``vllm`` or ``hf``."""
    batch_size: int = 8
    """Prompts per ``generate`` call with transformers; vLLM gets `vllm_chunk` prompts per call."""
    vllm_chunk: int = 256
    """Prompts handed to vLLM per call (it batches internally); results are written after each call."""
    max_new_tokens: int = 1024
    """Generation budget per report. MIMIC findings are far shorter; rows that hit it get finish_reason=length."""
    temperature: float = 0.0
    """0 = greedy (the default for evaluation)."""
    top_p: float = 1.0
    top_k: int = -1
    """-1 = disabled."""
    repetition_penalty: float = 1.0
    """verl's rollout default (``vllm_async_server``: ``setdefault("repetition_penalty", 1.0)``)."""
    seed: int = 0
    limit: int | None = None
    """Generate at most this many new rows (for smoke tests)."""
    min_pixels: int | None = None
    """Override every image's ``min_pixels`` (default: the parquet's value, as in training)."""
    max_pixels: int | None = None
    """Override every image's ``max_pixels`` (default: the parquet's value, as in training)."""
    prompt_key: str = "prompt"
    image_key: str = "images"
    apply_chat_template_kwargs: dict = field(default_factory=dict)
    mm_processor_kwargs: dict = field(default_factory=dict)
    dtype: str = "auto"
    """Model dtype: ``auto`` = bfloat16 on GPU, float32 on CPU; or ``bfloat16``/``float16``/``float32``."""
    device: str = "auto"
    """transformers backend device: ``auto`` = cuda if available else cpu."""
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_model_len: int = 8192
    limit_images: int | None = None
    """vLLM ``limit_mm_per_prompt['image']``; default: the largest image count in the data."""
    allow_settings_change: bool = False


@dataclass
class PreparedPrompt:
    """One test row turned into model inputs."""

    id: str
    data_source: str | None
    reference: str | None
    prompt_ids: list[int]
    images: list | None
    mm_inputs: dict[str, Any]


@dataclass
class Generation:
    text: str
    finish_reason: str  # "stop" | "length"
    num_tokens: int


# ----------------------------------------------------------------------------------------------- data and prompts


def resolve_data_files(specs: list[str]) -> list[str]:
    """Expand files, globs and directories (``test*.parquet`` inside) into a sorted, de-duplicated file list."""
    files: list[str] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir():
            found = sorted(str(p) for p in path.glob("test*.parquet"))
            if not found:
                raise FileNotFoundError(f"--data {spec}: the directory has no test*.parquet files; name the files")
        elif any(ch in spec for ch in "*?["):
            found = sorted(glob.glob(os.path.expanduser(spec)))
            if not found:
                raise FileNotFoundError(f"--data {spec}: the pattern matches no file")
        elif path.is_file():
            found = [str(path)]
        else:
            raise FileNotFoundError(f"--data {spec}: no such file or directory")
        files.extend(str(Path(f).resolve()) for f in found)
    return list(dict.fromkeys(files))


def max_images_per_row(files: list[str], image_key: str = "images") -> int:
    """The largest number of images in one row, read from the list lengths only (no image decoding)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    best = 0
    for file in files:
        pf = pq.ParquetFile(file)
        if image_key not in pf.schema_arrow.names:
            continue
        for batch in pf.iter_batches(columns=[image_key], batch_size=4096):
            lengths = pc.list_value_length(batch.column(0))
            top = pc.max(lengths).as_py()
            best = max(best, top or 0)
    return best


def row_id(row: dict, ordinal: int) -> str:
    """``extra_info.study_id``, else ``extra_info.index``, else the row's position in the data."""
    extra = row.get("extra_info") or {}
    for key in ("study_id", "index"):
        value = extra.get(key)
        if value is not None and value != "":
            return str(value)
    return str(ordinal)


def row_reference(row: dict) -> str | None:
    reward = row.get("reward_model") or {}
    return reward.get("ground_truth")


class PromptBuilder:
    """Turns test rows into model inputs with verl's RLHFDataset + SingleTurnAgentLoop tokenisation."""

    def __init__(self, model_dir: str, *, prompt_key: str = "prompt", image_key: str = "images",
                 apply_chat_template_kwargs: dict | None = None, mm_processor_kwargs: dict | None = None,
                 min_pixels: int | None = None, max_pixels: int | None = None, trust_remote_code: bool = False):
        from transformers import AutoConfig
        from verl.utils import hf_processor, hf_tokenizer
        from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

        self.tokenizer = hf_tokenizer(model_dir, trust_remote_code=trust_remote_code)
        self.processor = hf_processor(model_dir, trust_remote_code=trust_remote_code)
        self.hf_config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        self.prompt_key = prompt_key
        self.image_key = image_key
        self.apply_chat_template_kwargs = dict(apply_chat_template_kwargs or {})
        self.mm_processor_kwargs = dict(mm_processor_kwargs or {})
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        # AgentLoopWorker passes the root config's model_type (agent_loop.py: hf_model_type).
        self.builder = create_continuous_token_builder(
            self.tokenizer,
            hf_model_type=getattr(self.hf_config, "model_type", None),
            chat_template_kwargs=self.apply_chat_template_kwargs,
            mm_processor_kwargs=self.mm_processor_kwargs,
            processor=self.processor,
        )
        self.config = self.data_config()
        image_processor = getattr(self.processor, "image_processor", None)
        # Same default as AgentLoopBase.process_multi_modal_info.
        self.image_patch_size = getattr(image_processor, "patch_size", 14)

    def data_config(self) -> Any:
        """The ``data`` config RLHFDataset reads (no length filtering: evaluation keeps every row)."""
        from omegaconf import OmegaConf

        return OmegaConf.create({
            "prompt_key": self.prompt_key,
            "image_key": self.image_key,
            "filter_overlong_prompts": False,
            "return_raw_chat": True,
            "apply_chat_template_kwargs": self.apply_chat_template_kwargs,
            "mm_processor_kwargs": self.mm_processor_kwargs,
            "cache_dir": os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "verl_ext"),
        })

    def open(self, files: list[str]):
        """verl's RLHFDataset over `files` (rows come back with ``raw_prompt`` built by ``_build_messages``)."""
        from verl.utils.dataset.rl_dataset import RLHFDataset

        return RLHFDataset(data_files=list(files), tokenizer=self.tokenizer, config=self.config,
                           processor=self.processor)

    def _override_pixels(self, messages: list[dict]) -> None:
        if self.min_pixels is None and self.max_pixels is None:
            return
        for message in messages:
            content = message.get("content")
            if not isinstance(content, list):
                continue
            for item in content:
                if isinstance(item, dict) and item.get("type") == "image":
                    if self.min_pixels is not None:
                        item["min_pixels"] = self.min_pixels
                    if self.max_pixels is not None:
                        item["max_pixels"] = self.max_pixels

    def prepare(self, item: dict, ordinal: int) -> PreparedPrompt:
        """`item` is ``RLHFDataset[i]``; tokenises like ``SingleTurnAgentLoop.run`` steps 1-2."""
        from verl.utils.dataset.rl_dataset import RLHFDataset

        messages = list(item["raw_prompt"])
        self._override_pixels(messages)
        images, videos, audios = RLHFDataset._process_multi_modal_info(messages, self.image_patch_size, self.config)
        if videos or audios:
            raise ValueError(f"row {row_id(item, ordinal)}: video/audio inputs are not supported by this evaluator")
        mm_inputs: dict[str, Any] = {}
        prompt_ids = self.builder.build_initial_tokens(messages, images=images, mm_inputs_out=mm_inputs)
        return PreparedPrompt(
            id=row_id(item, ordinal),
            data_source=item.get("data_source"),
            reference=row_reference(item),
            prompt_ids=list(prompt_ids),
            images=images,
            mm_inputs=mm_inputs,
        )


# ------------------------------------------------------------------------------------------------------ backends


def _eos_token_ids(model_dir: str, tokenizer) -> list[int]:
    """EOS ids from generation_config.json (Qwen: <|im_end|> and <|endoftext|>) plus the tokenizer's."""
    ids: list[int] = []
    try:
        from transformers import GenerationConfig

        gen = GenerationConfig.from_pretrained(model_dir)
        eos = gen.eos_token_id
        ids.extend(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    except OSError:
        pass
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(int(i) for i in ids))


def _resolve_dtype(name: str, device: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


class HFGenerator:
    """transformers ``generate`` with left-padded batches (the fallback when vLLM is not available)."""

    name = "hf"

    def __init__(self, cfg: GenerateConfig, prompts: PromptBuilder):
        import torch
        from transformers import AutoModelForImageTextToText

        self.device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = _resolve_dtype(cfg.dtype, self.device)
        self.model = AutoModelForImageTextToText.from_pretrained(cfg.model, dtype=dtype, attn_implementation="sdpa")
        self.model.to(self.device).eval()
        self.cfg = cfg
        self.prompts = prompts
        self.tokenizer = prompts.tokenizer
        self.eos_ids = _eos_token_ids(cfg.model, self.tokenizer)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]

    def _collate(self, batch: list[PreparedPrompt]) -> dict:
        import torch

        width = max(len(p.prompt_ids) for p in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, prompt in enumerate(batch):
            n = len(prompt.prompt_ids)
            ids[row, width - n:] = torch.tensor(prompt.prompt_ids, dtype=torch.long)
            mask[row, width - n:] = 1
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        processor = self.prompts.processor
        if processor is not None and hasattr(processor, "create_mm_token_type_ids"):
            # transformers 5 Qwen-VL computes mrope positions only when mm_token_type_ids is given; without it the
            # images get 1-D text positions silently.
            inputs["mm_token_type_ids"] = torch.tensor(processor.create_mm_token_type_ids(ids.tolist()),
                                                       dtype=torch.long)
        keys = sorted({k for p in batch for k in p.mm_inputs} - {"input_ids", "attention_mask", "mm_token_type_ids"})
        for key in keys:
            parts = [p.mm_inputs[key] for p in batch if key in p.mm_inputs]
            if parts and all(isinstance(t, torch.Tensor) for t in parts):
                inputs[key] = torch.cat(parts, dim=0)
        return inputs

    def generate(self, batch: list[PreparedPrompt]) -> list[Generation]:
        import torch

        inputs = {k: v.to(self.device) for k, v in self._collate(batch).items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        greedy = self.cfg.temperature <= 0
        kwargs = {
            "max_new_tokens": self.cfg.max_new_tokens,
            "do_sample": not greedy,
            "repetition_penalty": self.cfg.repetition_penalty,
            "eos_token_id": self.eos_ids,
            "pad_token_id": self.pad_id,
        }
        if greedy:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(temperature=self.cfg.temperature, top_p=self.cfg.top_p,
                          top_k=self.cfg.top_k if self.cfg.top_k > 0 else None)
        if not greedy:
            torch.manual_seed(self.cfg.seed)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        new_tokens = out[:, inputs["input_ids"].shape[1]:].tolist()
        results = []
        eos = set(self.eos_ids)
        for tokens in new_tokens:
            # Trim at the first EOS (later positions are padding once a row has finished).
            stop = next((i for i, t in enumerate(tokens) if t in eos), None)
            kept = tokens if stop is None else tokens[:stop]
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            results.append(Generation(text, "stop" if stop is not None else "length", len(kept)))
        return results


class VLLMGenerator:
    """vLLM offline engine, fed prompt token ids + PIL images the way verl's vLLM server is."""

    name = "vllm"

    def __init__(self, cfg: GenerateConfig, prompts: PromptBuilder, limit_images: int):
        from vllm import LLM, SamplingParams

        self.prompts = prompts
        engine_kwargs = {
            "model": cfg.model,
            "tokenizer": cfg.model,
            "dtype": "auto" if cfg.dtype == "auto" else cfg.dtype,
            "tensor_parallel_size": cfg.tensor_parallel_size,
            "gpu_memory_utilization": cfg.gpu_memory_utilization,
            "max_model_len": cfg.max_model_len,
            "seed": cfg.seed,
            "trust_remote_code": False,
        }
        if limit_images > 0:
            engine_kwargs["limit_mm_per_prompt"] = {"image": limit_images}
        if cfg.mm_processor_kwargs:
            engine_kwargs["mm_processor_kwargs"] = dict(cfg.mm_processor_kwargs)
        self.llm = LLM(**engine_kwargs)
        greedy = cfg.temperature <= 0
        self.sampling = SamplingParams(
            n=1,
            temperature=0.0 if greedy else cfg.temperature,
            top_p=1.0 if greedy else cfg.top_p,
            top_k=-1 if greedy else cfg.top_k,
            max_tokens=cfg.max_new_tokens,
            repetition_penalty=cfg.repetition_penalty,
            stop_token_ids=_eos_token_ids(cfg.model, prompts.tokenizer),
            skip_special_tokens=True,
            seed=None if greedy else cfg.seed,
        )
        self.mm_processor_kwargs = dict(cfg.mm_processor_kwargs)

    def request(self, prompt: PreparedPrompt) -> dict:
        """The prompt dict for ``LLM.generate`` (as ``vLLMHttpServer.generate`` builds its TokensPrompt)."""
        return build_vllm_request(prompt, self.prompts.processor, self.mm_processor_kwargs)

    def generate(self, batch: list[PreparedPrompt]) -> list[Generation]:
        outputs = self.llm.generate([self.request(p) for p in batch], self.sampling, use_tqdm=False)
        results = []
        for output in outputs:
            completion = output.outputs[0]
            reason = "length" if completion.finish_reason == "length" else "stop"
            results.append(Generation(completion.text, reason, len(completion.token_ids)))
        return results


def build_vllm_request(prompt: PreparedPrompt, processor, mm_processor_kwargs: dict | None = None) -> dict:
    """``{"prompt_token_ids", "multi_modal_data"}``: vLLM expands each image's single ``<|image_pad|>`` itself, so
    runs of pad tokens are collapsed with verl's ``qwen2_5_vl_dedup_image_tokens`` (as its vLLM server does)."""
    from verl.workers.rollout.utils import qwen2_5_vl_dedup_image_tokens

    request: dict[str, Any] = {"prompt_token_ids": qwen2_5_vl_dedup_image_tokens(prompt.prompt_ids, processor)}
    if prompt.images:
        request["multi_modal_data"] = {"image": list(prompt.images)}
    if mm_processor_kwargs:
        request["mm_processor_kwargs"] = dict(mm_processor_kwargs)
    return request


def pick_backend(requested: str) -> str:
    if requested in ("hf", "vllm"):
        return requested
    if requested != "auto":
        raise ValueError(f"--backend {requested!r}: expected auto, vllm or hf")
    import importlib.util

    import torch

    if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available():
        return "vllm"
    return "hf"


# ------------------------------------------------------------------------------------------------- output/resume


def _settings(cfg: GenerateConfig, files: list[str]) -> dict:
    data = asdict(cfg)
    data["data"] = files
    data["model"] = str(Path(cfg.model).resolve())
    return {k: data[k] for k in _RESUME_KEYS}


def dataset_ids(dataset) -> list[str]:
    """Row ids of an RLHFDataset, read from its ``extra_info`` column (no image decoding); raises on duplicates."""
    frame = dataset.dataframe
    extras = frame["extra_info"] if "extra_info" in frame.column_names else [None] * len(frame)
    ids = [row_id({"extra_info": extra}, ordinal) for ordinal, extra in enumerate(extras)]
    seen: set[str] = set()
    for ordinal, rid in enumerate(ids):
        if rid in seen:
            raise ValueError(f"row {ordinal}: id {rid!r} repeats; ids (extra_info.study_id) must be unique")
        seen.add(rid)
    return ids


def run(cfg: GenerateConfig) -> dict:
    """Generate for every pending row of `cfg.data` and append to `cfg.out`; returns counts and timings."""
    from tqdm.auto import tqdm

    files = resolve_data_files(cfg.data)
    out = Path(cfg.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    meta_path = out.with_name(out.name + ".meta.json")
    settings = _settings(cfg, files)
    check_settings(meta_path, settings, cfg.allow_settings_change)
    done = read_done_ids(out)

    prompts = PromptBuilder(cfg.model, prompt_key=cfg.prompt_key, image_key=cfg.image_key,
                            apply_chat_template_kwargs=cfg.apply_chat_template_kwargs,
                            mm_processor_kwargs=cfg.mm_processor_kwargs, min_pixels=cfg.min_pixels,
                            max_pixels=cfg.max_pixels)
    dataset = prompts.open(files)
    ids = dataset_ids(dataset)
    total = len(ids)
    not_done = [ordinal for ordinal, rid in enumerate(ids) if rid not in done]
    pending = not_done if cfg.limit is None else not_done[: max(0, cfg.limit)]
    strangers = len(done - set(ids))
    if strangers:
        logger.warning("%s holds %d ids that are not in the data", out, strangers)
    backend = pick_backend(cfg.backend)
    started = time.time()
    counts = {"rows": total, "already_done": total - len(not_done), "generated": 0, "truncated": 0}
    if pending:
        if backend == "vllm":
            limit_images = cfg.limit_images or max_images_per_row(files, cfg.image_key)
            generator = VLLMGenerator(cfg, prompts, limit_images)
            step = cfg.vllm_chunk
        else:
            logger.warning("generating with transformers (no vLLM or no GPU): much slower than vLLM")
            generator = HFGenerator(cfg, prompts)
            step = cfg.batch_size
        meta = {"settings": settings, "backend": generator.name, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
        with out.open("a", encoding="utf-8") as fh, tqdm(total=len(pending), desc=f"generate[{generator.name}]",
                                                          unit="report") as bar:
            for start in range(0, len(pending), step):
                batch = [prompts.prepare(dataset[i], i) for i in pending[start:start + step]]
                for prompt, gen in zip(batch, generator.generate(batch)):
                    record = {"id": prompt.id, "data_source": prompt.data_source, "generated": gen.text,
                              "reference": prompt.reference, "finish_reason": gen.finish_reason,
                              "num_generated_tokens": gen.num_tokens}
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                    counts["truncated"] += gen.finish_reason == "length"
                fh.flush()
                counts["generated"] += len(batch)
                bar.update(len(batch))
    counts["backend"] = backend
    counts["seconds"] = round(time.time() - started, 2)
    counts["remaining"] = total - counts["already_done"] - counts["generated"]
    if counts["truncated"]:
        logger.warning("%d reports hit max_new_tokens=%d (finish_reason=length)", counts["truncated"],
                       cfg.max_new_tokens)
    return counts


def _json_arg(text: str) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def parse_args(argv: list[str] | None = None) -> GenerateConfig:
    parser = argparse.ArgumentParser(prog="python -m verl_ext.eval.generate", description=__doc__,
                                     formatter_class=HelpFormatter)
    d = GenerateConfig(model="", data=[], out="")
    parser.add_argument("--model", required=True, help="Hugging Face model directory")
    parser.add_argument("--data", required=True, action="append", help="test parquet file/glob/dir (repeatable)")
    parser.add_argument("--out", required=True, help="output .jsonl (resumed when it exists)")
    parser.add_argument("--backend", default=d.backend, choices=["auto", "vllm", "hf"],
                        help="auto: vLLM when installed and a GPU is visible, else transformers")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="transformers batch size")
    parser.add_argument("--vllm-chunk", type=int, default=d.vllm_chunk, help="prompts per vLLM call")
    parser.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens,
                        help="generation budget per report (rows that hit it: finish_reason=length)")
    parser.add_argument("--temperature", type=float, default=d.temperature, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=d.top_p, help="nucleus sampling p (with --temperature > 0)")
    parser.add_argument("--top-k", type=int, default=d.top_k, help="top-k sampling (-1: off)")
    parser.add_argument("--repetition-penalty", type=float, default=d.repetition_penalty,
                        help="verl's rollout default (the model's generation_config.json is ignored)")
    parser.add_argument("--seed", type=int, default=d.seed, help="sampling seed")
    parser.add_argument("--limit", type=int, default=None, help="generate at most N new rows")
    parser.add_argument("--min-pixels", type=int, default=None, help="override the parquet's per-image min_pixels")
    parser.add_argument("--max-pixels", type=int, default=None, help="override the parquet's per-image max_pixels")
    parser.add_argument("--prompt-key", default=d.prompt_key, help="parquet column with the chat messages")
    parser.add_argument("--image-key", default=d.image_key, help="parquet column with the images")
    parser.add_argument("--apply-chat-template-kwargs", type=_json_arg, default={},
                        help="JSON, as data.apply_chat_template_kwargs")
    parser.add_argument("--mm-processor-kwargs", type=_json_arg, default={}, help="JSON, as data.mm_processor_kwargs")
    parser.add_argument("--dtype", default=d.dtype, choices=["auto", "bfloat16", "float16", "float32"],
                        help="auto: bfloat16 on GPU, float32 on CPU")
    parser.add_argument("--device", default=d.device, help="transformers backend: auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--tensor-parallel-size", type=int, default=d.tensor_parallel_size, help="vLLM GPUs per model")
    parser.add_argument("--gpu-memory-utilization", type=float, default=d.gpu_memory_utilization,
                        help="vLLM share of GPU memory")
    parser.add_argument("--max-model-len", type=int, default=d.max_model_len, help="vLLM context length")
    parser.add_argument("--limit-images", type=int, default=None, help="vLLM images per prompt (default: from data)")
    parser.add_argument("--allow-settings-change", action="store_true",
                        help="resume even though the settings differ from the existing output's")
    a = parser.parse_args(argv)
    return GenerateConfig(
        model=a.model, data=a.data, out=a.out, backend=a.backend, batch_size=a.batch_size, vllm_chunk=a.vllm_chunk,
        max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_p=a.top_p, top_k=a.top_k,
        repetition_penalty=a.repetition_penalty, seed=a.seed, limit=a.limit, min_pixels=a.min_pixels,
        max_pixels=a.max_pixels, prompt_key=a.prompt_key, image_key=a.image_key,
        apply_chat_template_kwargs=a.apply_chat_template_kwargs, mm_processor_kwargs=a.mm_processor_kwargs,
        dtype=a.dtype, device=a.device, tensor_parallel_size=a.tensor_parallel_size,
        gpu_memory_utilization=a.gpu_memory_utilization, max_model_len=a.max_model_len,
        limit_images=a.limit_images, allow_settings_change=a.allow_settings_change,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_args(argv)
    try:
        counts = run(cfg)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(counts, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
