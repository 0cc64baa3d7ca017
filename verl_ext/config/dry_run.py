"""Check a launch configuration without a GPU: compose it as verl's entry point would, validate it, import everything
it names, print the resolved settings and exit.

    python -m verl_ext.config.dry_run --config-name=editgrpo_trainer data.train_files=... data.val_files=... \
        actor_rollout_ref.model.path=...
    python -m verl_ext.config.dry_run --config-name=editgrpo_sft model.path=... data.train_files=...
    bash recipes/mimic_editgrpo.sh --dry-run          # what every recipe does with --dry-run

RL configs (``ppo_trainer``-based) go through what ``verl.trainer.main_ppo`` and the V1 trainer would do before any
GPU work:

* Hydra composition of ``--config-path``/``--config-name`` + overrides (``verl_ext/config`` by default), required
  values (``???`` or left null: data files, model path), interpolation;
* ``verl.utils.config.validate_config`` (as ``main_ppo.main`` calls it), which converts and validates the actor;
* the conversions to verl's config dataclasses that the workers perform: rollout (``RolloutConfig``, agent loop
  included), reference policy, algorithm (``AlgoConfig``), critic when used, checkpoint engine, and the model
  (``HFModelConfig``, which loads the tokenizer and processor) when ``model.path`` exists on this machine. The
  ``reward`` section is **not** converted: ``RewardManagerConfig.__post_init__`` raises in verl 0.9.1 and verl never
  converts it either (verl_integration.md §3.9);
* every name the config points at: the plugin modules (``VERL_USE_EXTERNAL_MODULES`` and ``verl_ext.register``'s
  list, each imported on its own so a missing piece is named), the advantage estimator and policy loss in
  ``core_algos``, the V1 trainer mode, the agent-loop manager class, the reward manager (resolved with verl's own
  ``resolve_reward_manager_cls``), custom reward function, dataset class, sampler, checkpoint callback;
* the ``editgrpo`` key parsed as the agent-loop workers parse it (``EditRolloutConfig``, ``validate_edit_setup``,
  the rules' ``EditConfig``), ``reward.reward_kwargs`` as the reward manager parses it (``RadiologyRewardConfig``),
  the local models each needs (unset: error), the ``ditpo`` key;
* data, model and scorer paths: missing on this machine is a warning (an error with ``--strict``), since the dry run
  usually runs where the data is not.

SFT configs (``sft_trainer_engine``-based) get the conversions ``verl.trainer.sft_trainer.SFTTrainer._build_config``
performs (model, engine, optim, checkpoint, profiler) and the data checks.

Exit status: 0 when no check failed, 1 otherwise (2 for usage errors). ``--batch FILE`` checks many command lines
(one JSON list of arguments per line) in one process, which is how the tests check every recipe quickly.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from verl_ext.help_format import HelpFormatter

CONFIG_DIR = Path(__file__).resolve().parent
REGISTER_MODULE = "verl_ext.register"
# Settings printed for each kind of config (the full config: --print-config).
_RL_SETTINGS = (
    "data.train_files", "data.val_files", "data.train_batch_size", "data.max_prompt_length",
    "data.max_response_length", "actor_rollout_ref.model.path", "actor_rollout_ref.actor.strategy",
    "actor_rollout_ref.actor.optim.lr", "actor_rollout_ref.actor.optim.weight_decay",
    "actor_rollout_ref.actor.ppo_mini_batch_size", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
    "actor_rollout_ref.actor.loss_agg_mode", "actor_rollout_ref.actor.loss_scale_factor",
    "actor_rollout_ref.actor.use_kl_loss", "actor_rollout_ref.actor.kl_loss_type",
    "actor_rollout_ref.actor.kl_loss_coef",
    "actor_rollout_ref.model.enable_gradient_checkpointing", "actor_rollout_ref.rollout.name",
    "actor_rollout_ref.rollout.n", "actor_rollout_ref.rollout.temperature", "actor_rollout_ref.rollout.limit_images",
    "actor_rollout_ref.rollout.calculate_log_probs", "actor_rollout_ref.rollout.agent.agent_loop_manager_class",
    "algorithm.adv_estimator", "algorithm.norm_adv_by_std_in_grpo", "reward.reward_manager.source",
    "reward.reward_manager.name", "trainer.v1.trainer_mode", "trainer.n_gpus_per_node", "trainer.nnodes",
    "trainer.total_epochs", "trainer.total_training_steps", "trainer.project_name", "trainer.experiment_name",
    "trainer.logger", "trainer.default_local_dir", "ditpo", "editgrpo", "reward.reward_kwargs", "ray_kwargs.ray_init",
    "orapo", "data.train_max_samples", "data.seed",
)
_SFT_SETTINGS = (
    "model.path", "engine.strategy", "optim.lr", "optim.lr_scheduler_type", "optim.lr_warmup_steps_ratio",
    "optim.weight_decay", "data.train_files", "data.val_files", "data.messages_key", "data.image_key",
    "data.train_batch_size", "data.max_length", "data.use_dynamic_bsz", "checkpoint.save_contents",
    "trainer.total_epochs", "trainer.save_freq", "trainer.n_gpus_per_node", "trainer.nnodes", "trainer.project_name",
    "trainer.experiment_name", "trainer.logger", "trainer.default_local_dir", "model.external_lib",
    "model.override_config",
)


# Values our configs leave null (the recipes set them) and verl cannot run without.
_REQUIRED = {
    "rl": ("data.train_files", "data.val_files", "actor_rollout_ref.model.path"),
    "sft": ("data.train_files", "model.path"),
}


@dataclass
class Report:
    """Outcome of one dry run: ``checks`` holds (status, name, detail) with status ok | warn | FAIL."""

    config_name: str
    kind: str = "?"
    checks: list[tuple[str, str, str]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    config: Any = None  # the composed DictConfig (for --print-config)

    def ok(self, name: str, detail: str = "") -> None:
        self.checks.append(("ok", name, detail))

    def warn(self, name: str, detail: str) -> None:
        self.checks.append(("warn", name, detail))

    def fail(self, name: str, detail: str) -> None:
        self.checks.append(("FAIL", name, detail))

    @property
    def errors(self) -> list[tuple[str, str]]:
        return [(n, d) for s, n, d in self.checks if s == "FAIL"]

    @property
    def warnings(self) -> list[tuple[str, str]]:
        return [(n, d) for s, n, d in self.checks if s == "warn"]

    def as_dict(self) -> dict:
        return {
            "config_name": self.config_name,
            "kind": self.kind,
            "ok": not self.errors,
            "errors": [f"{n}: {d}" for n, d in self.errors],
            "warnings": [f"{n}: {d}" for n, d in self.warnings],
            "settings": self.settings,
        }

    def render(self) -> str:
        lines = [f"== verl_ext dry run: {self.config_name} ({self.kind})"]
        for status, name, detail in self.checks:
            lines.append(f"[{status:4s}] {name}" + (f": {detail}" if detail else ""))
        if self.settings:
            lines.append("-- resolved settings")
            width = max(len(k) for k in self.settings)
            for key, value in self.settings.items():
                lines.append(f"  {key:<{width}}  {json.dumps(value, default=str)}")
        n_err, n_warn = len(self.errors), len(self.warnings)
        lines.append(f"== {'FAILED' if n_err else 'OK'}: {n_err} error(s), {n_warn} warning(s)")
        return "\n".join(lines)


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) < 600 else text[:600] + " ..."


def _check(report: Report, name: str, fn: Callable[[], Any], ok_detail: Optional[Callable[[Any], str]] = None) -> Any:
    """Run `fn`; record ok (with `ok_detail(result)`) or FAIL (with the exception); return the result or None."""
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fn()
    except Exception as exc:  # every failure becomes a line of the report
        report.fail(name, _short(exc))
        if os.environ.get("VERL_EXT_DRY_RUN_DEBUG"):
            traceback.print_exc()
        return None
    report.ok(name, ok_detail(result) if ok_detail else "")
    return result


# ------------------------------------------------------------------------------------------------------------------
# plugin modules
# ------------------------------------------------------------------------------------------------------------------


def plugin_modules() -> tuple[str, ...]:
    """``verl_ext.register.PLUGIN_MODULES``, read from the source (importing it would stop at the first failure)."""
    import importlib.util

    spec = importlib.util.find_spec(REGISTER_MODULE)
    if spec is None or spec.origin is None:
        return ()
    tree = ast.parse(Path(spec.origin).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PLUGIN_MODULES" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    return ()


def _import_plugins(report: Report, external_modules: str) -> None:
    import importlib

    names = [m.strip() for m in external_modules.split(",") if m.strip()]
    if not names:
        report.warn(
            "VERL_USE_EXTERNAL_MODULES",
            "not set; verl_ext is then loaded only through the `verl.plugins` entry point (installed package)",
        )
        names = [REGISTER_MODULE]
    for name in names:
        targets = plugin_modules() if name == REGISTER_MODULE else (name,)
        for module in targets:
            _check(report, f"plugin module {module}", lambda module=module: importlib.import_module(module))


# ------------------------------------------------------------------------------------------------------------------
# helpers on the composed config
# ------------------------------------------------------------------------------------------------------------------


def _missing_keys(cfg) -> list[str]:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    out: list[str] = []

    def walk(node, prefix: str) -> None:
        if isinstance(node, DictConfig):
            for key in node:
                path = f"{prefix}.{key}" if prefix else str(key)
                if OmegaConf.is_missing(node, key):
                    out.append(path)
                else:
                    walk(node._get_node(key), path)
        elif isinstance(node, ListConfig):
            for i in range(len(node)):
                walk(node._get_node(i), f"{prefix}[{i}]")

    walk(cfg, "")
    return out


def _inactive_sections(cfg) -> tuple[str, ...]:
    """Config sections verl never reads with this config (their ``???`` values do not matter)."""
    out = []
    reward_model = _select(cfg, "reward.reward_model.enable")
    if not reward_model:
        out.append("reward.reward_model.")
    distillation = _select(cfg, "distillation.enabled")
    if not distillation:
        out.append("distillation.")
    return tuple(out)


def _paths_of(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _check_paths(report: Report, name: str, value, strict: bool) -> None:
    missing = [p for p in _paths_of(value) if "://" not in p and not Path(os.path.expanduser(p)).exists()]
    if not _paths_of(value):
        return
    if missing:
        (report.fail if strict else report.warn)(name, f"not found on this machine: {', '.join(missing)}")
    else:
        report.ok(name, ", ".join(_paths_of(value)))


def _select(cfg, key: str):
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True, throw_on_missing=False)
    return value


def _settings(cfg, keys) -> dict[str, Any]:
    out = {}
    for key in keys:
        try:
            out[key] = _select(cfg, key)
        except Exception as exc:  # an unresolvable interpolation is reported by the resolve check
            out[key] = f"<{type(exc).__name__}>"
    return out


# ------------------------------------------------------------------------------------------------------------------
# RL
# ------------------------------------------------------------------------------------------------------------------


def _check_rl(report: Report, cfg, resolved, strict: bool) -> None:
    """`cfg`: the composed config; `resolved`: a private, fully resolved copy that checks may modify."""
    from omegaconf import OmegaConf, open_dict
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    use_ref = need_reference_policy(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Disabled critic as algorithm.adv_estimator != gae"
        use_critic = need_critic(cfg)

    def validate():
        from verl.utils.device import auto_set_device

        work = OmegaConf.create(resolved)
        with open_dict(work):
            auto_set_device(work)
        validate_config(config=work, use_reference_policy=use_ref, use_critic=use_critic)

    _check(report, "verl validate_config (as main_ppo)", validate,
           lambda _: f"reference policy={use_ref}, critic={use_critic}")

    arr = cfg.actor_rollout_ref
    _check(report, "actor_rollout_ref.rollout -> dataclass", lambda: omega_conf_to_dataclass(arr.rollout),
           lambda r: type(r).__name__)
    if use_ref:
        def ref_config():
            # engine_workers.ActorRolloutRefWorker renames the log_prob_* keys to the actor's before converting.
            ref = OmegaConf.create(resolved.actor_rollout_ref.ref)
            with open_dict(ref):
                ref.ppo_mini_batch_size = resolved.actor_rollout_ref.actor.ppo_mini_batch_size
                ref.ppo_micro_batch_size = ref.pop("log_prob_micro_batch_size", None)
                ref.ppo_micro_batch_size_per_gpu = ref.pop("log_prob_micro_batch_size_per_gpu", None)
                ref.use_dynamic_bsz = ref.pop("log_prob_use_dynamic_bsz", False)
                ref.ppo_max_token_len_per_gpu = ref.pop("log_prob_max_token_len_per_gpu", None)
            return omega_conf_to_dataclass(ref)

        _check(report, "actor_rollout_ref.ref -> dataclass (as the ref worker)", ref_config, lambda r: type(r).__name__)
    _check(report, "algorithm -> dataclass", lambda: omega_conf_to_dataclass(cfg.algorithm), lambda r: type(r).__name__)
    if use_critic:
        _check(report, "critic -> dataclass", lambda: omega_conf_to_dataclass(cfg.critic), lambda r: type(r).__name__)
    _check(report, "rollout.checkpoint_engine -> dataclass",
           lambda: omega_conf_to_dataclass(arr.rollout.checkpoint_engine), lambda r: type(r).__name__)
    report.ok("reward -> dataclass", "skipped on purpose (RewardManagerConfig.__post_init__ bug in verl 0.9.1)")

    model_path = arr.model.path
    if Path(os.path.expanduser(str(model_path))).exists():
        _check(report, "actor_rollout_ref.model -> HFModelConfig (tokenizer, processor)",
               lambda: omega_conf_to_dataclass(arr.model),
               lambda r: f"model_type={getattr(r.hf_config, 'model_type', '?')}")
    else:
        (report.fail if strict else report.warn)(
            "actor_rollout_ref.model.path", f"{model_path} not found on this machine; HFModelConfig not checked")

    # --- names the config points at
    from verl.trainer.ppo import core_algos

    est = str(cfg.algorithm.adv_estimator)

    def estimator():
        if est not in core_algos.ADV_ESTIMATOR_REGISTRY:
            raise ValueError(f"unknown advantage estimator {est!r}; registered: "
                             f"{', '.join(sorted(core_algos.ADV_ESTIMATOR_REGISTRY))}")
        return core_algos.get_adv_estimator_fn(est)

    _check(report, f"advantage estimator '{est}' registered", estimator, lambda fn: f"{fn.__module__}.{fn.__name__}")
    loss_mode = arr.actor.policy_loss.loss_mode
    _check(report, f"policy loss '{loss_mode}' registered", lambda: core_algos.get_policy_loss_fn(loss_mode),
           lambda fn: f"{fn.__module__}.{fn.__name__}")

    if cfg.trainer.get("use_v1", True):
        mode = str(cfg.trainer.v1.trainer_mode)

        def trainer_cls():
            from verl.trainer.ppo.v1 import get_trainer_cls

            return get_trainer_cls(mode)

        _check(report, f"V1 trainer mode '{mode}' registered", trainer_cls, lambda c: f"{c.__module__}.{c.__name__}")

    manager = arr.rollout.agent.get("agent_loop_manager_class", None)
    if manager:
        def manager_cls():
            from verl.utils.import_utils import load_class_from_fqn

            cls = load_class_from_fqn(str(manager), "AgentLoopManager")
            missing = [a for a in ("create", "generate_sequences") if not hasattr(cls, a)]
            if missing:
                raise TypeError(f"{manager} lacks {missing} (verl calls create(...) and generate_sequences(batch))")
            return cls

        _check(report, "agent_loop_manager_class imports", manager_cls, lambda c: f"{c.__module__}.{c.__name__}")
    else:
        report.ok("agent_loop_manager_class", "verl's stock AgentLoopManagerTQ (no edit step)")

    def reward_cls():
        from verl.experimental.reward_loop.reward_manager.registry import REWARD_MANAGER
        from verl.trainer.ppo.reward import resolve_reward_manager_cls

        if cfg.reward.reward_manager.source == "register" and cfg.reward.reward_manager.name not in REWARD_MANAGER:
            raise ValueError(f"reward manager {cfg.reward.reward_manager.name!r} is not registered; registered: "
                             f"{', '.join(sorted(REWARD_MANAGER))} (see the plugin module lines above)")
        return resolve_reward_manager_cls(cfg)

    rm = cfg.reward.reward_manager
    _check(report, f"reward manager ({rm.source}: '{rm.name}')", reward_cls, lambda c: f"{c.__module__}.{c.__name__}")

    crf = cfg.reward.custom_reward_function
    if crf.get("path"):
        def reward_fn():
            from verl.trainer.ppo.reward import get_custom_reward_fn

            return get_custom_reward_fn(cfg)

        _check(report, "reward.custom_reward_function", reward_fn, lambda f: getattr(f, "__name__", str(f)))
    if cfg.get("custom_reward_function", {}).get("path"):
        report.fail("custom_reward_function.path", "top-level legacy key is ignored by main_ppo; "
                    "use reward.custom_reward_function.path (verl_integration.md §3)")

    custom_cls = cfg.data.get("custom_cls", {}) or {}
    if custom_cls.get("path"):
        def dataset_cls():
            from verl.utils.import_utils import load_extern_object

            return load_extern_object(custom_cls.path, custom_cls.name)

        _check(report, "data.custom_cls", dataset_cls)
    sampler = cfg.trainer.v1.get("sampler", {}).get("custom_sampler", {}) or {}
    if sampler.get("path") and sampler.get("name"):
        def sampler_cls():
            from verl.utils.import_utils import load_extern_type

            return load_extern_type(sampler.path, sampler.name)

        _check(report, "trainer.v1.sampler.custom_sampler", sampler_cls)
    callback = cfg.trainer.get("checkpoint_callback_class", None)
    if callback:
        def callback_cls():
            from verl.utils.import_utils import load_class_from_fqn

            return load_class_from_fqn(str(callback), "checkpoint callback")

        _check(report, "trainer.checkpoint_callback_class", callback_cls)
    for lib in _paths_of(arr.model.get("external_lib", None)):
        _check(report, f"actor_rollout_ref.model.external_lib {lib}", lambda lib=lib: __import__(lib))

    _check_rl_blocks(report, cfg, strict)
    _check_startup(report, cfg)
    _check_paths(report, "data.train_files", cfg.data.train_files, strict)
    _check_paths(report, "data.val_files", cfg.data.val_files, strict)
    _report_pixel_budget(report, cfg.data.train_files, cfg.data.get("image_key", "images"))
    _check_ray_env(report, cfg)


def _check_models(report: Report, name: str, paths, needs: set, strict: bool) -> None:
    """The model paths of the families ``needs`` (``verl_ext.clinical.models.MODEL_FILES``): unset fails (the first
    batch would raise in a worker); absent on this machine warns (fails with --strict), since dry runs often run
    where the models are not; present but not what the loader needs (a RadGraph cache without the
    ``radgraph_model_type`` folder, a directory where a file is expected) fails, by the loaders' own rules."""
    from verl_ext.clinical.models import MODEL_FILES, model_path_problems

    keys = {need: [key for key, _, _ in MODEL_FILES.get(need, ())] for need in sorted(needs)}
    all_keys = [key for ks in keys.values() for key in ks]
    unset = [key for key in all_keys if not getattr(paths, key, None)]
    if unset:
        report.fail(name, f"not set: {', '.join(f'{name}.{k}' for k in unset)} (local paths; recipes: MODELS_DIR "
                          "or RATE_NER_PATH / BIOLORD_PATH / CHEXBERT_CHECKPOINT / CHEXBERT_BERT_PATH / "
                          "RADGRAPH_CACHE)")
    absent = [key for key in all_keys if getattr(paths, key, None)
              and not Path(os.path.expanduser(str(getattr(paths, key)))).exists()]
    if absent:
        (report.fail if strict else report.warn)(
            name, f"not found on this machine: {', '.join(f'{k}={getattr(paths, k)}' for k in absent)}")
    here = {need for need, ks in keys.items() if not set(ks) & (set(unset) | set(absent))}
    problems = model_path_problems(paths, here, name)
    for problem in problems:
        report.fail(name, problem)
    if all_keys and not (unset or absent or problems):
        detail = ", ".join(f"{k}={getattr(paths, k)}" for k in all_keys)
        if "radgraph" in needs:
            detail += f", radgraph_model_type={paths.radgraph_model_type}"
        report.ok(name, detail)


def _check_rl_blocks(report: Report, cfg, strict: bool) -> None:
    from verl_ext.algorithms.ditpo import WEIGHTINGS

    ditpo = cfg.get("ditpo", None)
    if ditpo is not None:
        weighting = ditpo.get("weighting", "none")
        if weighting not in WEIGHTINGS:
            report.fail("ditpo.weighting", f"{weighting!r} not in {WEIGHTINGS}")
        elif weighting != "none" and cfg.trainer.v1.trainer_mode != "editgrpo":
            report.fail("ditpo.weighting", f"{weighting!r} is applied only by trainer.v1.trainer_mode=editgrpo")
        else:
            report.ok("ditpo", f"weighting={weighting}, alpha={ditpo.get('alpha')}, beta={ditpo.get('beta')}")

    _check_freeze(report, cfg.actor_rollout_ref.model, "actor_rollout_ref.model")
    if cfg.actor_rollout_ref.actor.get("freeze_vision_tower", False):
        report.fail("actor_rollout_ref.actor.freeze_vision_tower", "verl 0.9.1's FSDP engine never reads it; use "
                    "actor_rollout_ref.model.external_lib=verl_ext.freeze "
                    "+actor_rollout_ref.model.override_config.verl_ext_freeze=vision_tower")

    from verl_ext.trainer.token_channel_step import check_config as check_token_channel

    for problem in check_token_channel(cfg):
        report.fail("token channel", problem)

    # --- the edit step, parsed and validated as the agent-loop workers do
    manager = cfg.actor_rollout_ref.rollout.agent.get("agent_loop_manager_class", None)
    uses_edit_manager = bool(manager) and str(manager).startswith("verl_ext.rollout")

    def edit_config():
        from verl_ext.rollout.config import EditRolloutConfig

        if uses_edit_manager:
            from verl_ext.rollout.edit_worker import validate_edit_setup

            parsed = validate_edit_setup(cfg)
        else:
            parsed = EditRolloutConfig.from_trainer_config(cfg)
        if parsed.edits_enabled:
            parsed.edit_config()  # the rules' own checks (tau, max_ops, matching), as the worker builds it
        return parsed

    n = int(cfg.actor_rollout_ref.rollout.n)
    edit = _check(report, "editgrpo -> EditRolloutConfig" + (" (validate_edit_setup)" if uses_edit_manager else ""),
                  edit_config, lambda c: f"scheme={c.scheme}, level={c.level}, tau={c.tau}, max_ops={c.max_ops}, "
                                         f"analyzer={c.analyzer}, edits per group of {n}={c.edits_per_group(n)}")
    if edit is not None:
        if edit.edits_enabled and not uses_edit_manager:
            report.fail("editgrpo.scheme", f"{edit.scheme!r} edits, but agent_loop_manager_class={manager!r} is not "
                        "verl_ext.rollout.EditAgentLoopManagerTQ: nothing would be edited (set editgrpo.scheme=none)")
        if uses_edit_manager and edit.needs_analyzer:
            from verl_ext.clinical.models import ModelPaths

            _check_models(report, "editgrpo.models", ModelPaths.from_dict(edit.models), {edit.analyzer}, strict)

    # --- OraPO (verl_ext/trainer/orapo_config.py), as its trainer and agent-loop manager check it
    if cfg.trainer.v1.get("trainer_mode") == "orapo" or str(manager).endswith("OraPOAgentLoopManagerTQ"):
        from verl_ext.trainer.orapo_config import validate_orapo_setup

        _check(report, "orapo -> validate_orapo_setup", lambda: validate_orapo_setup(cfg, check_paths=False),
               lambda c: f"negatives={c.negatives}, w=[{c.w_min}, {c.w_max}], gamma={c.gamma}, alpha={c.alpha}, "
                         f"beta={c.beta}; K={int(cfg.actor_rollout_ref.rollout.n) - 1} rollouts + 1 oracle")

    # --- the radiology reward's models
    rm = cfg.reward.reward_manager
    if rm.source == "register" and rm.name == "radiology":
        def reward_config():
            from verl_ext.reward.components import get_component
            from verl_ext.reward.config import RadiologyRewardConfig

            rc = RadiologyRewardConfig.from_trainer_config(cfg)
            needs = set()
            for name in rc.components:
                needs |= set(get_component(name).needs)
            if rc.token_weights != "none":  # the gradient DiTPO weights run CheXbert (verl_ext.reward.token_weights)
                needs.add("chexbert")
            return rc, needs

        result = _check(report, "reward.reward_kwargs -> RadiologyRewardConfig", reward_config,
                        lambda r: f"components={dict(r[0].components)}")
        if result is not None:
            rc, needs = result
            _check_models(report, "reward.reward_kwargs.models", rc.models, needs, strict)
            _check_facts_model(report, cfg, rc, strict)


def _check_facts_model(report: Report, cfg, rc, strict: bool) -> None:
    """The facts_llm component's model directory: unset or not a directory fails; absent here fails only with
    --strict, as the other model paths."""
    from verl_ext.trainer.orapo_config import FACTS_LLM, FACTS_MODEL_KEY, facts_model_problem

    if FACTS_LLM not in rc.components:
        return
    problem = facts_model_problem(cfg)
    if problem is None:
        report.ok(FACTS_MODEL_KEY, str(rc.facts_model))
    elif rc.facts_model and not Path(os.path.expanduser(str(rc.facts_model))).exists() and not strict:
        report.warn(FACTS_MODEL_KEY, f"not found on this machine: {rc.facts_model}")
    else:
        report.fail(FACTS_MODEL_KEY, problem)


def _report_pixel_budget(report: Report, train_files, image_key: str) -> None:
    """min/max pixels of the first training row's images (data_prep stores them per image)."""
    paths = [p for p in _paths_of(train_files) if p.endswith(".parquet") and Path(os.path.expanduser(p)).is_file()]
    if not paths:
        return
    try:
        import pyarrow.parquet as pq

        table = pq.ParquetFile(os.path.expanduser(paths[0])).read_row_group(0, columns=[image_key]).slice(0, 1)
        images = table.column(image_key).to_pylist()[0] or []
        budgets = sorted({(img.get("min_pixels"), img.get("max_pixels")) for img in images if isinstance(img, dict)})
    except Exception as exc:  # informational only
        report.warn("image pixel budget", f"could not read {paths[0]}: {_short(exc)}")
        return
    report.ok("image pixel budget (first training row)",
              f"{len(images)} image(s), (min_pixels, max_pixels) {budgets}; paper App. E: 262,144..401,408")


def _check_startup(report: Report, cfg) -> None:
    """The settings the editgrpo trainer checks before loading anything (verl_ext.config.startup); model paths are
    reported above (a warning when missing here, since dry runs often run where the models are not)."""
    from verl_ext.config.startup import startup_problems, wandb_credentials

    problems = startup_problems(cfg, check_models=False)
    for problem in problems:
        report.fail(problem.split(" ", 1)[0], problem.split(" ", 1)[1])
    if not problems:
        loggers = cfg.trainer.get("logger", [])
        wandb = "wandb" in (loggers if not isinstance(loggers, str) else [loggers])
        report.ok("start-up settings", f"data.val_batch_size={cfg.data.get('val_batch_size')}"
                  + (f", wandb credentials: {wandb_credentials()}" if wandb else ""))
    if cfg.reward.reward_manager.get("name") == "radiology":
        from verl_ext.reward.config import RadiologyRewardConfig

        try:
            rc = RadiologyRewardConfig.from_trainer_config(cfg)
        except ValueError:
            return  # reported by the reward_kwargs check
        gpus = rc.actor_num_gpus
        if rc.actor_placement == "node" and gpus:
            report.warn("scorer placement", f"actor_placement=node with actor_num_gpus={gpus:g} needs GPUs that "
                        f"trainer.n_gpus_per_node={cfg.trainer.n_gpus_per_node} leaves free on every node (else "
                        "the run fails at start); actor_placement=pool shares a training GPU instead")
        else:
            where = {"auto": f"a {0.2 if gpus is None else gpus:g} share of a training GPU when verl's pool has GPUs, "
                             "else CPU", "pool": f"a {0.2 if gpus is None else gpus:g} share of a training GPU",
                     "node": f"CPU ({rc.actor_num_cpus:g} CPUs)"}[rc.actor_placement]
            report.ok("scorer placement", f"one actor per node (reward models + edit analyzer) on {where}")


def _check_ray_env(report: Report, cfg) -> None:
    env_vars = _select(cfg, "ray_kwargs.ray_init.runtime_env.env_vars") or {}
    modules = env_vars.get("VERL_USE_EXTERNAL_MODULES")
    if modules:
        report.ok("ray runtime_env forwards VERL_USE_EXTERNAL_MODULES", str(modules))
    elif int(cfg.trainer.nnodes) > 1:
        report.warn("ray runtime_env", "VERL_USE_EXTERNAL_MODULES is not forwarded to the Ray workers of other nodes "
                    "(+ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES=verl_ext.register)")


# ------------------------------------------------------------------------------------------------------------------
# SFT
# ------------------------------------------------------------------------------------------------------------------


def _check_freeze(report: Report, model_cfg, prefix: str) -> None:
    """``verl_ext_freeze`` (verl_ext/freeze.py) needs ``external_lib=verl_ext.freeze`` and a known part."""
    from verl_ext.freeze import FREEZE_KEY, PARTS

    part = (model_cfg.get("override_config", None) or {}).get(FREEZE_KEY, None)
    if part is None:
        return
    libs = model_cfg.get("external_lib", None)
    libs = [libs] if libs is None or isinstance(libs, str) else list(libs)  # verl accepts one module or a list
    if part not in PARTS:
        report.fail(f"{prefix}.override_config.{FREEZE_KEY}", f"{part!r} not in {PARTS}")
    elif "verl_ext.freeze" not in libs:
        report.fail(f"{prefix}.external_lib", f"{prefix}.override_config.{FREEZE_KEY}={part} is applied only with "
                    f"{prefix}.external_lib=verl_ext.freeze")
    else:
        report.ok(f"{prefix} freeze", f"{part} frozen (verl_ext.freeze)")


def _check_sft(report: Report, cfg, strict: bool) -> None:
    from verl.utils.config import omega_conf_to_dataclass

    for section in ("engine", "optim", "checkpoint", "profiler"):
        _check(report, f"{section} -> dataclass", lambda s=section: omega_conf_to_dataclass(cfg[s]),
               lambda r: type(r).__name__)
    _check_freeze(report, cfg.model, "model")
    model_path = cfg.model.path
    if Path(os.path.expanduser(str(model_path))).exists():
        _check(report, "model -> HFModelConfig (tokenizer, processor)", lambda: omega_conf_to_dataclass(cfg.model),
               lambda r: f"model_type={getattr(r.hf_config, 'model_type', '?')}")
    else:
        (report.fail if strict else report.warn)("model.path", f"{model_path} not found on this machine; "
                                                 "HFModelConfig not checked")
    for key in ("save_freq", "test_freq"):
        value = cfg.trainer.get(key)
        if not (value == "after_each_epoch" or isinstance(value, int)):
            report.fail(f"trainer.{key}", f"{value!r}: an integer or 'after_each_epoch'")
    test_freq = cfg.trainer.get("test_freq")
    validates = test_freq == "after_each_epoch" or (isinstance(test_freq, int) and test_freq > 0)
    if validates and not cfg.data.get("val_files"):
        report.fail("trainer.test_freq", f"{test_freq!r} without data.val_files: verl's SFT trainer would iterate a "
                    "missing validation loader (set data.val_files or trainer.test_freq=-1)")
    if "hf_model" not in list(cfg.checkpoint.save_contents):
        report.warn("checkpoint.save_contents", "no hf_model: the RL stage needs a Hugging Face model directory")
    custom_cls = cfg.data.get("custom_cls", {}) or {}
    if custom_cls.get("path"):
        def dataset_cls():
            from verl.utils.import_utils import load_extern_object

            return load_extern_object(custom_cls.path, custom_cls.name)

        _check(report, "data.custom_cls", dataset_cls)
    _check_paths(report, "data.train_files", cfg.data.train_files, strict)
    _check_paths(report, "data.val_files", cfg.data.get("val_files"), strict)


# ------------------------------------------------------------------------------------------------------------------
# entry points
# ------------------------------------------------------------------------------------------------------------------


def dry_run(
    config_name: str,
    overrides: list[str],
    config_path: Optional[str] = None,
    strict: bool = False,
    external_modules: Optional[str] = None,
) -> Report:
    """Compose `config_name` from `config_path` (default: verl_ext/config) with `overrides` and check it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    report = Report(config_name=config_name)
    if external_modules is None:
        external_modules = os.environ.get("VERL_USE_EXTERNAL_MODULES", "")
    config_dir = str(Path(config_path).resolve()) if config_path else str(CONFIG_DIR)
    GlobalHydra.instance().clear()

    def do_compose():
        with initialize_config_dir(config_dir=config_dir, version_base=None):
            return compose(config_name=config_name, overrides=list(overrides))

    cfg = _check(report, f"hydra compose {config_dir}/{config_name} + {len(overrides)} override(s)", do_compose)
    if cfg is None:
        return report
    report.kind = "rl" if "actor_rollout_ref" in cfg else ("sft" if "engine" in cfg and "model" in cfg else "?")
    if report.kind == "rl":  # the SFT trainer uses none of the plugins
        _import_plugins(report, external_modules)
    missing = [key for key in _missing_keys(cfg) if not key.startswith(_inactive_sections(cfg))]
    missing += [key for key in _REQUIRED.get(report.kind, ()) if _select(cfg, key) in (None, "", [])]
    if missing:
        report.fail("required values", "set " + ", ".join(missing) + " (recipes: MODEL_PATH, DATA_DIR or TRAIN_FILES "
                    "/ VAL_FILES)")
    resolved = _check(report, "interpolations resolve",
                      lambda: OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)))
    report.config = cfg

    if missing or resolved is None:
        report.settings = _settings(cfg, _RL_SETTINGS if report.kind == "rl" else _SFT_SETTINGS)
        return report
    if report.kind == "rl":
        _check_rl(report, cfg, resolved, strict)
        report.settings = _settings(cfg, _RL_SETTINGS)
    elif report.kind == "sft":
        _check_sft(report, cfg, strict)
        report.settings = _settings(cfg, _SFT_SETTINGS)
    else:
        report.fail("config kind", "neither a ppo_trainer (actor_rollout_ref) nor an sft_trainer_engine config")
    return report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m verl_ext.config.dry_run", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--config-path", "-cp", default=None, help="config directory (default: verl_ext/config)")
    p.add_argument("--config-name", "-cn", default="editgrpo_trainer",
                   help="config to compose: editgrpo_trainer (RL) or editgrpo_sft (SFT)")
    p.add_argument("--strict", action="store_true", help="missing data/model/analyzer paths are errors")
    p.add_argument("--print-config", action="store_true", help="also print the full composed config")
    p.add_argument("--json", action="store_true", help="print one JSON object per run instead of the report")
    p.add_argument("--batch", default=None, help="file with one JSON list of arguments per line; checks each")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for verl.trainer.main_ppo")
    return p


def _parse_config_args(argv: list[str]) -> argparse.Namespace:
    # Hydra style `--config-path=X`/`--config-name=X` and `-cn X` both work; everything else is an override.
    return _parser().parse_intermixed_args(argv)


def _run_one(args: argparse.Namespace) -> Report:
    return dry_run(args.config_name, args.overrides, config_path=args.config_path, strict=args.strict)


def _print(report: Report, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(report.as_dict(), default=str), flush=True)
        return
    print(report.render(), flush=True)
    if args.print_config and report.config is not None:
        from omegaconf import OmegaConf

        print("-- full config\n" + OmegaConf.to_yaml(report.config), flush=True)


def main(argv: Optional[list[str]] = None) -> int:
    # `VERL_USE_EXTERNAL_MODULES` makes `import verl` raise on the first missing plugin module; read it here and
    # import the modules one by one instead, so the report names every missing piece.
    external_modules = os.environ.pop("VERL_USE_EXTERNAL_MODULES", "")
    args = _parse_config_args(sys.argv[1:] if argv is None else argv)
    if args.batch:
        failed = 0
        for line in Path(args.batch).read_text().splitlines():
            if not line.strip():
                continue
            one = _parse_config_args(json.loads(line))
            one.json = args.json or one.json
            report = dry_run(one.config_name, one.overrides, one.config_path, one.strict, external_modules)
            _print(report, one)
            failed += bool(report.errors)
        return 1 if failed else 0
    report = dry_run(args.config_name, args.overrides, args.config_path, args.strict, external_modules)
    _print(report, args)
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
