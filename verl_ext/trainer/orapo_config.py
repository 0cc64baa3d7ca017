"""The ``orapo`` Hydra key (OraPO, arXiv 2509.18600) and the start-up check of a config that trains with it.

OraPO is switched on by three settings that must agree (`validate_orapo_setup` checks them, and the others OraPO
depends on, before any model loads)::

    trainer.v1.trainer_mode=orapo
    actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.rollout.oracle_worker.OraPOAgentLoopManagerTQ
    actor_rollout_ref.rollout.n=K+1     # K sampled rollouts + the oracle (reference report) trajectory
    +orapo.negatives=zero_reward ...    # the fields of OraPOConfig

Sources of the defaults: ``verl_ext.algorithms.orapo``.

The check also covers what would otherwise fail late or silently: the ``facts_llm`` reward's model directory
(vLLM loads it on the first reward batch, after the policy) and the inserted-token loss modes (their loss would
replace OraPO's; see `validate_orapo_setup`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

from verl_ext.algorithms import orapo as algo
from verl_ext.config.access import config_get

TRAINER_MODE = "orapo"
MANAGER_CLASS = "verl_ext.rollout.oracle_worker.OraPOAgentLoopManagerTQ"
REQUIRED_LOSS_AGG_MODE = "seq-mean-token-sum-norm"
FACTS_LLM = "facts_llm"
FACTS_MODEL_KEY = "reward.reward_kwargs.facts_model"


@dataclass
class OraPOConfig:
    alpha: float = algo.DEFAULT_ALPHA
    """EMA momentum of the per-prompt zero-reward rate (paper: 0.5)."""
    w_min: float = algo.DEFAULT_W_MIN
    """Smallest DPO share of a prompt in the DPO branch (paper: 0.05)."""
    w_max: float = algo.DEFAULT_W_MAX
    """Largest DPO share (paper: 0.15)."""
    gamma: float = algo.DEFAULT_GAMMA
    """Exponent of the power map from the EMA to the weight (paper: 2)."""
    beta: float = algo.DEFAULT_BETA
    """LN-DPO temperature (reconstructed: 0.1, the DPO default)."""
    grpo_token_norm: float = algo.DEFAULT_GRPO_TOKEN_NORM
    """Constant dividing the GRPO branch's per-sequence token sum, in place of ``actor.loss_scale_factor`` (=
    max_response_length), so the GRPO/DPO balance does not depend on the response length (ours: 4096)."""
    negatives: str = algo.DEFAULT_NEGATIVES
    """Rejected responses: zero_reward (default) | all | below_mean (see verl_ext.algorithms.orapo)."""
    zero_tol: float = 0.0
    """A reward <= zero_tol counts as zero."""
    ema_init: str = "first"
    """first: a prompt's first EMA value is its first zero-reward rate; zero: the EMA starts at 0."""

    def __post_init__(self) -> None:
        algo.mixing_weight(0.0, self.w_min, self.w_max, self.gamma)  # validates w_min, w_max, gamma
        algo.ema_update(None, 0.0, self.alpha, self.ema_init)  # validates alpha, ema_init
        if self.negatives not in algo.NEGATIVES:
            raise ValueError(f"orapo.negatives={self.negatives!r}; expected one of {algo.NEGATIVES}")
        if not float(self.grpo_token_norm) > 0:
            raise ValueError(f"orapo.grpo_token_norm={self.grpo_token_norm} must be > 0")
        if not float(self.beta) > 0:
            raise ValueError(f"orapo.beta={self.beta} must be > 0")

    @classmethod
    def from_trainer_config(cls, config: Any) -> "OraPOConfig":
        """Read the ``orapo`` key of a verl trainer config (absent -> defaults); unknown keys are an error."""
        section = config.get("orapo", None) if hasattr(config, "get") else None
        if section is None:
            return cls()
        try:
            from omegaconf import OmegaConf

            if OmegaConf.is_config(section):
                section = OmegaConf.to_container(section, resolve=True)
        except ImportError:  # pragma: no cover
            pass
        section = dict(section)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"orapo: unknown keys {unknown}; known keys: {sorted(known)}")
        return cls(**section)

    def to_dict(self) -> dict:
        return asdict(self)


def facts_model_problem(config: Any) -> Optional[str]:
    """Why ``reward.reward_kwargs.facts_model`` cannot serve the ``facts_llm`` reward component (unset, missing or
    not a directory); None when it can or when the radiology reward does not use that component."""
    if config_get(config, "reward.reward_manager.name") != "radiology":
        return None
    from verl_ext.reward.config import RadiologyRewardConfig

    try:
        rc = RadiologyRewardConfig.from_trainer_config(config)
    except ValueError:
        return None  # the reward's own start-up check names it
    if FACTS_LLM not in rc.components:
        return None
    from verl_ext.clinical.models import require

    try:
        require(rc.facts_model, FACTS_MODEL_KEY, "instruction-model directory of the facts_llm reward (recipes: "
                                                 "FACTS_MODEL)")
    except (ValueError, FileNotFoundError) as exc:
        return str(exc)
    return None


def validate_orapo_setup(config: Any, check_paths: bool = True) -> OraPOConfig:
    """Check a trainer config that selects OraPO (trainer mode or manager); returns the parsed ``orapo`` key.

    Raises ``ValueError`` naming every setting OraPO cannot run with. ``check_paths=False`` leaves out the
    ``facts_model`` directory (the dry run reports it with the other model paths).
    """
    cfg = OraPOConfig.from_trainer_config(config)
    problems = []
    mode = config_get(config, "trainer.v1.trainer_mode")
    manager = config_get(config, "actor_rollout_ref.rollout.agent.agent_loop_manager_class")
    if mode != TRAINER_MODE:
        problems.append(f"trainer.v1.trainer_mode={mode!r}: OraPO's loss and advantages need "
                        f"trainer_mode={TRAINER_MODE}")
    if manager != MANAGER_CLASS:
        problems.append(f"actor_rollout_ref.rollout.agent.agent_loop_manager_class={manager!r}: the oracle trajectory "
                        f"(reference report) is added by {MANAGER_CLASS}")
    n = int(config_get(config, "actor_rollout_ref.rollout.n", 1))
    if n < 2:
        problems.append(f"actor_rollout_ref.rollout.n={n}: OraPO needs n = K sampled rollouts + 1 oracle, K >= 1")
    agg = config_get(config, "actor_rollout_ref.actor.loss_agg_mode")
    if agg != REQUIRED_LOSS_AGG_MODE:
        problems.append(f"actor_rollout_ref.actor.loss_agg_mode={agg!r}: OraPO's GRPO branch is Dr. GRPO "
                        f"({REQUIRED_LOSS_AGG_MODE}); the per-prompt mixing is exact only for it")
    kl_loss = config_get(config, "actor_rollout_ref.actor.use_kl_loss", False)
    if not (kl_loss or config_get(config, "algorithm.use_kl_in_reward", False)):
        problems.append("actor_rollout_ref.actor.use_kl_loss=False: the LN-DPO term needs the reference policy's "
                        "log-probs, which verl computes only with a KL term (set use_kl_loss=True; "
                        "kl_loss_coef=0 keeps the GRPO branch KL-free)")
    if config_get(config, "distillation.enabled", False):
        problems.append("distillation.enabled=True: verl's distillation loss replaces the actor loss OraPO installs")
    rc = config_get(config, "algorithm.rollout_correction", None) or {}
    if rc.get("bypass_mode", False) if hasattr(rc, "get") else False:
        problems.append("algorithm.rollout_correction.bypass_mode=True: the oracle trajectory has no rollout "
                        "log-probs; disable bypass mode")
    if config_get(config, "actor_rollout_ref.rollout.calculate_log_probs", False):
        problems.append("actor_rollout_ref.rollout.calculate_log_probs=True: the oracle trajectory was not sampled, "
                        "so it has no behaviour-policy log-probs; set it to False (the actor recomputes them)")
    from verl_ext.algorithms.offpolicy import LOSS_MODES as INSERTED_LOSS_MODES

    loss_mode = config_get(config, "actor_rollout_ref.actor.policy_loss.loss_mode", "vanilla")
    if loss_mode in INSERTED_LOSS_MODES:
        problems.append(f"actor_rollout_ref.actor.policy_loss.loss_mode={loss_mode}: the inserted-token losses act on "
                        "the inserted tokens of edited responses, and OraPO has no edited responses; the editgrpo "
                        "trainer would install their loss (verl_ext.trainer.token_channel_step.install_loss) in "
                        "place of OraPO's. Use loss_mode=vanilla")
    if check_paths:
        problem = facts_model_problem(config)
        if problem:
            problems.append(problem)
    if problems:
        raise ValueError("OraPO setup:\n  - " + "\n  - ".join(problems))
    return cfg
