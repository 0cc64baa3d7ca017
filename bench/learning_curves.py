#!/usr/bin/env python
"""Does it learn? Learning curves of GRPO, Dr. GRPO, EditGRPO and its variants on a controlled rare-finding task,
each a run of verl's own trainer (``python -m verl.trainer.main_ppo``) in the CPU debug profile.

    python bench/learning_curves.py --quick --out /tmp/curves     # 13 min on 2 cores (measured)
    python bench/learning_curves.py --out /tmp/curves             # the full mode (57 min measured)

The claim under test (EditGRPO paper, Sec. 1-2): when the clinically right sentence is unlikely under the SFT policy
(a rare finding), sampled-only GRPO rarely sees it in its G samples and so rarely learns it, while sentence edits
insert it from the reference, so EditGRPO learns it in fewer steps.

Task (built so that this is true by construction):

* **Data.** Synthetic IU-Xray studies (``verl_ext.testing.synthetic``: two views, findings from templates) converted
  by the project's ``data_prep`` IU-Xray converter, as a user's data would be. The rare finding (a pleural effusion)
  is present in **every** study: the renderer draws it in both views of every image pair, and every reference
  states it. The other findings follow the generator's prevalences.
* **Imbalanced warm-up.** The SFT targets drop the effusion sentence from all but ``--sft-rare-share`` of the
  training studies, so the warm-up policy mentions it in about that share of its samples (measured: the step-0
  held-out recall). The RL reward is computed against the full, correct reference.
* **Why constant presence.** A random tiny vision tower at 56x56 pixels does not learn to *see* an effusion in a few
  minutes of warm-up; if presence varied, a variant could only gain by guessing, and the benchmark would mix the
  exploration question (the paper's) with a perception question that this model cannot answer. With the finding
  always present, what has to be learnt is only to *say* it, which is exactly the exploration problem.
* **``--sft-conflict``** (the CI guard's task, ``tests/integration/test_learning_curves_cpu.py``): every reference
  also states a pneumothorax as absent and every SFT target states it as present, so the warm-up policy contradicts
  every reference on it, and the paper's first edit rule (replace a conflicting sentence with the reference's) fixes
  it in every group: a strong, fast signal, for telling an objective that learns from one that does nothing.
* **Reward.** The CPU demo's model-free lexicon concept F1 (``bench/learning_curves_reward.py``), which also logs
  whether the response states the rare fact (``rare_hit``) so its recall comes from verl's validation dumps.
* **Runs.** Same data, same SFT start, same step budget, same seeds; held-out validation (sampled, ``--val-n``
  samples per study at temperature 1, so that a probability of 0.1 shows as a recall of about 0.1 rather than 0 under
  greedy decoding) before training and every ``--test-freq`` steps.

Outputs (``--out DIR``): ``DIR/curves.png`` (held-out reward and rare-finding recall vs step, mean and min-max range
over seeds, one line per variant), ``DIR/summary.json`` (per variant, at step 0 and the last step: mean and per-seed
values; plus each run's edit statistics from its metrics) and a Markdown table on stdout. Every number comes from
the trainer's own logs: ``metrics.jsonl`` (verl's file logger) and the validation generations dump.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing

REWARD_FILE = HERE / "learning_curves_reward.py"

_NO_EDIT = ("actor_rollout_ref.rollout.agent.agent_loop_manager_class=null", "editgrpo.scheme=none")
_EDIT = ("actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.rollout.EditAgentLoopManagerTQ",
         "editgrpo.scheme=paper", "editgrpo.level=sentence")
#: The recipes' variant overrides (recipes/iu_xray_<variant>.sh; DiTPO: recipes/common.sh deer_rl_args with
#: weighting tfidf and alpha 4, DEER Sec. 4), minus their dataset/model/reward/batch settings.
VARIANTS: dict[str, tuple[str, ...]] = {
    "grpo": (*_NO_EDIT, "algorithm.adv_estimator=grpo", "algorithm.norm_adv_by_std_in_grpo=true",
             "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean"),
    "drgrpo": (*_NO_EDIT, "algorithm.adv_estimator=dr_grpo",
               "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm"),
    "editgrpo": (*_EDIT, "algorithm.adv_estimator=dr_grpo",
                 "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm"),
    "editgrpo_norm": (*_EDIT, "algorithm.adv_estimator=grpo", "algorithm.norm_adv_by_std_in_grpo=true",
                      "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm"),
    "ditpo_rule": (*_NO_EDIT, "algorithm.adv_estimator=grpo", "algorithm.norm_adv_by_std_in_grpo=true",
                   "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean", "ditpo.weighting=tfidf",
                   "ditpo.alpha=4.0"),
}
#: Diagnostic, not a paper variant: EditGRPO with up to 4 edit operations per response instead of the authors' 1, to
#: test whether the rules' priority (conflicts and false positives before missing findings) starves the rare finding.
VARIANTS["editgrpo_ops4"] = (*VARIANTS["editgrpo"], "editgrpo.max_ops=4")
#: OraPO (recipes/orapo_settings.bash) at the same group size: G - 1 sampled rollouts + the reference as the oracle.
#: Not a default: see README "Does it learn?" for why it does not fit this comparison.
VARIANTS["orapo"] = ("actor_rollout_ref.rollout.agent.agent_loop_manager_class="
                     "verl_ext.rollout.oracle_worker.OraPOAgentLoopManagerTQ", "trainer.v1.trainer_mode=orapo",
                     "editgrpo.scheme=none", "algorithm.adv_estimator=dr_grpo",
                     "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm", "+orapo.negatives=zero_reward")
DEFAULT_VARIANTS = ("grpo", "drgrpo", "editgrpo", "editgrpo_norm", "ditpo_rule")
LABELS = {"grpo": "GRPO", "drgrpo": "Dr. GRPO", "editgrpo": "EditGRPO (paper)", "editgrpo_norm": "EditGRPO_norm",
          "ditpo_rule": "DiTPO (rule, tfidf)", "editgrpo_ops4": "EditGRPO, max_ops=4 (diagnostic)", "orapo": "OraPO"}
RARE_CONDITION = "pleural_effusion"
#: ``--sft-conflict``: a finding every reference states as absent, which every SFT target states as present.
CONFLICT_CONDITION = "pneumothorax"


def log(msg: str) -> None:
    print(f"[curves {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _cpu_demo():
    """examples/cpu_demo.py as a module: its SFT warm-up is the one the CPU demo uses."""
    spec = importlib.util.spec_from_file_location("cpu_demo", REPO / "examples" / "cpu_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------------------------------
# task
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    inputs: object  # verl_ext.testing.cpu_run.RunInputs (train/val shards, SFT policy, scorer models)
    sft_files: list[str]
    sft_rare_targets: int
    sft_targets: int


def _generator_sentences(table: str, condition: str, side: str) -> list[str]:
    """The synthetic generator's sentences of `table` (``_POSITIVE`` or ``_NEGATIVE``) for `condition` on `side`."""
    from verl_ext.testing import synthetic

    other = "left" if side == "right" else "right"
    return [s.format(side=side, other=other) for s in getattr(synthetic, table)[condition]]


def rare_sentences(side: str) -> list[str]:
    """Every sentence the synthetic generator writes for a present effusion on `side`."""
    return _generator_sentences("_POSITIVE", RARE_CONDITION, side)


def conflict_sentences(side: str) -> tuple[list[str], list[str]]:
    """The generator's sentences for `CONFLICT_CONDITION`: (stated absent, stated present on `side`)."""
    return (_generator_sentences("_NEGATIVE", CONFLICT_CONDITION, side),
            _generator_sentences("_POSITIVE", CONFLICT_CONDITION, side))


def make_patients(n: int, seed: int, conflict: bool = False):
    """Synthetic patients (one PA + lateral study each) whose studies all have the rare finding (and, with
    `conflict`, all state `CONFLICT_CONDITION` as absent), drawn and written by the generator's own `make_study`
    (images and findings follow the labels)."""
    from verl_ext.testing import synthetic

    patients = synthetic.generate_patients(n, seed=seed, max_studies=1, views=["PA", "LATERAL"],
                                           splits={"train": 0.85, "validate": 0.0, "test": 0.15})
    for p in patients:
        st = p.studies[0]
        labels = {**st.labels, RARE_CONDITION: 1, **({CONFLICT_CONDITION: 0} if conflict else {})}
        p.studies[0] = synthetic.make_study(
            study_id=st.study_id, patient_id=st.patient_id, split=st.split, date=st.date, time=st.time,
            views=["PA", "LATERAL"], labels=labels, seed=seed, sex="man" if p.sex == "M" else "woman",
            side=st.images[0].side, rng=random.Random(synthetic._seed(seed, "learning_curves", st.study_id)))
    return patients


def write_sft_files(train_files: list[str], out: Path, rare_share: float, seed: int,
                    conflict: bool = False) -> tuple[list[str], int, int]:
    """Copies of the training shards whose targets keep the rare sentence in `rare_share` of the studies only; with
    `conflict`, every target also states `CONFLICT_CONDITION` as present where its reference states it absent."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    rare = {side: rare_sentences(side) for side in ("right", "left")}
    files, kept, total = [], 0, 0
    for path in train_files:
        rows = pq.read_table(path).to_pylist()
        for row in rows:
            text = row["reward_model"]["ground_truth"]
            found = [(side, s) for side, sentences in rare.items() for s in sentences if s in text]
            if len(found) != 1:
                raise ValueError(f"{path}: a training target without exactly one rare sentence: {text!r}")
            (side, sentence), = found
            total += 1
            if conflict:
                absent, present = conflict_sentences(side)
                stated = [s for s in absent if s in text]
                if len(stated) != 1:
                    raise ValueError(f"{path}: a training target without exactly one {CONFLICT_CONDITION} negation: "
                                     f"{text!r}")
                text = text.replace(stated[0], present[0])
            if rng.random() < rare_share:
                kept += 1
            else:
                text = " ".join(text.replace(sentence, "").split())
            row["reward_model"] = {**row["reward_model"], "ground_truth": text}
        target = out / Path(path).name
        pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(path)), target)
        files.append(str(target))
    return files, kept, total


def build_task(root: Path, args) -> Task:
    """Data (converted by data_prep), scorer fixtures, and the SFT policy warmed up on the imbalanced targets."""
    from verl_ext.data.cli import main as data_prep
    from verl_ext.data.output import split_files
    from verl_ext.testing import synthetic
    from verl_ext.testing.cpu_run import PIXELS, RunInputs
    from verl_ext.testing.scorer_models import build_all
    from verl_ext.testing.tiny_qwen import build_tiny_qwen25_vl

    data = root / "data" / "iu_xray"
    if not split_files(data, "train"):
        source = synthetic.write_iu_xray(root / "iu_xray_src", make_patients(args.patients, args.data_seed,
                                                                             args.sft_conflict),
                                         seed=args.data_seed, edge_cases=False)
        data_prep("iu_xray", ["--root", str(source.root), "--out", str(data), "--no-progress",
                              "--min-pixels", str(PIXELS), "--max-pixels", str(PIXELS)])
    train_files, val_files = split_files(data, "train"), split_files(data, "test")
    sft_files, kept, total = write_sft_files(train_files, root / "data" / "sft", args.sft_rare_share, args.data_seed,
                                             args.sft_conflict)
    log(f"task: {total} training studies ({kept} SFT targets keep the rare sentence), "
        f"{sum(1 for _ in _rows(val_files))} held-out studies; every study has the rare finding")
    init_dir = root / "policy_init"
    if not (init_dir / "model.safetensors").exists():
        build_tiny_qwen25_vl(init_dir, seed=args.data_seed)
    demo = _cpu_demo()
    policy = demo.supervised_finetune(init_dir, root / "policy_sft", sft_files, args.sft_steps, args.sft_batch,
                                      args.sft_lr, args.data_seed)
    scorers = build_all(root / "scorers").as_dict()
    return Task(RunInputs(train_files, val_files, Path(policy), scorers), sft_files, kept, total)


def _rows(files: list[str]):
    import pyarrow.parquet as pq

    for f in files:
        yield from pq.read_table(f).to_pylist()


# ----------------------------------------------------------------------------------------------------------------
# runs
# ----------------------------------------------------------------------------------------------------------------


def run_command(task: Task, variant: str, seed: int, out: Path, args) -> list[str]:
    """verl's main_ppo in the CPU profile (`verl_ext.testing.cpu_run.main_ppo_command`) with the variant's recipe
    overrides, the bench reward and sampled held-out validation."""
    from verl_ext.testing.cpu_run import main_ppo_command

    extra = (
        "reward.reward_manager.name=naive",
        f"reward.custom_reward_function.path={REWARD_FILE}",
        "reward.custom_reward_function.name=compute_score",
        *VARIANTS[variant],
        f"editgrpo.seed={seed}",
        f"data.seed={seed}",
        f"actor_rollout_ref.rollout.seed={seed}",
        f"actor_rollout_ref.actor.loss_scale_factor={args.response_length}",
        f"actor_rollout_ref.rollout.val_kwargs.n={args.val_n if args.val_temperature > 0 else 1}",
        f"actor_rollout_ref.rollout.val_kwargs.temperature={args.val_temperature}",
        f"actor_rollout_ref.rollout.val_kwargs.do_sample={args.val_temperature > 0}",
        f"trainer.validation_data_dir={out / 'validation'}",
        "trainer.logger=[console,file]",
        f"trainer.total_epochs={args.steps}",
        *args.override,
    )
    cmd = main_ppo_command(task.inputs, out, steps=args.steps, prompts=args.prompts, group=args.group,
                           response_length=args.response_length, save_freq=-1, test_freq=args.test_freq,
                           val_before_train=True, lr=args.lr, experiment=f"{variant}_s{seed}", analyzer="lexicon",
                           extra=())
    # A later setting replaces an earlier one of the same key (Hydra rejects a key given twice): main_ppo_command's
    # logger/val settings, then the variant's, then --override.
    final = {}
    for c in [*cmd, *extra]:
        key = c.split("=", 1)[0] if "=" in c else c
        final.pop(key, None)
        final[key] = c
    return list(final.values())


def run_one(task: Task, variant: str, seed: int, out: Path, args) -> Path:
    from verl_ext.testing.cpu_run import run_env

    if (out / "DONE").exists():
        log(f"{variant} seed {seed}: reusing {out}")
        return out
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("metrics.jsonl",):
        (out / stale).unlink(missing_ok=True)
    cmd = run_command(task, variant, seed, out, args)
    env = run_env(out, threads=args.threads)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    start = time.time()
    with open(out / "train.log", "w") as logfile:
        proc = subprocess.Popen(cmd, env=env, cwd=out, stdout=logfile, stderr=subprocess.STDOUT, text=True)
        code = proc.wait()
    if code != 0:
        tail = (out / "train.log").read_text().splitlines()[-40:]
        raise SystemExit(f"{variant} seed {seed}: verl's trainer failed (exit {code}); last lines of "
                         f"{out / 'train.log'}:\n" + "\n".join(tail))
    (out / "DONE").write_text(f"{time.time() - start:.0f}\n")
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def validation_points(run: Path) -> dict[int, dict[str, float]]:
    """step -> held-out reward, rare-finding recall and the share of responses contradicting their reference, from
    verl's validation dumps (``<step>.jsonl``: one row per generated sample with its score and the reward's extra
    fields)."""
    points = {}
    for path in sorted((run / "validation").glob("*.jsonl")):
        rows = read_jsonl(path)
        in_ref = sum(r["rare_in_ref"] for r in rows)
        points[int(path.stem)] = {"reward": statistics.fmean(r["score"] for r in rows),
                                  "recall": sum(r["rare_hit"] for r in rows) / in_ref if in_ref else float("nan"),
                                  "contradicting": statistics.fmean(r["contradicts"] for r in rows),
                                  "samples": len(rows)}
    return points


def train_stats(run: Path) -> dict[str, float]:
    """Means over the training steps of what verl logged about the edits and the rollouts (metrics.jsonl)."""
    rows = [r["data"] for r in read_jsonl(run / "metrics.jsonl") if r.get("step", 0) >= 1]
    keys = ("critic/score/mean", "edit/edited_share", "edited/reward/mean", "sampled/reward/mean",
            "edit/reward_gap/mean", "edit/tokens_inserted/mean", "actor/pg_loss")
    out = {}
    for k in keys:
        values = [r[k] for r in rows if k in r]
        if values:
            out[k] = statistics.fmean(values)
    return out


def rare_exposure(run: Path) -> dict[str, float]:
    """How often training groups carried the rare sentence, and with what advantage (the exploration claim).

    Reads verl's training rollout dumps (``rollouts/<step>.jsonl``: response, reference, reward, ``uid``) and, for
    edit runs, the trainer's edit records (``rollouts/edits_<step>.jsonl``: which trajectories are edited copies and
    which edit operations made them). A trajectory *carries* the rare fact when the bench reward's lexicon analysis
    finds it in the response (the same test as ``rare_hit``); its advantage is shown as reward minus the group mean
    (Dr. GRPO's; GRPO divides it by the group's std, which keeps the sign)."""
    import collections

    reward = _reward_module()
    steps = sorted(int(p.stem) for p in (run / "rollouts").glob("[0-9]*.jsonl"))
    carried = {"sampled": [], "edited": []}
    advantages = {"sampled": [], "edited": []}
    ops: collections.Counter = collections.Counter()
    inserted_rare = 0
    edited_total = 0
    for step in steps:
        rows = read_jsonl(run / "rollouts" / f"{step}.jsonl")
        edited = {}
        edit_path = run / "rollouts" / f"edits_{step}.jsonl"
        if edit_path.exists():
            for e in read_jsonl(edit_path):
                edited[f"{e['uid']}_{e['session']}"] = e
        groups: dict[str, list[float]] = collections.defaultdict(list)
        for r in rows:
            groups[r["uid"].rsplit("_", 2)[0]].append(r["score"])
        counts = {"sampled": 0, "edited": 0}
        for r in rows:
            group, session, _ = r["uid"].rsplit("_", 2)
            record = edited.get(f"{group}_{session}")
            kind = "edited" if record and record["is_edited"] else "sampled"
            if not reward.compute_score("bench", r["output"], r["gts"])["rare_hit"]:
                continue
            counts[kind] += 1
            advantages[kind].append(r["score"] - statistics.fmean(groups[group]))
        for kind in counts:
            carried[kind].append(counts[kind])
        for key, e in edited.items():
            if not e["is_edited"]:
                continue
            edited_total += 1
            ops.update(e["edit_ops"])
            source = edited.get(f"{e['uid']}_{e['edit_source_session']}")
            if e["reward_extra_info"].get("rare_hit") and source and not source["reward_extra_info"].get("rare_hit"):
                inserted_rare += 1
    out = {f"rare_{k}_per_step": statistics.fmean(v) if v else 0.0 for k, v in carried.items()}
    for kind, values in advantages.items():
        if values:
            out[f"rare_{kind}_advantage_mean"] = statistics.fmean(values)
            out[f"rare_{kind}_positive_share"] = sum(v > 0 for v in values) / len(values)
    if edited_total:
        out["edits"] = edited_total
        out["edits_inserting_rare_share"] = inserted_rare / edited_total
        out["edit_ops_share"] = {op: n / edited_total for op, n in ops.most_common()}
    return out


@functools.lru_cache(maxsize=1)
def _reward_module():
    spec = importlib.util.spec_from_file_location("learning_curves_reward", REWARD_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------------------------------------------


def summarise(runs: dict[str, dict[int, Path]]) -> dict:
    summary = {}
    for variant, by_seed in runs.items():
        curves = {seed: validation_points(run) for seed, run in by_seed.items()}
        steps = sorted(set.intersection(*(set(c) for c in curves.values())))
        entry = {"seeds": sorted(by_seed), "steps": steps, "curves": {}, "train": {}}
        for metric in ("reward", "recall"):
            entry["curves"][metric] = {
                str(s): {"mean": statistics.fmean(curves[k][s][metric] for k in curves),
                         "min": min(curves[k][s][metric] for k in curves),
                         "max": max(curves[k][s][metric] for k in curves),
                         "per_seed": [curves[k][s][metric] for k in sorted(curves)]} for s in steps}
            for label, s in (("start", steps[0]), ("end", steps[-1])):
                entry[f"{metric}_{label}"] = entry["curves"][metric][str(s)]
        entry["train"] = {str(seed): {**train_stats(run), **rare_exposure(run)} for seed, run in by_seed.items()}
        summary[variant] = entry
    return summary


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for variant, entry in summary.items():
        steps = entry["steps"]
        for ax, metric in zip(axes, ("reward", "recall")):
            c = entry["curves"][metric]
            mean = [c[str(s)]["mean"] for s in steps]
            line, = ax.plot(steps, mean, marker="o", ms=3, label=LABELS.get(variant, variant))
            ax.fill_between(steps, [c[str(s)]["min"] for s in steps], [c[str(s)]["max"] for s in steps],
                            color=line.get_color(), alpha=0.15, linewidth=0)
    n_seeds = max(len(e["seeds"]) for e in summary.values())
    axes[0].set(xlabel="training step", ylabel="held-out reward (concept F1)",
                title=f"Held-out reward (mean, min-max over {n_seeds} seed{'s' if n_seeds > 1 else ''})")
    top = max(c["max"] for e in summary.values() for c in e["curves"]["recall"].values())
    axes[1].set(xlabel="training step", ylabel="recall of the rare finding", ylim=(0, min(1.0, max(0.3, top + 0.05))),
                title="Rare finding (effusion) recall")
    axes[1].legend(fontsize=8, loc="best")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def markdown_table(summary: dict) -> str:
    def cell(entry: dict) -> str:
        return f"{entry['mean']:.3f} [{entry['min']:.3f}, {entry['max']:.3f}]"

    lines = ["| variant | seeds | reward step 0 | reward last step | rare recall step 0 | rare recall last step "
             "| edited share | edit reward gain |",
             "|---|---|---|---|---|---|---|---|"]
    for variant, e in summary.items():
        train = list(e["train"].values())
        share = [t.get("edit/edited_share", 0.0) for t in train]
        gain = [t["edit/reward_gap/mean"] for t in train if "edit/reward_gap/mean" in t]
        lines.append(f"| {LABELS.get(variant, variant)} | {len(e['seeds'])} | {cell(e['reward_start'])} | "
                     f"{cell(e['reward_end'])} (step {e['steps'][-1]}) | {cell(e['recall_start'])} | "
                     f"{cell(e['recall_end'])} | {statistics.fmean(share):.2f} | "
                     f"{f'{statistics.fmean(gain):+.3f}' if gain else '-'} |")
    return "\n".join(lines)


def diagnostics_table(summary: dict) -> str:
    """Where the rare sentence appeared in training groups, and the sign of its advantage there."""
    def mean(train: list[dict], key: str, fmt: str) -> str:
        values = [t[key] for t in train if key in t]
        return format(statistics.fmean(values), fmt) if values else "-"

    lines = ["| variant | rare-sentence trajectories per step (sampled / edited) | their reward - group mean "
             "(sampled / edited) | edits that insert it | edit operations per edited copy |", "|---|---|---|---|---|"]
    for variant, e in summary.items():
        train = list(e["train"].values())
        ops = {}
        for t in train:
            for op, share in t.get("edit_ops_share", {}).items():
                ops[op] = ops.get(op, 0.0) + share / len(train)
        lines.append(
            f"| {LABELS.get(variant, variant)} | {mean(train, 'rare_sampled_per_step', '.2f')} / "
            f"{mean(train, 'rare_edited_per_step', '.2f')} | {mean(train, 'rare_sampled_advantage_mean', '+.3f')} / "
            f"{mean(train, 'rare_edited_advantage_mean', '+.3f')} | {mean(train, 'edits_inserting_rare_share', '.1%')} "
            f"| {', '.join(f'{op} {v:.2f}' for op, v in ops.items()) or '-'} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------


def write_outputs(root: Path, runs: dict[str, dict[int, Path]], task: Task, args) -> str:
    """summary.json and curves.png under `root`; returns the Markdown table."""
    summary = summarise(runs)
    meta = {"args": vars(args), "sft": {"targets": task.sft_targets, "with_rare_sentence": task.sft_rare_targets},
            "variants": summary}
    (root / "summary.json").write_text(json.dumps(meta, indent=1))
    plot(summary, root / "curves.png")
    return markdown_table(summary) + "\n\nExploration of the rare finding (training rollouts, mean over seeds):\n\n" \
        + diagnostics_table(summary)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="output directory (data, SFT policy, one run per variant and seed)")
    p.add_argument("--quick", action="store_true", help="fewer seeds and steps (1 seed x 8 steps: 13 min on 2 cores)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--seeds", type=int, default=None, help="RL seeds per variant (default 3; --quick 1)")
    p.add_argument("--steps", type=int, default=None, help="RL steps per run (default 16; --quick 8)")
    p.add_argument("--test-freq", type=int, default=None, help="held-out validation every N steps (default 4)")
    p.add_argument("--prompts", type=int, default=8, help="prompts per step (data.train_batch_size)")
    p.add_argument("--group", type=int, default=4, help="G = rollout.n (EditGRPO: G/2 sampled + G/2 edited)")
    p.add_argument("--response-length", type=int, default=96)
    p.add_argument("--lr", type=float, default=5e-4,
                   help="RL learning rate (tiny model; at the CPU demo's 2e-4, 12 steps of 4 prompts move nothing)")
    p.add_argument("--val-n", type=int, default=4, help="sampled responses per held-out study")
    p.add_argument("--val-temperature", type=float, default=1.0,
                   help="held-out sampling temperature; 0 = greedy, one response per study (then --val-n is unused)")
    p.add_argument("--patients", type=int, default=200, help="synthetic studies (85 %% train, 15 %% held out)")
    p.add_argument("--sft-rare-share", type=float, default=0.15,
                   help="share of SFT targets that keep the rare sentence")
    p.add_argument("--sft-conflict", action="store_true",
                   help=f"every reference states {CONFLICT_CONDITION.replace('_', ' ')} as absent and every SFT target "
                        "as present: a warm-up error that contradicts every reference (the CI guard's task)")
    p.add_argument("--sft-steps", type=int, default=300)
    p.add_argument("--sft-batch", type=int, default=8)
    p.add_argument("--sft-lr", type=float, default=3e-3)
    p.add_argument("--data-seed", type=int, default=0, help="seed of the data, the SFT subset and the warm-up")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="a Hydra override for every run, after the variant's (repeatable), e.g. "
                        "actor_rollout_ref.actor.optim.weight_decay=0")
    args = p.parse_args(argv)
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.steps = args.steps or (8 if args.quick else 16)
    args.test_freq = args.test_freq or 4
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    args.variants = variants
    if args.steps % args.test_freq:
        p.error(f"--steps {args.steps} must be a multiple of --test-freq {args.test_freq} (validation at the end)")
    if not 0 < args.sft_rare_share < 1:
        p.error("--sft-rare-share must be in (0, 1): the rare sentence must be rare, not absent")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    root = Path(args.out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                       "HF_HOME": str(root / "hf_home"), "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(key, value)
    import torch

    torch.set_num_threads(args.threads)
    started = time.time()
    task = build_task(root, args)
    log(f"task ready ({time.time() - started:.0f} s); {len(args.variants)} variants x {args.seeds} seeds x "
        f"{args.steps} steps")
    runs: dict[str, dict[int, Path]] = {v: {} for v in args.variants}
    jobs = [(seed, v) for seed in range(args.seeds) for v in args.variants]
    for i, (seed, variant) in enumerate(jobs, 1):
        t0 = time.time()
        runs[variant][seed] = run_one(task, variant, seed, root / "runs" / f"{variant}_s{seed}", args)
        pts = validation_points(runs[variant][seed])
        first, last = pts[min(pts)], pts[max(pts)]
        log(f"[{i}/{len(jobs)}] {variant} seed {seed}: reward {first['reward']:.3f} -> {last['reward']:.3f}, "
            f"rare recall {first['recall']:.2f} -> {last['recall']:.2f} ({time.time() - t0:.0f} s)")
        if variant == args.variants[-1]:  # a seed round is complete: outputs survive an interrupted full run
            table = write_outputs(root, {v: r for v, r in runs.items() if r}, task, args)
    print("\n" + table)
    print(f"\n(held-out reward and recall: mean [min, max] over seeds; {root / 'curves.png'}, "
          f"{root / 'summary.json'}; total {time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
