#!/usr/bin/env python
"""EditGRPO on CPU in a few minutes: synthetic chest X-ray studies, a tiny Qwen2.5-VL, verl's own rollout machinery.

    python examples/cpu_demo.py                       # writes ./outputs/cpu_demo (W&B offline run included)
    python examples/cpu_demo.py --steps 6 --out /tmp/cpu_demo

Stages:

1. **Data**: synthetic studies (``verl_ext.testing.synthetic``) become verl RL parquet rows: the paper's App. E
   prompt with the study's views (``verl_ext.data.prompt``), 1-2 rendered images of 56x56 pixels (4 visual tokens
   each), the FINDINGS section as the reference (``reward_model.ground_truth``).
2. **Policy**: a tiny random Qwen2.5-VL (``verl_ext.testing.tiny_qwen``), fine-tuned for ``--sft-steps`` steps on the
   training findings (Hugging Face forward, CPU) so that its reports look like reports.
3. **EditGRPO**, ``--steps`` steps of ``--prompts`` prompts x G = ``--group`` trajectories:
   local Ray + TransferQueue; verl's ``RewardLoopManager`` (``naive`` manager + ``examples/cpu_demo_reward.py``:
   lexicon concept F1); the tiny policy generating through verl's ``LLMServerClient`` and load balancer in front of
   ``verl_ext.rollout.HFGenerationServer``; ``verl_ext.rollout.EditAgentLoopManagerTQ`` with the lexicon analyzer
   (G/2 sampled + G/2 edited per prompt, spliced at token level, scored by the reward loop); verl's
   ``ReplayBuffer``; old log-probs and one update per step with verl's ``ppo_loss`` (``seq-mean-token-sum-norm``)
   in ``verl_ext.rollout.HFActor``; Dr. GRPO advantages by verl's own V1 trainer code
   (``PPOTrainer._compute_advantage``); metrics from verl's ``compute_data_metrics`` plus the project's
   sampled-vs-edited metrics; logging with verl's ``Tracking`` (console + W&B offline).
4. **Report**: sampled vs edited reports with the edits marked (``[-deleted-]``, ``{+inserted+}``), their rewards,
   and the validation reward (verl's plain-sampling validation path) before and after.

Why not ``python -m verl.trainer.main_ppo`` on CPU: verl 0.9.1 cannot place its actor on a CPU. Its V1 trainer
builds the actor's resource pool with ``use_gpu=True`` (``ResourcePoolManager.create_resource_pool``: Ray placement
groups of GPU bundles; on a CPU-only Ray cluster ``_check_resource_available`` raises "Total available GPUs 0 is
less than total desired GPUs"). Declaring fake Ray GPUs only moves the failure: the engine worker initialises
``torch.distributed`` with an NCCL backend for the detected device, which is ``cuda`` on a machine without GPUs
(there is no CPU platform; ``verl.utils.device``), and the FSDP engine, registered only for cuda/npu, calls
``torch.cuda.set_device``. A CPU engine registered through
``EngineRegistry`` would have to be registered under device ``cuda``, replace the process-group setup, and export
weights to a rollout replica registered in ``RolloutReplicaRegistry`` through verl's checkpoint engine — a fork of
verl's worker stack rather than a plug-in. So this demo runs verl's real pieces around the actor and replaces only
the actor (FSDP) and the rollout server (vLLM), exactly as ``tests/integration/test_edit_rollout_cpu.py`` does.
"""
from __future__ import annotations

import argparse
import difflib
import io
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
PIXELS = 56 * 56  # 56x56 images: a 4x4 patch grid, 4 visual tokens after the 2x2 merge


def log(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------------------------
# 1. data
# ----------------------------------------------------------------------------------------------------------------


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def build_data(out: Path, n_patients: int, seed: int) -> dict[str, Path]:
    import pandas as pd

    from verl_ext.data.prompt import ImageSlot, build_prompt
    from verl_ext.data.views import normalize_view, view_class, view_rank
    from verl_ext.testing.synthetic import generate_patients

    rows: dict[str, list] = {"train": [], "eval": []}
    for patient in generate_patients(n_patients, seed=seed):
        for study in patient.studies:
            images = [im for im in study.images if not im.missing and not getattr(im, "corrupt", False)]
            images.sort(key=lambda im: (view_class(normalize_view(im.view)) != "frontal",
                                        view_rank(normalize_view(im.view))))
            images = images[:2]
            if not images or not study.findings:
                continue
            slots = [ImageSlot("current", normalize_view(im.view)) for im in images]
            text = build_prompt(slots, {"indication": study.indication, "technique": study.technique,
                                        "comparison": study.comparison})
            split = "train" if study.split == "train" else "eval"
            rows[split].append({
                "data_source": "synthetic_cxr",
                "prompt": [{"role": "user", "content": text}],
                "images": [{"bytes": _png(im.render(56)), "path": None, "min_pixels": PIXELS, "max_pixels": PIXELS}
                           for im in images],
                "ability": "radiology_report_generation",
                "reward_model": {"style": "model", "ground_truth": study.findings},
                "extra_info": {"index": len(rows[split]), "split": split, "study_id": str(study.study_id)},
            })
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, split_rows in rows.items():
        paths[split] = out / f"{split}.parquet"
        pd.DataFrame(split_rows).to_parquet(paths[split])
    log(f"data: {len(rows['train'])} training and {len(rows['eval'])} evaluation studies -> {out}")
    return paths


# ----------------------------------------------------------------------------------------------------------------
# 2. the tiny policy + SFT
# ----------------------------------------------------------------------------------------------------------------


def supervised_finetune(model_dir: Path, out_dir: Path, dataset, steps: int, batch_size: int, lr: float, seed: int):
    """Teacher-forced next-token training on (prompt + images -> findings <|im_end|>), HF forward on CPU."""
    import shutil

    import torch
    from transformers import AutoModelForImageTextToText

    from verl.utils.tokenizer import hf_processor

    from verl_ext.rollout.hf_server import mm_token_type_ids

    torch.manual_seed(seed)
    processor = hf_processor(str(model_dir))
    tok = processor.tokenizer
    examples = []
    for i in range(len(dataset)):
        row = dataset[i]
        messages = row["raw_prompt"]
        images = [c["image"].convert("RGB") for m in messages for c in m["content"]
                  if isinstance(c, dict) and c.get("type") == "image"]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        enc = processor(text=[text], images=images, return_tensors="pt")
        prompt_ids = enc["input_ids"][0]
        target = tok.encode(row["reward_model"]["ground_truth"], add_special_tokens=False) + [tok.eos_token_id]
        examples.append((prompt_ids, torch.tensor(target), enc["pixel_values"], enc["image_grid_thw"]))

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
        mm_types = torch.cat([mm_token_type_ids(processor, row.tolist()) for row in ids])
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
# 3. EditGRPO
# ----------------------------------------------------------------------------------------------------------------


def compose_config(args, policy: Path, data: dict[str, Path]):
    import verl
    from hydra import compose, initialize_config_dir

    overrides = [
        f"actor_rollout_ref.model.path={policy}",
        "actor_rollout_ref.rollout.name=vllm",  # the name verl's client checks; HFGenerationServer serves it
        f"actor_rollout_ref.rollout.n={args.group}",
        "actor_rollout_ref.rollout.prompt_length=512",
        f"actor_rollout_ref.rollout.response_length={args.response_length}",
        "actor_rollout_ref.rollout.temperature=1.0",
        "actor_rollout_ref.rollout.calculate_log_probs=False",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "actor_rollout_ref.rollout.val_kwargs.temperature=0",
        "actor_rollout_ref.rollout.val_kwargs.n=1",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={args.prompts}",
        "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm",
        f"actor_rollout_ref.actor.loss_scale_factor={args.response_length}",
        f"actor_rollout_ref.actor.optim.lr={args.lr}",
        "actor_rollout_ref.actor.use_kl_loss=False",
        "algorithm.adv_estimator=grpo",
        "algorithm.norm_adv_by_std_in_grpo=False",  # Dr. GRPO
        f"data.train_files={data['train']}",
        f"data.val_files={data['eval']}",
        "data.image_key=images",
        "data.max_prompt_length=512",
        f"data.max_response_length={args.response_length}",
        f"data.train_batch_size={args.prompts}",
        "reward.num_workers=1",
        f"reward.custom_reward_function.path={HERE / 'cpu_demo_reward.py'}",
        "reward.custom_reward_function.name=compute_score",
        "transfer_queue.enable=True",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        "trainer.project_name=editgrpo_cpu_demo",
        f"trainer.experiment_name=tiny_qwen25vl_{args.scheme}",
        "+actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.rollout.EditAgentLoopManagerTQ",
        f"+editgrpo.scheme={args.scheme}",
        "+editgrpo.analyzer=lexicon",
        "+editgrpo.device=cpu",
        "+editgrpo.analyzer_options.cpu_threads=1",
        f"+editgrpo.max_ops={args.max_ops}",
        f"+editgrpo.seed={args.seed}",
    ]
    with initialize_config_dir(config_dir=os.path.join(os.path.dirname(verl.__file__), "trainer/config"),
                               version_base=None):
        return compose("ppo_trainer", overrides=overrides)


class Rollout:
    """Submits prompts to the agent-loop manager and collects the finished groups, like verl's V1 trainer."""

    def __init__(self, config, manager, dataset):
        from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

        self.config, self.manager, self.dataset = config, manager, dataset
        self.buffer = ReplayBuffer("sync", {}, None, "drop", {}, poll_interval=0.2, refill_fn=lambda n: None,
                                   train_batch_size=1, gen_batch_size=1)

    def run(self, indices, step: int, validate: bool):
        import numpy as np
        import transfer_queue as tq

        from verl.utils import tensordict_utils as tu
        from verl.utils.dataset.rl_dataset import collate_fn

        partition = "val" if validate else "train"
        batch_dict = collate_fn([self.dataset[i] for i in indices])
        batch_dict["uid"] = np.array([str(uuid.uuid4()) for _ in indices], dtype=object)
        batch = tu.get_tensordict(batch_dict)
        tu.assign_non_tensor_data(batch, "global_steps", step)
        if validate:
            tu.assign_non_tensor_data(batch, "validate", True)
        tq.kv_batch_put(keys=list(batch["uid"]), partition_id=partition,
                        tags=[{"is_prompt": True, "status": "pending", "global_steps": step}] * len(indices))
        self.manager.generate_sequences(batch)
        meta, _ = self.buffer.sample(global_steps=step, partition_id=partition, batch_size=len(indices))
        return meta


def fetch_rows(meta, tokenizer) -> list[dict]:
    import transfer_queue as tq

    data = tq.kv_batch_get(keys=list(meta.keys), partition_id=meta.partition_id,
                           select_fields=["responses", "rm_scores", "extra_fields", "reward_model"])
    rows = []
    extras, refs = list(data["extra_fields"]), list(data["reward_model"])
    for i, key in enumerate(meta.keys):
        uid, session, _ = key.rsplit("_", 2)
        ids = data["responses"][i].tolist()
        rows.append({
            "key": key, "uid": uid, "session": int(session), "extra": extras[i],
            "text": tokenizer.decode(ids, skip_special_tokens=True),
            "reward": float(data["rm_scores"][i].sum()), "reference": refs[i]["ground_truth"],
        })
    return rows


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


def edit_table(rows: list[dict], max_groups: int = 2, width: int = 110) -> str:
    import textwrap

    lines = []
    groups = list(dict.fromkeys(r["uid"] for r in rows))[:max_groups]
    for g, uid in enumerate(groups, 1):
        group = sorted((r for r in rows if r["uid"] == uid), key=lambda r: r["session"])
        lines.append(f"--- prompt {g}: reference ---")
        lines += textwrap.wrap(group[0]["reference"], width, initial_indent="    ", subsequent_indent="    ")
        for r in group:
            ex = r["extra"]
            if ex.get("is_edited"):
                src = next(s for s in group if s["session"] == ex["edit_source_session"])
                head = (f"  [{r['session']}] EDITED copy of [{src['session']}]  ops={','.join(ex['edit_ops'])}  "
                        f"reward {src['reward']:.3f} -> {r['reward']:.3f}  "
                        f"(kept {ex['edit_tokens_kept']} sampled tokens, inserted {ex['edit_tokens_inserted']})")
                body = mark_edit(src["text"], r["text"])
            else:
                head = f"  [{r['session']}] sampled  reward {r['reward']:.3f}"
                body = r["text"] or "<empty>"
            lines.append(head)
            lines += textwrap.wrap(body, width, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


def step_metrics(meta, config, rows) -> dict:
    """verl's compute_data_metrics (what the V1 trainer logs) + the project's sampled-vs-edited metrics."""
    import numpy as np
    import transfer_queue as tq

    from verl.protocol import DataProto
    from verl.trainer.ppo.metric_utils import compute_data_metrics

    from verl_ext.trainer.editgrpo_trainer import fetch_edit_records
    from verl_ext.trainer.edit_metrics import compute_edit_metrics

    data = tq.kv_batch_get(keys=list(meta.keys), partition_id=meta.partition_id,
                           select_fields=["prompts", "responses", "response_mask", "advantages", "rm_scores"])
    prompt_len = data["prompts"].offsets().diff().float()
    response_len = data["responses"].offsets().diff().float()
    padded = data.to_padded_tensor()
    padded["token_level_scores"] = padded["rm_scores"]
    padded["token_level_rewards"] = padded["rm_scores"]
    padded["returns"] = padded["advantages"]
    padded["prompt_length"] = prompt_len
    padded["response_length"] = response_len
    batch = DataProto(batch=padded, meta_info={})
    batch.non_tensor_batch["__num_turns__"] = np.full(len(meta.keys), 2, dtype=np.int32)
    metrics = compute_data_metrics(batch, use_critic=False)
    records, advantages = fetch_edit_records(list(meta.keys), meta.partition_id, list(meta.tags))
    metrics.update(compute_edit_metrics(records, advantages))
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.floating, np.integer))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="outputs/cpu_demo", help="output directory (data, models, W&B offline run)")
    p.add_argument("--steps", type=int, default=4, help="EditGRPO steps")
    p.add_argument("--prompts", type=int, default=4, help="prompts per step")
    p.add_argument("--group", type=int, default=4, help="G = rollout.n: G/2 sampled + G/2 edited per prompt")
    p.add_argument("--scheme", default="paper", choices=["paper", "overwrite", "none"], help="editgrpo.scheme")
    p.add_argument("--max-ops", type=int, default=1, help="editgrpo.max_ops")
    p.add_argument("--response-length", type=int, default=160)
    p.add_argument("--lr", type=float, default=2e-4, help="RL learning rate (tiny model)")
    p.add_argument("--patients", type=int, default=60, help="synthetic patients (1-4 studies each)")
    p.add_argument("--sft-steps", type=int, default=300)
    p.add_argument("--sft-batch", type=int, default=8)
    p.add_argument("--sft-lr", type=float, default=3e-3)
    p.add_argument("--eval-prompts", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per process (1 is fastest for this tiny model, and avoids OpenMP contention)")
    args = p.parse_args(argv)

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.update({"WANDB_MODE": "offline", "WANDB_DIR": str(out)})  # the demo's W&B run is always offline
    for key, value in {"WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                       "HF_HOME": str(out / "hf_home"), "TOKENIZERS_PARALLELISM": "false",
                       "RAY_DEDUP_LOGS": "0", "VERL_LOGGING_LEVEL": "WARN"}.items():
        os.environ.setdefault(key, value)
    t0 = time.time()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)

    # 1. data
    data = build_data(out / "data", args.patients, args.seed)

    # 2. policy
    from omegaconf import OmegaConf

    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.tokenizer import hf_processor, hf_tokenizer

    from verl_ext.testing.tiny_qwen import build_tiny_qwen25_vl

    init_dir = build_tiny_qwen25_vl(out / "policy_init", seed=args.seed)
    tokenizer, processor = hf_tokenizer(str(init_dir)), hf_processor(str(init_dir))
    data_cfg = OmegaConf.create({"image_key": "images", "max_prompt_length": 512, "filter_overlong_prompts": False,
                                 "cache_dir": str(out / "cache")})
    sft_set = RLHFDataset(str(data["train"]), tokenizer, data_cfg, processor)
    policy = supervised_finetune(init_dir, out / "policy_sft", sft_set, args.sft_steps, args.sft_batch,
                                 args.sft_lr, args.seed)
    log(f"policy ready ({time.time() - t0:.0f} s)")

    # 3. EditGRPO with verl's pieces
    import ray
    import transfer_queue as tq
    from transformers import AutoModelForImageTextToText

    from verl.experimental.reward_loop.reward_loop import RewardLoopManager
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer
    from verl.utils.config import omega_conf_to_dataclass
    from verl.utils.import_utils import load_class_from_fqn
    from verl.utils.tracking import Tracking

    from verl_ext.rollout.hf_actor import HFActor
    from verl_ext.rollout.hf_server import launch_hf_servers, make_llm_client

    config = compose_config(args, policy, data)
    env = {k: os.environ[k] for k in ("WANDB_MODE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE",
                                      "HF_HOME", "TOKENIZERS_PARALLELISM", "VERL_LOGGING_LEVEL")}
    env.update({"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)})
    ray.init(num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env})
    tracking = None
    try:
        tq.init(config.transfer_queue)
        reward_loop = RewardLoopManager(config=config)
        servers = launch_hf_servers(str(policy), config.actor_rollout_ref.rollout, num_threads=args.threads,
                                    seed=args.seed)
        manager_cls = load_class_from_fqn(config.actor_rollout_ref.rollout.agent.agent_loop_manager_class,
                                          "AgentLoopManager")
        manager = manager_cls.create(config=config, llm_client=make_llm_client(config, servers), teacher_client=None,
                                     reward_loop_worker_handles=reward_loop.reward_loop_worker_handles)
        train_set = RLHFDataset(str(data["train"]), tokenizer, config.data, processor)
        eval_set = RLHFDataset(str(data["eval"]), tokenizer, config.data, processor)
        train_rollout, eval_rollout = Rollout(config, manager, train_set), Rollout(config, manager, eval_set)
        model = AutoModelForImageTextToText.from_pretrained(str(policy))
        model.eval()
        actor = HFActor(model, omega_conf_to_dataclass(config.actor_rollout_ref.actor),
                        temperature=config.actor_rollout_ref.rollout.temperature)
        advantage_owner = SimpleNamespace(config=config)  # verl's PPOTrainer._compute_advantage reads only .config
        tracking = Tracking(config.trainer.project_name, config.trainer.experiment_name, ["console", "wandb"],
                            config=OmegaConf.to_container(config, resolve=True))
        log(f"Ray, TransferQueue, reward loop, rollout server and edit workers up ({time.time() - t0:.0f} s)")

        eval_idx = list(range(min(args.eval_prompts, len(eval_set))))

        def evaluate(step: int) -> float:
            meta = eval_rollout.run(eval_idx, step, validate=True)
            rows = fetch_rows(meta, tokenizer)
            tq.kv_clear(keys=list(meta.keys), partition_id="val")
            return float(np.mean([r["reward"] for r in rows]))

        before = evaluate(0)
        log(f"validation reward before EditGRPO: {before:.3f} ({len(eval_idx)} held-out studies, greedy)")

        order = list(range(len(train_set)))
        random.Random(args.seed).shuffle(order)
        tables, history = [], []
        for step in range(1, args.steps + 1):
            ts = time.time()
            idx = [order[(step - 1) * args.prompts + k] % len(order) for k in range(args.prompts)]
            meta = train_rollout.run(idx, step, validate=False)
            keys = list(meta.keys)
            t_gen = time.time() - ts
            actor.compute_old_log_probs(keys)
            metrics = {}
            PPOTrainer._compute_advantage(advantage_owner, meta, metrics)
            metrics.update(actor.update(keys))
            rows = fetch_rows(meta, tokenizer)
            metrics.update(step_metrics(meta, config, rows))
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            ray.get([h.set_weights.remote(state, step) for h in servers.values()])  # weight sync
            metrics.update({"timing_s/gen": t_gen, "timing_s/step": time.time() - ts})
            tracking.log(data=metrics, step=step)
            history.append(metrics)
            if step in (1, args.steps):
                tables.append((step, edit_table(rows)))
            tq.kv_clear(keys=keys, partition_id="train")
        after = evaluate(args.steps + 1)
        tracking.log(data={"val/reward_before": before, "val/reward_after": after}, step=args.steps + 1)

        print("\n" + "=" * 118)
        for step, table in tables:
            print(f"STEP {step}: sampled vs edited reports (edits marked [-deleted-] {{+inserted+}})")
            print(table)
            print("-" * 118)
        print("step  reward(sampled)  reward(edited)  edit gain  edited share  pg_loss")
        for i, m in enumerate(history, 1):
            nan = float("nan")
            print(f"{i:4d}  {m.get('sampled/score/mean', nan):15.3f}  {m.get('edited/score/mean', nan):14.3f}  "
                  f"{m.get('edit/reward_gap/mean', nan):9.3f}  {m.get('edit/edited_share', 0.0):12.2f}  "
                  f"{m.get('actor/pg_loss', nan):8.4f}")
        print(f"validation reward (greedy, {len(eval_idx)} held-out studies): before {before:.3f} -> after {after:.3f}")
        print(f"(a tiny model and {args.steps} steps: the numbers show the mechanics, not a result)")
        wandb_dirs = sorted((out / "wandb").glob("offline-run-*"))
        print(f"W&B offline run: {wandb_dirs[-1] if wandb_dirs else out / 'wandb'}  (sync later: wandb sync <dir>)")
        print(f"total {time.time() - t0:.0f} s")
        summary = {"reward_before": before, "reward_after": after, "steps": history}
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    finally:
        if tracking is not None:
            tracking.finish()
        tq.close()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
