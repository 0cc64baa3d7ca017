"""GPU benchmark without a cluster: the scorer stack, the edit analyzer and a Qwen2.5-VL-3B training step on one GPU.

    python bench/bench_gpu.py                 # a single-GPU machine with torch + transformers (no Ray, no vLLM)
    python bench/bench_gpu.py --small         # the same code paths with tiny models (CPU smoke run)

Three sections, each printing GPU vs CPU (or attention backend vs backend) side by side with the ratio:

1. **Reward** (``verl_ext.reward.scoring.RewardScorer``, the one scoring path of training): the paper's reward
   (RadGraph-F1 + CheXbert micro-F1-14 + RaTEScore) on full-size random-weight models
   (``verl_ext.testing.scorer_models.build_all(full_size=True)``: DeBERTa-v3-base RaTE-NER, MPNet-base BioLORD,
   BERT-base CheXbert and RadGraph), one RL step of ``--prompts`` x ``--group`` responses (the workload of
   ``bench/bench_reward.py``), cold caches, on CUDA and on CPU; the CPU side scores the first ``--cpu-pairs`` pairs
   only (it is ~100x slower) and the scores of those pairs are compared (the max difference is printed; CUDA runs
   with TF32 off so the two should agree to float rounding).
2. **Edit analyzer** (``verl_ext.clinical.rate.RateAnalyzer``, what the edit step runs) on the step's distinct texts,
   on CUDA and on CPU, plus the editing rules on the analyses.
3. **Policy step**: a randomly initialised model of Qwen2.5-VL-3B's shape (``Qwen2_5_VLConfig`` with the 3B
   dimensions: 36 layers, hidden 2048, 16/2 heads, a 32-block vision tower) in bf16 with gradient checkpointing,
   forward + backward + AdamW on ``--samples`` multi-image samples (``--images`` chest X-rays of ``--image-px``
   pixels each, a 4096-token response budget as in ``editgrpo_trainer.yaml``), with the project's loss settings
   (PPO clip 0.2, ``seq-mean-token-sum-norm`` over ``loss_scale_factor = data.max_response_length``), for every
   attention backend available (``sdpa``; ``flash_attention_2`` when flash-attn is installed).

Runs in under 8 minutes on one H100/H200-class GPU with the defaults (``--budget-s`` stops before a section that
would start after the budget). No GPU was available when this was written: the figures in the project's notes are
from ``--small`` on CPU, which checks the code paths, not the speed.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The Qwen2.5-VL-3B-Instruct config.json dimensions (text and vision towers).
QWEN25_VL_3B = dict(
    tokens=dict(tie_word_embeddings=True),
    text=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
              num_key_value_heads=2, vocab_size=151936, max_position_embeddings=128000, rms_norm_eps=1e-6,
              rope_theta=1000000.0, tie_word_embeddings=True,
              rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}),
    vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2, in_chans=3, hidden_act="silu"),
)
TINY = dict(
    tokens=dict(image_token_id=1000, video_token_id=1001, vision_start_token_id=1002, vision_end_token_id=1003,
                tie_word_embeddings=True),
    text=dict(bos_token_id=1004, eos_token_id=1005,
              hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=1024, max_position_embeddings=8192, rms_norm_eps=1e-6,
              rope_theta=1000000.0, tie_word_embeddings=True,
              rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
    vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1],
                tokens_per_second=2, in_chans=3, hidden_act="silu"),
)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(device: str, fn):
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def _row(name: str, a: tuple[str, float, str], b: tuple[str, float, str]) -> None:
    (na, ta, ua), (nb, tb, ub) = a, b
    ratio = tb / ta if ta > 0 else float("nan")
    print(f"  {name:<34s} {na}: {ta:8.3f} s {ua:<22s} {nb}: {tb:8.3f} s {ub:<22s} {nb}/{na} = {ratio:6.1f}x",
          flush=True)


# ------------------------------------------------------------------------------------------------------------------
# 1 + 2: reward and edit analyzer
# ------------------------------------------------------------------------------------------------------------------


def _workload(prompts: int, group: int) -> list[tuple[str, str]]:
    spec = importlib.util.spec_from_file_location("bench_reward", REPO / "bench" / "bench_reward.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_workload(prompts, group, seed=0)


def bench_reward_and_analyzer(args, gpu: str) -> None:
    from verl_ext.clinical import models
    from verl_ext.editing import EditConfig, edit_reports
    from verl_ext.reward.config import RadiologyRewardConfig
    from verl_ext.reward.scoring import RewardScorer, ScoreRequest
    from verl_ext.testing.scorer_models import build_all

    root = Path(args.fixtures or tempfile.mkdtemp(prefix="bench_gpu_models_"))
    paths, t_build = _timed("cpu", lambda: build_all(root, full_size=not args.small))
    print(f"scorer models ({'tiny' if args.small else 'full-size, random weights'}) under {root}: {t_build:.1f} s",
          flush=True)
    pairs = _workload(args.prompts, args.group)
    cpu_pairs = pairs[: args.cpu_pairs]
    requests = [ScoreRequest(r, g) for r, g in pairs]

    def scorer(device: str) -> RewardScorer:
        models.clear_cache()  # cold: models loaded for this device, empty per-text caches
        cfg = RadiologyRewardConfig.from_any({"models": paths.as_dict(), "device": device})
        s = RewardScorer(cfg)
        s.score_batch([ScoreRequest("heart size is normal.", "lungs are clear.")])  # load outside the timing
        return s

    results = []
    for device, reqs in ((gpu, requests), ("cpu", [ScoreRequest(r, g) for r, g in cpu_pairs])):
        s = scorer(device)
        out, seconds = _timed(device, lambda s=s, reqs=reqs: s.score_batch(reqs))
        results.append((out, seconds, len(reqs)))
    (g_out, g_s, g_n), (c_out, c_s, c_n) = results
    print(f"reward: {len(pairs)} responses (one step of {args.prompts} x {args.group}); CPU on the first {c_n}")
    _row("reward, seconds per pair", (gpu, g_s / g_n, f"({g_n / g_s:.1f} pairs/s)"),
         ("cpu", c_s / c_n, f"({c_n / c_s:.1f} pairs/s)"))
    diff = max(abs(a["reward_score"] - b["reward_score"]) for a, b in zip(g_out[:c_n], c_out))
    comps = [k for k in g_out[0]["reward_extra_info"] if k in ("radgraph_f1", "chexbert_micro_f1_14", "ratescore")]
    per = {k: max(abs(a["reward_extra_info"][k] - b["reward_extra_info"][k]) for a, b in zip(g_out[:c_n], c_out))
           for k in comps}
    print(f"  scores {gpu} vs cpu on {c_n} pairs: max |diff| {diff:.2e} (" +
          ", ".join(f"{k} {v:.1e}" for k, v in per.items()) + ")", flush=True)

    texts = list(dict.fromkeys(t for p in pairs for t in p if t.strip()))
    cpu_texts = texts[: max(8, len(texts) * args.cpu_pairs // max(1, len(pairs)))]
    timings = []
    for device, batch in ((gpu, texts), ("cpu", cpu_texts)):
        models.clear_cache()
        from verl_ext.clinical.rate import RateAnalyzer

        analyzer = RateAnalyzer(str(paths.rate_ner), str(paths.biolord), device=device)
        analyzer.analyze(["heart size is normal."])
        analyses, seconds = _timed(device, lambda a=analyzer, b=batch: a.analyze(b))
        timings.append((analyses, seconds, len(batch)))
    (analyses, a_s, a_n), (_, ac_s, ac_n) = timings
    _row("edit analyzer, seconds per text", (gpu, a_s / a_n, f"({a_n / a_s:.1f} texts/s)"),
         ("cpu", ac_s / ac_n, f"({ac_n / ac_s:.1f} texts/s)"))
    by_text = dict(zip(texts, analyses))
    sources = [(by_text[r], by_text[g]) for r, g in pairs if r.strip()]
    edits, seconds = _timed("cpu", lambda: edit_reports([s for s, _ in sources], [g for _, g in sources], EditConfig(),
                                                        [random.Random(i) for i in range(len(sources))]))
    print(f"  editing rules on {len(sources)} analysed responses: {seconds:.3f} s, "
          f"{sum(e.changed for e in edits)} changed", flush=True)


# ------------------------------------------------------------------------------------------------------------------
# 3: policy step
# ------------------------------------------------------------------------------------------------------------------


def _loss_settings() -> dict:
    import yaml

    cfg = yaml.safe_load((REPO / "verl_ext" / "config" / "editgrpo_trainer.yaml").read_text())
    actor = cfg["actor_rollout_ref"]["actor"]
    return {"clip": float(actor["clip_ratio"]), "agg": actor["loss_agg_mode"],
            "scale": float(cfg["data"]["max_response_length"]),
            "response_length": int(cfg["data"]["max_response_length"])}


def ppo_loss(logp, old_logp, advantages, mask, clip: float, scale: float):
    """verl's vanilla clipped PPO loss aggregated as ``seq-mean-token-sum-norm`` with ``loss_scale_factor``
    (``verl.trainer.ppo.core_algos``: per-sequence token sum / constant, then the mean over sequences)."""
    ratio = torch.exp(logp - old_logp)
    per_token = -torch.minimum(ratio * advantages, torch.clamp(ratio, 1 - clip, 1 + clip) * advantages)
    return ((per_token * mask).sum(-1) / scale).mean()


def _batch(processor_cfg: dict, n_samples: int, n_images: int, image_px: int, prompt_tokens: int,
           response_tokens: int, vocab: int, config, device: str) -> dict:
    """Inputs shaped as the Qwen2.5-VL processor makes them: patches of ``n_images`` images per sample and
    ``<|image_pad|>`` placeholders, mrope position ids from the model's own ``get_rope_index``."""
    patch, merge, tps = processor_cfg["patch_size"], processor_cfg["spatial_merge_size"], processor_cfg["temporal"]
    side = (image_px // (patch * merge)) * merge  # patches per side after the processor's resize
    grid = torch.tensor([[1, side, side]] * (n_samples * n_images), device=device)
    n_patches = int(grid.prod(-1).sum())
    pixel_values = torch.randn(n_patches, 3 * tps * patch * patch, device=device, dtype=torch.bfloat16)
    tokens_per_image = side * side // (merge * merge)
    rows = []
    g = torch.Generator().manual_seed(0)
    for _ in range(n_samples):
        ids = [config.vision_start_token_id]
        for _ in range(n_images):
            ids += [config.image_token_id] * tokens_per_image
            ids += [config.vision_end_token_id, config.vision_start_token_id]
        ids = ids[:-1]
        ids += torch.randint(0, vocab - 1000, (prompt_tokens + response_tokens,), generator=g).tolist()
        rows.append(ids)
    input_ids = torch.tensor(rows, device=device)
    attention = torch.ones_like(input_ids)
    mask = torch.zeros_like(input_ids, dtype=torch.float32)
    mask[:, -response_tokens:] = 1.0
    return {"input_ids": input_ids, "attention_mask": attention, "pixel_values": pixel_values,
            "image_grid_thw": grid, "response_mask": mask, "image_tokens": tokens_per_image * n_images}


def bench_policy(args, gpu: str) -> None:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    settings = _loss_settings()
    dims = TINY if args.small else QWEN25_VL_3B
    response = min(settings["response_length"], args.response_tokens)
    backends = ["sdpa"] + (["flash_attention_2"] if importlib.util.find_spec("flash_attn") and gpu != "cpu" else [])
    results = {}
    for attn in backends:
        torch.manual_seed(0)
        config = Qwen2_5_VLConfig(text_config=dims["text"], vision_config=dims["vision"], attn_implementation=attn,
                                  **dims.get("tokens", {}))
        dtype = torch.bfloat16
        with torch.device(gpu):
            model = Qwen2_5_VLForConditionalGeneration(config).to(dtype)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        n_params = sum(p.numel() for p in model.parameters())
        optim = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.01)
        batch = _batch({"patch_size": 14, "spatial_merge_size": 2, "temporal": 2}, args.samples, args.images,
                       args.image_px, 128, response, config.text_config.vocab_size, config, gpu)
        mm_types = (batch["input_ids"] == config.image_token_id).int()  # 1 = image token, as the processor marks
        position_ids, _ = model.model.get_rope_index(batch["input_ids"], mm_token_type_ids=mm_types,
                                                     image_grid_thw=batch["image_grid_thw"],
                                                     attention_mask=batch["attention_mask"])

        def step():
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        position_ids=position_ids, pixel_values=batch["pixel_values"],
                        image_grid_thw=batch["image_grid_thw"], mm_token_type_ids=mm_types)
            logits = out.logits[:, :-1].float()
            logp = torch.log_softmax(logits, -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
            mask = batch["response_mask"][:, 1:]
            advantages = torch.randn(mask.shape[0], 1, device=gpu).expand_as(mask)
            loss = ppo_loss(logp, logp.detach(), advantages, mask, settings["clip"], settings["scale"])
            loss.backward()
            loss = loss.detach()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            optim.zero_grad(set_to_none=True)
            return loss.item()

        if gpu.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        step()  # warm-up (allocator, kernels, AdamW states)
        times = [_timed(gpu, step)[1] for _ in range(args.steps)]
        peak = torch.cuda.max_memory_allocated() / 1024**3 if gpu.startswith("cuda") else float("nan")
        tokens = batch["input_ids"].numel()
        results[attn] = (min(times), tokens, peak)
        print(f"policy ({n_params / 1e9:.2f} B params, {attn}): {args.samples} samples x "
              f"{batch['input_ids'].shape[1]} tokens ({batch['image_tokens']} image tokens from {args.images} images "
              f"of {args.image_px}px each, {response} response tokens), loss {settings['agg']}/"
              f"{settings['scale']:g}: best of {args.steps} steps {min(times):.2f} s, {tokens / min(times):.0f} "
              f"tokens/s, peak {peak:.1f} GiB", flush=True)
        del model, optim, batch
        if gpu.startswith("cuda"):
            torch.cuda.empty_cache()
    if len(results) == 2:
        (a, _, _), (b, _, _) = results["flash_attention_2"], results["sdpa"]
        _row("policy step", ("flash_attention_2", a, ""), ("sdpa", b, ""))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="tiny models and batches (CPU smoke run)")
    p.add_argument("--device", default=None, help="accelerator (default: cuda if available, else cpu)")
    p.add_argument("--prompts", type=int, default=None, help="prompts per RL step (default 32; --small 2)")
    p.add_argument("--group", type=int, default=None, help="responses per prompt (default 10; --small 4)")
    p.add_argument("--cpu-pairs", type=int, default=None, help="pairs scored on CPU (default 24; --small 4)")
    p.add_argument("--samples", type=int, default=None, help="policy micro-batch (default 2, the config's)")
    p.add_argument("--images", type=int, default=None, help="images per sample (default 2; MIMIC allows 6)")
    p.add_argument("--image-px", type=int, default=None, help="image side in pixels (default 616: ~380k pixels, "
                   "inside the paper's 262,144..401,408 budget; --small 56)")
    p.add_argument("--response-tokens", type=int, default=None, help="response tokens (default 1024; --small 16)")
    p.add_argument("--steps", type=int, default=3, help="timed policy steps (after one warm-up)")
    p.add_argument("--fixtures", default=None, help="directory for (reusable) scorer model fixtures")
    p.add_argument("--budget-s", type=float, default=450.0, help="skip sections that would start after this")
    p.add_argument("--skip", nargs="*", default=[], choices=["reward", "policy"])
    args = p.parse_args(argv)
    small = args.small
    for name, full, tiny in (("prompts", 32, 2), ("group", 10, 4), ("cpu_pairs", 24, 4), ("samples", 2, 1),
                             ("images", 2, 2), ("image_px", 616, 56), ("response_tokens", 1024, 16)):
        if getattr(args, name) is None:
            setattr(args, name, tiny if small else full)
    gpu = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if gpu.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    else:
        print(f"device: cpu only ({os.cpu_count()} cores), torch {torch.__version__}: the 'cuda' column is CPU too")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    for name, fn in (("reward", bench_reward_and_analyzer), ("policy", bench_policy)):
        if name in args.skip:
            continue
        if time.perf_counter() - start > args.budget_s:
            print(f"{name}: skipped, over --budget-s={args.budget_s:g}")
            continue
        fn(args, gpu)
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
