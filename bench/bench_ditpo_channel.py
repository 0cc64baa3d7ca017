"""Per-step cost of gradient-based DiTPO (CheXbert saliency) and of the per-token channel.

    python bench/bench_ditpo_channel.py [--responses 64] [--step 512] [--device cpu] [--tiny] [--batch 32]

Saliency (DEER Eq. 9-11), on a full-size BERT-base CheXbert with random weights (``build_chexbert(full_size=True)``)
and ``--responses`` synthetic ~60-word reports; side by side in one run:

* label      — the CheXbert forward the reward already runs (batched, no grad): the baseline the saliency adds to;
* saliency   — ours: one forward + one backward per micro-batch of ``--batch`` reports;
* per-report — the same saliency with one backward per report (what batching saves).

The per-step number scales to ``--step`` responses (DEER: 64 prompts x 8 rollouts = 512).

Channel (`verl_ext.token_channel`): for ``--step`` trajectories of ~``--tokens`` tokens, the reward-side
``encode`` of the weights, the trainer-side ``read`` (decode + merge + edit mask) and ``stack`` to a padded tensor,
next to verl's own GRPO advantage computation on the same batch (``compute_grpo_outcome_advantage``) for scale.
TransferQueue transfer of the string is not timed here (it rides in ``extra_fields``, which verl stores anyway);
its size is printed.
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np

FINDINGS = ["small left pleural effusion", "mild cardiomegaly", "bibasilar atelectasis", "moderate pulmonary edema",
            "right lower lobe consolidation", "no pneumothorax", "stable sternotomy wires", "lungs are clear",
            "heart size is normal", "no acute cardiopulmonary process", "enteric tube terminates in the stomach"]


def reports(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [". ".join(rng.choice(FINDINGS) for _ in range(rng.randint(8, 12))).capitalize() + "." for _ in range(n)]


def timed(fn, repeat: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_saliency(args) -> None:
    from verl_ext.clinical.chexbert import CheXbertLabeler
    from verl_ext.clinical.chexbert_saliency import chexbert_saliency
    from verl_ext.testing.scorer_models import build_chexbert

    root = Path(args.fixtures or tempfile.mkdtemp(prefix="bench_ditpo_"))
    path = root / ("chexbert_tiny" if args.tiny else "chexbert_full")
    if not (path / "chexbert.pth").exists():
        build_chexbert(path, full_size=not args.tiny)
    labeler = CheXbertLabeler(str(path / "chexbert.pth"), str(path / "bert"), device=args.device,
                              batch_size=args.batch, max_cached_reports=1)
    texts = reports(args.responses)
    targets = [[1, 9, 7]] * len(texts)
    n_tokens = sum(len(labeler.input_ids(t)) for t in texts)

    def label():
        labeler.cache.clear() if hasattr(labeler.cache, "clear") else None
        labeler._classes_uncached(texts)

    t_label = timed(label)
    t_sal = timed(lambda: chexbert_saliency(labeler.m, texts, targets, batch_size=args.batch))
    t_single = timed(lambda: [chexbert_saliency(labeler.m, [t], [g], batch_size=1) for t, g in zip(texts, targets)],
                     repeat=1)
    per = args.step / len(texts)
    print(f"saliency on {len(texts)} reports ({n_tokens / len(texts):.0f} CheXbert tokens each), "
          f"{'tiny' if args.tiny else 'BERT-base'} CheXbert on {args.device}, micro-batch {args.batch}")
    print(f"  {'':12s} {'s / batch':>10s} {'ms / report':>12s} {'s / step of ' + str(args.step):>18s} {'vs label':>9s}")
    for name, t in (("label", t_label), ("saliency", t_sal), ("per-report", t_single)):
        print(f"  {name:12s} {t:10.3f} {1000 * t / len(texts):12.2f} {t * per:18.2f} {t / t_label:8.1f}x")
    print(f"  batching the backward: {t_single / t_sal:.1f}x faster than one backward per report")


def bench_channel(args) -> None:
    import torch
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    from verl_ext import token_channel as tc

    rng = np.random.default_rng(0)
    lengths = rng.integers(args.tokens // 2, args.tokens * 3 // 2, size=args.step)
    weights = [1.0 + rng.random(n).astype(np.float32) for n in lengths]
    edited = [{"is_edited": bool(i % 2), "edit_kept_runs": [[0, int(n) // 2, 0]]} for i, n in enumerate(lengths)]
    infos = []

    def encode():
        infos.clear()
        for w in weights:
            infos.append(tc.put_reward_info({}, tc.Channel().put_array(tc.DITPO_WEIGHT, w)))

    t_encode = timed(encode)
    extras = [dict(e, reward_extra_info=info) for e, info in zip(edited, infos)]
    width = int(lengths.max())
    holder = {}

    def read_stack():
        chans = [tc.read(e, int(n)) for e, n in zip(extras, lengths)]
        holder["w"] = tc.stack(chans, tc.DITPO_WEIGHT, lengths.tolist(), width, 1.0)
        holder["i"] = tc.stack(chans, tc.INSERTED, lengths.tolist(), width, 0.0)

    t_read = timed(read_stack)
    scores = torch.zeros(args.step, width)
    mask = torch.zeros(args.step, width)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
        scores[row, n - 1] = float(rng.random())
    index = np.array([str(i // 8) for i in range(args.step)], dtype=object)
    t_adv = timed(lambda: compute_grpo_outcome_advantage(scores, mask, index))
    size = np.mean([len(i[tc.CHANNEL_KEY]) for i in infos])
    print(f"channel for {args.step} trajectories of ~{args.tokens} tokens (half of them edited)")
    print(f"  reward side, encode weights    {1000 * t_encode:8.1f} ms / step   "
          f"({size / lengths.mean():.2f} bytes per token, {size / 1024:.1f} KiB per trajectory)")
    print(f"  trainer side, read + stack x2  {1000 * t_read:8.1f} ms / step")
    print(f"  verl's GRPO advantage (scale)  {1000 * t_adv:8.1f} ms / step   -> channel = "
          f"{(t_encode + t_read) / t_adv:.1f}x verl's advantage computation")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--responses", type=int, default=64)
    p.add_argument("--step", type=int, default=512, help="responses per RL step (DEER: 64 x 8)")
    p.add_argument("--tokens", type=int, default=120, help="mean policy tokens per response")
    p.add_argument("--batch", type=int, default=32, help="saliency / label micro-batch")
    p.add_argument("--device", default="cpu")
    p.add_argument("--tiny", action="store_true", help="tiny CheXbert (smoke run)")
    p.add_argument("--fixtures", default=None, help="directory to build/reuse the CheXbert fixture in")
    args = p.parse_args()
    bench_saliency(args)
    bench_channel(args)


if __name__ == "__main__":
    main()
