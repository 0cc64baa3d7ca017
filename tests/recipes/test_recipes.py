"""Every recipe's --dry-run: the command it builds, and that command checked by verl_ext.config.dry_run.

To stay fast, each recipe runs in bash with VERL_EXT_PRINT_CMD=1 (prints its dry-run command) and all commands are
checked by one `python -m verl_ext.config.dry_run --batch` process (verl and its registries imported once). One
recipe also runs its dry run end to end, exactly as a user would.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted(p for p in (REPO / "recipes").glob("*.sh") if p.name != "common.sh")
DATASETS = {"mimic": (6, 4, "mimic_cxr"), "rexgradient": (6, 4, "rexgradient"), "iu_xray": (2, 2, "iu_xray"),
            "padchest_gr": (2, 2, "padchest_gr"), "chexpert_plus": (2, 4, "chexpert_plus")}
EDITGRPO_DATASETS = ("mimic", "rexgradient", "iu_xray", "padchest_gr")
EDITGRPO_VARIANTS = ("grpo", "drgrpo", "editgrpo", "editgrpo_norm", "editgrpo_para", "sft")
DEER_DATASETS = ("mimic", "chexpert_plus")
DEER_VARIANTS = ("deer", "ditpo_rule", "ditpo_grad", "deer_sft")
VARIANTS = EDITGRPO_VARIANTS + DEER_VARIANTS + ("orapo",)
# EditGRPO's variants on its four datasets; DEER and OraPO (arXiv 2509.18600) on the datasets of their papers.
EXPECTED = ({f"{d}_{v}" for d in EDITGRPO_DATASETS for v in EDITGRPO_VARIANTS}
            | {f"{d}_{v}" for d in DEER_DATASETS for v in DEER_VARIANTS} | {"mimic_orapo", "chexpert_plus_orapo"})


def _split(recipe: Path) -> tuple[str, str]:
    stem = recipe.stem
    for variant in sorted(VARIANTS, key=len, reverse=True):
        if stem.endswith("_" + variant):
            return stem[: -len(variant) - 1], variant
    raise AssertionError(f"recipe name {recipe.name} is not <dataset>_<variant>.sh")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    from verl_ext.testing.tiny_qwen import build_tiny_qwen25_vl

    model = build_tiny_qwen25_vl(tmp_path_factory.mktemp("tiny_qwen"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERL_USE_EXTERNAL", "VERL_EXT_"))}
    env.update(MODEL_PATH=str(model), DATA_DIR=str(tmp_path_factory.mktemp("data")), PYTHON=sys.executable,
               CKPT_DIR=str(tmp_path_factory.mktemp("ckpt")), MODELS_DIR=str(tmp_path_factory.mktemp("models")))
    for key in ("RATE_NER_PATH", "BIOLORD_PATH", "CHEXBERT_CHECKPOINT", "CHEXBERT_BERT_PATH", "RADGRAPH_CACHE"):
        env.pop(key, None)
    env.pop("N_GPUS", None)
    env.pop("NNODES", None)
    return env


def _command(recipe: Path, env: dict, *args: str) -> list[str]:
    out = subprocess.run(["bash", str(recipe), "--dry-run", *args], env={**env, "VERL_EXT_PRINT_CMD": "1"},
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode().split("\0")[:-1]


def test_every_dataset_has_every_variant():
    names = {p.stem for p in RECIPES}
    assert names == EXPECTED


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_builds_its_dry_run_command(recipe, env):
    dataset, variant = _split(recipe)
    limit_images, n_gpus, data_name = DATASETS[dataset]
    cmd = _command(recipe, env, "trainer.logger=[console]")
    assert cmd[:3] == [sys.executable, "-m", "verl_ext.config.dry_run"]
    assert cmd[-1] == "trainer.logger=[console]"  # caller overrides come last, so they win
    assert f"trainer.n_gpus_per_node={n_gpus}" in cmd
    if variant != "deer":  # DEER trains on the DDSampling subset (_check_deer)
        assert f"data.train_files={env['DATA_DIR']}/{data_name}/train.parquet" in cmd
    if variant in ("sft", "deer_sft"):
        assert "--config-name=editgrpo_sft" in cmd and f"model.path={env['MODEL_PATH']}" in cmd
        if variant == "deer_sft":  # DEER Sec. 4: language model frozen, lr 1e-5, batch 64
            assert "model.external_lib=verl_ext.freeze" in cmd and "optim.lr=1e-5" in cmd
            assert "+model.override_config.verl_ext_freeze=language_model" in cmd
        return
    assert "--config-name=editgrpo_trainer" in cmd and f"actor_rollout_ref.model.path={env['MODEL_PATH']}" in cmd
    assert f"actor_rollout_ref.rollout.limit_images={limit_images}" in cmd
    assert f"trainer.experiment_name={dataset}_{variant}" in cmd
    assert "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES=verl_ext.register" in cmd
    if variant == "orapo":
        assert ("actor_rollout_ref.rollout.agent.agent_loop_manager_class="
                "verl_ext.rollout.oracle_worker.OraPOAgentLoopManagerTQ") in cmd
        assert "trainer.v1.trainer_mode=orapo" in cmd and "actor_rollout_ref.rollout.n=9" in cmd
        assert "editgrpo.scheme=none" in cmd and "algorithm.adv_estimator=dr_grpo" in cmd
        assert "+reward.reward_kwargs.components={facts:1.0}" in cmd
        assert "data.train_max_samples=1000" in cmd and "data.seed=1" in cmd
        assert not any(c.startswith("trainer.total_training_steps=") for c in cmd)
        return
    if variant in DEER_VARIANTS:
        _check_deer(cmd, variant, env, data_name)
        return
    edits = variant.startswith("editgrpo")
    manager = "verl_ext.rollout.EditAgentLoopManagerTQ" if edits else "null"
    assert f"actor_rollout_ref.rollout.agent.agent_loop_manager_class={manager}" in cmd
    estimator = "grpo" if variant in ("grpo", "editgrpo_norm") else "dr_grpo"
    assert f"algorithm.adv_estimator={estimator}" in cmd
    if edits:
        assert f"editgrpo.level={'paragraph' if variant == 'editgrpo_para' else 'sentence'}" in cmd
    assert ("editgrpo.scheme=paper" if edits else "editgrpo.scheme=none") in cmd
    models = env["MODELS_DIR"]
    assert f"editgrpo.models.rate_ner={models}/RaTE-NER-Deberta" in cmd
    assert f"reward.reward_kwargs.models.chexbert_checkpoint={models}/chexbert.pth" in cmd


def _check_deer(cmd, variant, env, data_name):
    """DEER Sec. 3.1 / 4: no edits, GRPO (/ std), 8 rollouts, 64 prompts, lr 1e-6, F1 then F1 + 0.25 BLEU-2."""
    assert "actor_rollout_ref.rollout.agent.agent_loop_manager_class=null" in cmd and "editgrpo.scheme=none" in cmd
    assert "algorithm.adv_estimator=grpo" in cmd and "algorithm.norm_adv_by_std_in_grpo=true" in cmd
    assert "actor_rollout_ref.rollout.n=8" in cmd and "data.train_batch_size=64" in cmd
    assert "+reward.reward_kwargs.components={chexbert_example_f1:1.0,bleu2:0.0}" in cmd
    assert "+reward.reward_kwargs.component_schedules={bleu2:[[0,0.0],[0.5,0.25]]}" in cmd
    assert "+reward.reward_kwargs.schedule_unit=share" in cmd  # both phases for any data size (issue 21)
    weighting = "tfidf" if variant == "ditpo_rule" else "gradient"
    assert f"ditpo.weighting={weighting}" in cmd
    subset = f"data.train_files={env['DATA_DIR']}/{data_name}_ddsampling/train.parquet"
    assert (subset in cmd) == (variant == "deer")
    assert not any(c.startswith("trainer.total_training_steps=") for c in cmd)  # one pass over the (sub)set


def test_deer_subset_and_switch_step_from_the_environment(env, tmp_path):
    (tmp_path / "train-00000.parquet").write_bytes(b"")
    cmd = _command(REPO / "recipes" / "mimic_deer.sh", {**env, "DDS_DIR": str(tmp_path),
                                                        "DEER_BLEU_SWITCH_STEP": "120"})
    assert f"data.train_files=[{tmp_path}/train-00000.parquet]" in cmd
    assert "+reward.reward_kwargs.component_schedules={bleu2:[[0,0.0],[120,0.25]]}" in cmd
    assert "+reward.reward_kwargs.schedule_unit=step" in cmd
    share = _command(REPO / "recipes" / "mimic_deer.sh", {**env, "DEER_BLEU_SWITCH": "0.3"})
    assert "+reward.reward_kwargs.component_schedules={bleu2:[[0,0.0],[0.3,0.25]]}" in share
    given = _command(REPO / "recipes" / "mimic_deer.sh", {**env, "TRAIN_FILES": "/x/train.parquet"})
    assert "data.train_files=/x/train.parquet" in given


def test_multi_node_and_environment(env):
    cmd = _command(REPO / "recipes" / "mimic_editgrpo.sh", {**env, "NNODES": "2", "N_GPUS": "8",
                                                            "WANDB_MODE": "offline", "WANDB_PROJECT": "p",
                                                            "EXPERIMENT_NAME": "e"})
    assert "trainer.nnodes=2" in cmd and "trainer.n_gpus_per_node=8" in cmd
    assert "+ray_kwargs.ray_init.address=auto" in cmd
    assert "+ray_kwargs.ray_init.runtime_env.env_vars.WANDB_MODE=offline" in cmd
    assert "trainer.project_name=p" in cmd and "trainer.experiment_name=e" in cmd
    assert f"trainer.default_local_dir={env['CKPT_DIR']}/p/e" in cmd


# Deliberately broken commands (independent mistakes share a line): each must fail naming every problem.
BROKEN = {
    "registries and edit setup": (
        "mimic_editgrpo",
        ["algorithm.adv_estimator=nope", "ditpo.weighting=chexbert",
         "actor_rollout_ref.rollout.calculate_log_probs=true", "reward.reward_kwargs.models.chexbert_bert=null"],
        ["unknown advantage estimator 'nope'", "ditpo.weighting", "calculate_log_probs",
         "reward.reward_kwargs.models.chexbert_bert"],
    ),
    "manager and rules": (
        "mimic_editgrpo",
        ["actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.nowhere.Manager", "editgrpo.tau=3.0"],
        ["verl_ext.nowhere", "tau=3.0"],
    ),
    "edits without manager": ("mimic_editgrpo", ["actor_rollout_ref.rollout.agent.agent_loop_manager_class=null"],
                              ["nothing would be edited"]),
    "bad scheme": ("mimic_editgrpo", ["editgrpo.scheme=bogus"], ["editgrpo.scheme='bogus'"]),
    "model not given": ("mimic_editgrpo", ["actor_rollout_ref.model.path=null"],
                        ["required values: set actor_rollout_ref.model.path"]),
    "sft validation without data": ("mimic_sft", ["trainer.test_freq=after_each_epoch"], ["trainer.test_freq"]),
    "deer bleu-2 phase after the last step": (
        "mimic_deer", ["trainer.total_training_steps=460", "reward.reward_kwargs.schedule_unit=step",
                       "reward.reward_kwargs.component_schedules={bleu2:[[0,0.0],[500,0.25]]}"],
        ["weight 0.25 at step 500, but the run has at most 460 steps"]),
    "orapo without reference policy": ("chexpert_plus_orapo",
                                       ["actor_rollout_ref.actor.use_kl_loss=false",
                                        "actor_rollout_ref.actor.loss_agg_mode=token-mean"],
                                       ["use_kl_loss=False", "loss_agg_mode='token-mean'"]),
    "orapo with an inserted-token loss, facts_llm without its model": (
        "chexpert_plus_orapo",
        ["actor_rollout_ref.actor.policy_loss.loss_mode=inserted_masked",
         "++reward.reward_kwargs.components={facts_llm:1.0}"],
        ["OraPO has no edited responses", "reward.reward_kwargs.facts_model is not set"]),
}


@pytest.fixture(scope="module")
def batch_reports(env, tmp_path_factory) -> dict:
    lines, names = [], []
    for recipe in RECIPES:
        lines.append(_command(recipe, env)[3:])
        names.append(recipe.stem)
    for name, (recipe, overrides, _) in BROKEN.items():
        lines.append(_command(REPO / "recipes" / f"{recipe}.sh", env)[3:] + overrides)
        names.append(name)
    batch = tmp_path_factory.mktemp("batch") / "commands.jsonl"
    batch.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    run_env = {**env, "VERL_USE_EXTERNAL_MODULES": "verl_ext.register"}
    out = subprocess.run([sys.executable, "-m", "verl_ext.config.dry_run", "--batch", str(batch), "--json"],
                         env=run_env, capture_output=True, text=True, timeout=900)
    reports = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == len(names), out.stderr[-4000:]
    return dict(zip(names, reports))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_dry_run_passes(recipe, batch_reports):
    report = batch_reports[recipe.stem]
    assert report["ok"], "\n".join(report["errors"])
    assert report["kind"] == ("sft" if recipe.stem.endswith("_sft") else "rl")
    if recipe.stem.endswith("_deer_sft"):
        assert report["settings"]["model.override_config"]["verl_ext_freeze"] == "language_model"
    # the data files and scorer models of the tests do not exist: warnings, not errors
    assert any(w.startswith("data.train_files") for w in report["warnings"])
    if not recipe.stem.endswith("_sft"):
        assert any(w.startswith("reward.reward_kwargs.models") for w in report["warnings"])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_configs_are_reported(name, batch_reports):
    report = batch_reports[name]
    assert not report["ok"]
    for expected in BROKEN[name][2]:
        assert any(expected in error for error in report["errors"]), (expected, report["errors"])


@pytest.mark.slow
def test_resolved_settings_of_the_main_recipe(batch_reports):
    s = batch_reports["mimic_editgrpo"]["settings"]
    assert s["actor_rollout_ref.rollout.n"] == 10 and s["data.train_batch_size"] == 32
    assert s["actor_rollout_ref.actor.optim.lr"] == 1e-6 and s["actor_rollout_ref.actor.optim.weight_decay"] == 0.01
    assert s["actor_rollout_ref.rollout.temperature"] == 1.0 and s["editgrpo"]["tau"] == 0.6
    assert s["algorithm.adv_estimator"] == "dr_grpo" and s["reward.reward_manager.name"] == "radiology"
    assert s["actor_rollout_ref.actor.loss_agg_mode"] == "seq-mean-token-sum-norm"
    assert s["actor_rollout_ref.actor.loss_scale_factor"] == 4096
    assert s["actor_rollout_ref.rollout.calculate_log_probs"] is False
    assert s["trainer.v1.trainer_mode"] == "editgrpo" and s["trainer.total_training_steps"] == 1000
    assert s["actor_rollout_ref.model.enable_gradient_checkpointing"] is True
    sft = batch_reports["mimic_sft"]["settings"]
    assert "hf_model" in sft["checkpoint.save_contents"] and sft["trainer.save_freq"] == "after_each_epoch"


def test_orapo_subset_and_backend_options(env):
    cmd = _command(REPO / "recipes" / "chexpert_plus_orapo.sh", {**env, "TRAIN_SUBSET": "400", "SUBSET_SEED": "7",
                                                                  "ORAPO_K": "4", "FACTS_BACKEND": "facts_llm",
                                                                  "FACTS_MODEL": "/models/llm"})
    assert "data.train_max_samples=400" in cmd and "data.seed=7" in cmd and "actor_rollout_ref.rollout.n=5" in cmd
    assert "+reward.reward_kwargs.components={facts_llm:1.0}" in cmd
    assert "+reward.reward_kwargs.facts_model=/models/llm" in cmd
    assert "data.train_max_samples=-1" in _command(REPO / "recipes" / "mimic_orapo.sh", {**env, "TRAIN_SUBSET": "0"})


@pytest.mark.slow
def test_resolved_settings_of_the_orapo_recipe(batch_reports):
    s = batch_reports["chexpert_plus_orapo"]["settings"]
    assert s["trainer.v1.trainer_mode"] == "orapo" and s["actor_rollout_ref.rollout.n"] == 9
    assert s["reward.reward_kwargs"]["components"] == {"facts": 1.0}
    assert s["data.train_max_samples"] == 1000 and s["orapo"] == {"negatives": "zero_reward"}
    assert s["actor_rollout_ref.actor.use_kl_loss"] is True  # the LN-DPO term needs the reference policy


@pytest.mark.slow
def test_end_to_end_dry_run_of_main_recipe(env):
    """`bash recipes/mimic_editgrpo.sh --dry-run` as a user runs it (its own python process)."""
    out = subprocess.run(["bash", str(REPO / "recipes" / "mimic_editgrpo.sh"), "--dry-run"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert "== verl_ext dry run: editgrpo_trainer (rl)" in out.stdout, out.stderr[-3000:]
    assert out.returncode == 0, out.stdout[-4000:]
    assert "== OK" in out.stdout


def test_cpu_switch_adds_the_cpu_profile(env):
    """`--cpu`: the recipe's own overrides, then the CPU debug profile's (verl_ext.cpu.profile), then the user's."""
    from verl_ext.cpu.profile import cpu_overrides

    recipe = REPO / "recipes" / "iu_xray_editgrpo.sh"
    cmd = _command(recipe, env, "--cpu", "trainer.nnodes=1")
    profile = cpu_overrides(1)
    start = cmd.index(profile[0])
    assert cmd[start : start + len(profile)] == profile and cmd[-1] == "trainer.nnodes=1"
    assert cmd.index("editgrpo.scheme=paper") < start  # the recipe's variant comes first, the profile overrides it
    bad = subprocess.run(["bash", str(REPO / "recipes" / "iu_xray_sft.sh"), "--cpu"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "--cpu is for RL recipes" in bad.stderr


@pytest.mark.parametrize("recipe", [r for r in RECIPES if not r.stem.endswith("_sft")], ids=lambda p: p.stem)
def test_what_each_rl_recipe_trains(recipe, env):
    """editgrpo_trainer.yaml freezes the vision tower (the EditGRPO authors' RL config); DEER's RL recipes override
    it to train the whole model (DEER Sec. 4); no other RL recipe touches it."""
    _, variant = _split(recipe)
    overrides = [c for c in _command(recipe, env) if "verl_ext_freeze" in c or "external_lib" in c]
    if variant in DEER_VARIANTS:
        assert overrides == ["actor_rollout_ref.model.override_config.verl_ext_freeze=none"]
    else:
        assert overrides == []
