"""Inputs and the command line of a tiny EditGRPO run of verl's own trainer in the CPU debug profile.

Used by ``tests/integration/test_main_ppo_cpu.py`` and ``examples/cpu_demo.py``:

* `prepare_inputs`: synthetic IU-Xray studies (``verl_ext.testing.synthetic``) converted by ``data_prep``'s
  converter into the training/test parquet shards a real run reads, the tiny Qwen2.5-VL policy
  (``verl_ext.testing.tiny_qwen``) and the tiny clinical scorer models (``verl_ext.testing.scorer_models``);
* `main_ppo_command`: ``python -m verl.trainer.main_ppo --config-path verl_ext/config --config-name
  editgrpo_trainer`` with the CPU profile (`verl_ext.cpu.profile`), tiny sizes and those inputs;
* `run_env`: the environment (``VERL_PLATFORM=cpu``, offline hubs and W&B, caches under the run directory).

``python -m verl_ext.testing.cpu_run DIR`` writes the inputs for a user's first CPU run of a recipe (README,
"Debugging a recipe on CPU"): ``DIR/policy`` (``MODEL_PATH``), ``DIR/data`` (``DATA_DIR``) and ``DIR/models``
(``MODELS_DIR``, the layout ``recipes/common.sh`` reads).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

__all__ = ["RunInputs", "main", "main_ppo_command", "prepare_inputs", "run_env", "CONFIG_DIR"]

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
#: Each synthetic image becomes 56x56 pixels = 4 visual tokens after Qwen2.5-VL's 2x2 merge (fast CPU forwards).
PIXELS = 56 * 56


@dataclass(frozen=True)
class RunInputs:
    train_files: list[str]
    val_files: list[str]
    model: Path
    scorers: dict[str, str]


def prepare_inputs(root: str | os.PathLike, *, patients: int = 10, seed: int = 0,
                   policy: Optional[Path] = None) -> RunInputs:
    """Write the run's data (``root/data/iu_xray``), policy (``root/policy``) and scorer models (``root/models``, a
    recipe's ``MODELS_DIR``) under `root`, each reused when already there."""
    from verl_ext.data.cli import main as data_prep
    from verl_ext.data.output import split_files
    from verl_ext.testing import synthetic
    from verl_ext.testing.scorer_models import build_all
    from verl_ext.testing.tiny_qwen import build_tiny_qwen25_vl

    root = Path(root)
    data = root / "data" / "iu_xray"
    if not split_files(data, "train"):
        source = synthetic.write_iu_xray(root / "iu_xray_src", synthetic.generate_patients(
            patients, seed=seed, max_studies=1, views=["PA", "LATERAL"],
            splits={"train": 0.6, "validate": 0.0, "test": 0.4}), seed=seed, edge_cases=False)
        data_prep("iu_xray", ["--root", str(source.root), "--out", str(data), "--no-progress",
                              "--min-pixels", str(PIXELS), "--max-pixels", str(PIXELS)])
    if policy is None:
        policy = root / "policy"
        if not (policy / "model.safetensors").exists():
            build_tiny_qwen25_vl(policy, seed=seed, eos_probability=0.08)
    scorers = build_all(root / "models").as_dict()
    return RunInputs(split_files(data, "train"), split_files(data, "test"), Path(policy), scorers)


def _hydra_list(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def main_ppo_command(inputs: RunInputs, out: str | os.PathLike, *, steps: int = 2, prompts: int = 2, group: int = 4,
                     response_length: int = 32, variant: str = "editgrpo", save_freq: int = 2, test_freq: int = 2,
                     val_before_train: bool = False, lr: float = 1e-4, experiment: str = "cpu",
                     analyzer: str = "lexicon", extra: tuple[str, ...] = ()) -> list[str]:
    """verl's entry point with the project config, the CPU profile and tiny sizes (`variant`: editgrpo | grpo |
    ditpo, as the recipes define them).

    `analyzer`: the edit step's analyzer. ``lexicon`` (default) finds real findings in the tiny policy's text, so
    every edit changes its response and each group holds exactly G/2 edited copies; ``rate`` runs the tiny random
    RaTE-NER + BioLORD, whose random entities rarely lead to an edit (the slot is then resampled)."""
    from verl_ext.cpu.profile import cpu_overrides

    out = Path(out)
    models = {k: v for k, v in inputs.scorers.items() if k != "radgraph_model_type"}
    overrides = [
        f"data.train_files={_hydra_list(inputs.train_files)}",
        f"data.val_files={_hydra_list(inputs.val_files)}",
        f"data.train_batch_size={prompts}",
        "data.max_prompt_length=1024",
        f"data.max_response_length={response_length}",
        "data.filter_overlong_prompts_workers=1",
        "data.dataloader_num_workers=0",
        f"actor_rollout_ref.model.path={inputs.model}",
        f"actor_rollout_ref.rollout.n={group}",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
        "actor_rollout_ref.rollout.val_kwargs.temperature=0",
        "actor_rollout_ref.rollout.val_kwargs.do_sample=False",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={prompts}",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
        f"actor_rollout_ref.actor.optim.lr={lr}",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8",
        "reward.num_workers=1",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        f"trainer.total_training_steps={steps}",
        f"trainer.save_freq={save_freq}",
        f"trainer.test_freq={test_freq}",
        f"trainer.val_before_train={val_before_train}",
        f"trainer.default_local_dir={out / 'checkpoints'}",
        "trainer.project_name=editgrpo_cpu",
        f"trainer.experiment_name={experiment}",
        "trainer.logger=[console,wandb,file]",
        f"trainer.rollout_data_dir={out / 'rollouts'}",
        *[f"reward.reward_kwargs.models.{k}={v}" for k, v in models.items()],
        f"++reward.reward_kwargs.models.radgraph_model_type={inputs.scorers['radgraph_model_type']}",
        f"editgrpo.analyzer={analyzer}",
        f"editgrpo.models.rate_ner={inputs.scorers['rate_ner']}",
        f"editgrpo.models.biolord={inputs.scorers['biolord']}",
        *cpu_overrides(1),
    ]
    if variant == "grpo":
        overrides += ["actor_rollout_ref.rollout.agent.agent_loop_manager_class=null", "editgrpo.scheme=none",
                      "algorithm.adv_estimator=grpo", "algorithm.norm_adv_by_std_in_grpo=True",
                      "actor_rollout_ref.actor.loss_agg_mode=token-mean"]
    elif variant == "ditpo":  # DEER Sec. 3.3: std-normalised GRPO advantages times rule-based token weights
        overrides += ["actor_rollout_ref.rollout.agent.agent_loop_manager_class=null", "editgrpo.scheme=none",
                      "algorithm.adv_estimator=grpo", "algorithm.norm_adv_by_std_in_grpo=True",
                      "ditpo.weighting=tfidf"]
    elif variant != "editgrpo":
        raise ValueError(f"variant={variant!r}: expected editgrpo, grpo or ditpo")
    return [sys.executable, "-m", "verl.trainer.main_ppo", f"--config-path={CONFIG_DIR}",
            "--config-name=editgrpo_trainer", *overrides, *extra]


def run_env(out: str | os.PathLike, threads: int = 1) -> dict[str, str]:
    """The launching environment: the CPU platform, offline hubs and W&B, caches and logs under `out`."""
    out = Path(out)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # always a fresh local Ray cluster
    env.update({
        "VERL_PLATFORM": "cpu",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(out / "hf_home"), "HF_DATASETS_CACHE": str(out / "hf_home" / "datasets"),
        "WANDB_MODE": "offline", "WANDB_DIR": str(out), "WANDB_CACHE_DIR": str(out / "wandb_cache"),
        "WANDB_SILENT": "true", "VERL_FILE_LOGGER_PATH": str(out / "metrics.jsonl"),
        "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
        "RAY_DEDUP_LOGS": "0", "PYTHONWARNINGS": "ignore",
    })
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verl_ext.testing.cpu_run",
        description="Write a tiny random Qwen2.5-VL policy, synthetic IU-Xray parquet shards (data_prep's converter) "
                    "and tiny random scorer models under DIR, for a recipe's --cpu debug run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("dir", help="output directory (created; existing inputs are reused)")
    parser.add_argument("--patients", type=int, default=10,
                        help="synthetic patients, one study each (about 60%% train, 40%% test)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the studies and the random weights")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = Path(args.dir).resolve()
    inputs = prepare_inputs(root, patients=args.patients, seed=args.seed)
    print(f"tiny inputs under {root} (random weights: the scores mean nothing, the code paths are the real ones):")
    print(f"  MODEL_PATH={inputs.model}  (Qwen2.5-VL, random)")
    print(f"  DATA_DIR={root / 'data'}  (iu_xray: {len(inputs.train_files)} train, {len(inputs.val_files)} test shard)")
    print(f"  MODELS_DIR={root / 'models'}  (RaTE-NER, BioLORD, CheXbert, RadGraph "
          f"{inputs.scorers['radgraph_model_type']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
