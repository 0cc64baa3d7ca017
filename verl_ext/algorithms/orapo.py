"""OraPO (Chen et al., arXiv 2509.18600, "Oracle-educated GRPO"): the per-prompt GRPO/DPO mixing, as pure functions.

For prompt i at step t, with K rollouts and their rewards:

* zero-reward rate ``z_i = |{k : r_k <= zero_tol}| / K`` (`zero_reward_rate`);
* EMA over the steps at which prompt i is seen (``alpha = 0.5``, `ZeroRewardEMA`):
  ``z~_i(t) = alpha * z~_i(t-1) + (1 - alpha) * z_i(t)``;
* mixing weight ``w_i = clip(w_min + (w_max - w_min) * z~_i ** gamma, w_min, w_max)`` (`mixing_weight`;
  ``w_min = 0.05, w_max = 0.15, gamma = 2``);
* loss ``L = (1/B) sum_i [(1 - w_i) L_GRPO,i + w_i L_DPO,i]``; GRPO branch Dr. GRPO, DPO branch length-normalised
  DPO with the reference report as the chosen response and the group's failed rollouts as rejected ones
  (`ln_dpo_loss`): ``L_DPO = -log sigma(beta * (Delta_c - Delta_r))``, ``Delta_y = (log pi(y) - log pi_ref(y)) / |y|``.

The numbers above are those of the paper as reported by two independent paper notes (shared/reference/peers.md
§1.3; the paper's own text is not available here). What had to be **reconstructed** (each is an option):

* the EMA's initial value: the first observation (``ema_init="first"``); ``"zero"`` starts from 0;
* which rollouts are the rejected responses (the notes disagree): ``negatives="zero_reward"`` (default: the
  abstract's "converting failed GRPO explorations" and the Chinese note), ``"all"`` (the English note) or
  ``"below_mean"`` (rewards below the group mean; zero-reward rollouts always count, so an all-zero group still has
  negatives);
* several rejected responses per prompt: ``L_DPO,i`` is the mean over the (chosen, rejected) pairs;
* a prompt with no rejected response (e.g. no zero reward under ``negatives="zero_reward"``) has no DPO term that
  step, so its weight is 0 (pure GRPO), and "in the DPO branch" means "has at least one pair";
* ``beta = 0.1`` (the DPO default of Rafailov et al., 2023; the notes give none) and ``zero_tol = 0``;
* a rollout the reward could not score (``BatchRow.unscorable``: the reward's ``invalid`` flag, e.g. FactS with no
  present label in the reference or an unparseable LLM answer) is not a failed exploration: it is left out of the
  zero-reward rate and of the rejected responses, and counted (``orapo/unscorable/*``). A prompt with no scorable
  rollout has no rate that step (its EMA is left as it was) and no DPO term.

Per-sample decomposition (why `dpo_row_terms` exists): verl splits a mini-batch into micro-batches by token budget,
so the chosen and a rejected response of a pair need not be in the same forward pass. Each row therefore carries the
*frozen* length-normalised log-ratio of its partners (computed from the step's old log-probs), and its loss is
``coef * sum_k -log sigma(beta * sign * (Delta_row(theta) - partner_k))``. At theta = theta_old (verl's first
update on fresh rollouts) the sum over rows has exactly the gradient of ``sum_i w_i L_DPO,i``; the value is twice
it (each pair is counted from both ends), so the trainer reports the DPO loss itself from the old log-probs.

Pure torch; no verl import.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Optional, Sequence

import torch
import torch.nn.functional as F

# OraPO as reported in shared/reference/peers.md §1.3.
DEFAULT_ALPHA = 0.5
DEFAULT_W_MIN = 0.05
DEFAULT_W_MAX = 0.15
DEFAULT_GAMMA = 2.0
# Reconstructed (see the module docstring).
DEFAULT_BETA = 0.1
# Ours: the constant that divides the GRPO branch's per-sequence token sum (Dr. GRPO's constant normaliser), fixed
# so that the GRPO/DPO balance set by w_i does not move with max_response_length; 4096 = the length the OraPO
# recipes ran with before (the EditGRPO authors' max_response_length), so their balance is unchanged.
DEFAULT_GRPO_TOKEN_NORM = 4096.0
NEGATIVES = ("zero_reward", "all", "below_mean")
DEFAULT_NEGATIVES = "zero_reward"
EMA_INITS = ("first", "zero")


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}={value!r} is not a finite number")
    return value


def zero_reward_rate(rewards: Sequence[float], zero_tol: float = 0.0) -> float:
    """Share of a group's rewards that are zero (``r <= zero_tol``); the group must be non-empty."""
    values = [_finite("reward", r) for r in rewards]
    if not values:
        raise ValueError("zero_reward_rate of an empty group")
    return sum(r <= zero_tol for r in values) / len(values)


def mixing_weight(
    z_ema: float, w_min: float = DEFAULT_W_MIN, w_max: float = DEFAULT_W_MAX, gamma: float = DEFAULT_GAMMA
) -> float:
    """``clip(w_min + (w_max - w_min) * z_ema ** gamma, w_min, w_max)``: the DPO share of a prompt's loss."""
    z_ema, w_min, w_max, gamma = (_finite(n, v) for n, v in (("z_ema", z_ema), ("w_min", w_min),
                                                                ("w_max", w_max), ("gamma", gamma)))
    if not 0.0 <= z_ema <= 1.0:
        raise ValueError(f"z_ema={z_ema} is not a rate in [0, 1]")
    if not 0.0 <= w_min <= w_max <= 1.0:
        raise ValueError(f"need 0 <= w_min <= w_max <= 1, got w_min={w_min}, w_max={w_max}")
    if gamma <= 0:
        raise ValueError(f"gamma={gamma} must be > 0")
    return min(max(w_min + (w_max - w_min) * z_ema**gamma, w_min), w_max)


def ema_update(previous: Optional[float], z: float, alpha: float = DEFAULT_ALPHA, init: str = "first") -> float:
    """One EMA step ``alpha * previous + (1 - alpha) * z``; ``previous=None`` (first visit) starts from ``z``
    (``init="first"``) or from 0 (``init="zero"``)."""
    z, alpha = _finite("z", z), _finite("alpha", alpha)
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha={alpha} must be in [0, 1)")
    if init not in EMA_INITS:
        raise ValueError(f"ema_init={init!r}; expected one of {EMA_INITS}")
    if previous is None:
        if init == "first":
            return z
        previous = 0.0
    return alpha * float(previous) + (1.0 - alpha) * z


class ZeroRewardEMA:
    """The per-prompt EMA of the zero-reward rate, keyed by a stable prompt id (the dataset ``index``).

    ``state_dict`` / ``load_state_dict`` make it checkpointable (plain dict of floats).
    """

    def __init__(self, alpha: float = DEFAULT_ALPHA, init: str = "first"):
        ema_update(None, 0.0, alpha, init)  # validates alpha and init
        self.alpha = float(alpha)
        self.init = init
        self._values: dict[Hashable, float] = {}

    def update(self, prompt_id: Hashable, z: float) -> float:
        value = ema_update(self._values.get(prompt_id), z, self.alpha, self.init)
        self._values[prompt_id] = value
        return value

    def get(self, prompt_id: Hashable) -> Optional[float]:
        return self._values.get(prompt_id)

    def __len__(self) -> int:
        return len(self._values)

    def state_dict(self) -> dict:
        return {"alpha": self.alpha, "init": self.init, "values": dict(self._values)}

    def load_state_dict(self, state: dict) -> None:
        self._values = {k: float(v) for k, v in dict(state["values"]).items()}


def select_negatives(rewards: Sequence[float], mode: str = DEFAULT_NEGATIVES, zero_tol: float = 0.0) -> list[int]:
    """Indices of the group's rollouts that are rejected responses in the DPO branch (see the module docstring)."""
    values = [_finite("reward", r) for r in rewards]
    if mode == "zero_reward":
        return [k for k, r in enumerate(values) if r <= zero_tol]
    if mode == "all":
        return list(range(len(values)))
    if mode == "below_mean":
        mean = sum(values) / len(values) if values else 0.0
        return [k for k, r in enumerate(values) if r < mean or r <= zero_tol]
    raise ValueError(f"negatives={mode!r}; expected one of {NEGATIVES}")


def length_normalised_log_ratio(
    log_probs: torch.Tensor, ref_log_probs: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``Delta = sum_t mask * (log pi - log pi_ref) / sum_t mask`` per row of ``(B, L)`` tensors (0 for empty rows)."""
    mask = mask.to(log_probs.dtype)
    length = mask.sum(-1)
    return ((log_probs - ref_log_probs) * mask).sum(-1) / length.clamp(min=1.0)


def ln_dpo_loss(delta_chosen: torch.Tensor, delta_rejected: torch.Tensor, beta: float = DEFAULT_BETA) -> torch.Tensor:
    """LN-DPO loss of (chosen, rejected) pairs: ``-log sigma(beta * (Delta_c - Delta_r))``, element-wise."""
    return -F.logsigmoid(beta * (delta_chosen - delta_rejected))


@dataclass
class PromptPlan:
    """What OraPO decides for one prompt at one step."""

    z: float
    """zero-reward rate of its scorable rollouts this step (nan: none was scorable)"""
    z_ema: float
    weight: float
    """w_i: 0 when the prompt has no DPO pair this step"""
    negatives: list[int]
    """rollout positions (within the group) that are rejected responses"""

    @property
    def in_dpo(self) -> bool:
        return bool(self.negatives) and self.weight > 0


def plan_prompt(
    rewards: Sequence[float],
    z_ema: float,
    has_oracle: bool = True,
    negatives: str = DEFAULT_NEGATIVES,
    w_min: float = DEFAULT_W_MIN,
    w_max: float = DEFAULT_W_MAX,
    gamma: float = DEFAULT_GAMMA,
    zero_tol: float = 0.0,
) -> PromptPlan:
    """The prompt's mixing weight and rejected rollouts, given its rewards this step and its updated EMA.

    ``has_oracle=False`` (no usable reference response, e.g. longer than the response limit) means no DPO pair.
    """
    z = zero_reward_rate(rewards, zero_tol)
    neg = select_negatives(rewards, negatives, zero_tol) if has_oracle else []
    weight = mixing_weight(z_ema, w_min, w_max, gamma) if neg else 0.0
    return PromptPlan(z=z, z_ema=float(z_ema), weight=weight, negatives=neg)


@dataclass
class RowTerms:
    """Per-row inputs of the decomposed DPO loss (see `dpo_row_terms`)."""

    sign: torch.Tensor
    """(R,) +1 chosen, -1 rejected, 0 not in a pair"""
    coef: torch.Tensor
    """(R,) weight of each of the row's pair terms"""
    partners: torch.Tensor
    """(R, P) frozen Delta of the row's partners"""
    partner_mask: torch.Tensor
    """(R, P) 1 where ``partners`` holds a partner"""


def dpo_row_terms(
    delta_old: torch.Tensor, groups: Sequence[tuple[int, Sequence[int], float]], num_partners: int,
    rows_per_prompt: float = 1.0,
) -> RowTerms:
    """Per-row terms for ``sum_groups w * mean_pairs LN-DPO``, decomposed row by row (see the module docstring).

    Args:
        delta_old: (R,) length-normalised log-ratios of every row under the old policy (no grad).
        groups: one ``(chosen_row, rejected_rows, w)`` per prompt in the DPO branch.
        num_partners: width P of ``partners`` (at least the largest number of rejected rows of a group).
        rows_per_prompt: multiplies every coefficient, so that a loss normalised by the number of *rows* of the
            global mini-batch (verl's ``global_batch_size``) is a mean over *prompts*.
    """
    n_rows = delta_old.shape[0]
    sign = torch.zeros(n_rows)
    coef = torch.zeros(n_rows)
    partners = torch.zeros(n_rows, num_partners)
    partner_mask = torch.zeros(n_rows, num_partners)
    delta_old = delta_old.detach().float().cpu()
    used: set[int] = set()
    for chosen, rejected, w in groups:
        rejected = list(rejected)
        if not rejected or w <= 0:
            continue
        if len(rejected) > num_partners:
            raise ValueError(f"{len(rejected)} rejected rows exceed num_partners={num_partners}")
        rows = [chosen, *rejected]
        if used.intersection(rows) or len(set(rows)) != len(rows):
            raise ValueError(f"row used by two DPO pairs groups: {sorted(used.intersection(rows))}")
        used.update(rows)
        c = float(w) * rows_per_prompt / len(rejected)
        sign[chosen], coef[chosen] = 1.0, c
        partners[chosen, : len(rejected)] = delta_old[rejected]
        partner_mask[chosen, : len(rejected)] = 1.0
        for r in rejected:
            sign[r], coef[r] = -1.0, c
            partners[r, 0] = delta_old[chosen]
            partner_mask[r, 0] = 1.0
    return RowTerms(sign=sign, coef=coef, partners=partners, partner_mask=partner_mask)


def dpo_row_loss(
    delta: torch.Tensor, sign: torch.Tensor, coef: torch.Tensor, partners: torch.Tensor, partner_mask: torch.Tensor,
    beta: float = DEFAULT_BETA,
) -> torch.Tensor:
    """(R,) decomposed LN-DPO loss of each row: ``coef * sum_k mask_k * -log sigma(beta * sign * (delta - p_k))``.

    ``delta`` carries the gradient (current policy); ``partners`` are frozen. Rows with ``sign == 0`` give 0.
    """
    dtype = delta.dtype
    sign, coef = sign.to(delta.device, dtype), coef.to(delta.device, dtype)
    partners, partner_mask = partners.to(delta.device, dtype), partner_mask.to(delta.device, dtype)
    margins = beta * sign[:, None] * (delta[:, None] - partners)
    per_pair = -F.logsigmoid(margins) * partner_mask
    return coef * per_pair.sum(-1) * (sign != 0).to(dtype)


@dataclass
class BatchRow:
    """One trajectory of a training batch, as the OraPO advantage step sees it."""

    uid: str
    """group id (verl's per-step ``uid``)"""
    prompt_id: Hashable
    """stable prompt id across steps (the dataset ``index``): the key of the EMA"""
    reward: float
    delta_old: float
    """length-normalised log-ratio ``(log pi_old - log pi_ref) / |y|`` of the response"""
    oracle: bool = False
    oracle_usable: bool = True
    """False when the reference was cut at the response limit"""
    padding: bool = False
    """verl's synthetic padding rows: no loss, no statistics"""
    unscorable: bool = False
    """the reward could not score this rollout (``invalid``): not a zero reward, not a rejected response"""


@dataclass
class BatchPlan:
    grpo_weight: torch.Tensor
    """(R,) ``(1 - w_i) * n / (n - 1)`` on rollouts, 0 on oracle and padding rows"""
    terms: RowTerms
    plans: dict
    """uid -> PromptPlan"""
    metrics: dict


def plan_batch(
    rows: Sequence[BatchRow],
    ema: ZeroRewardEMA,
    group_size: int,
    negatives: str = DEFAULT_NEGATIVES,
    w_min: float = DEFAULT_W_MIN,
    w_max: float = DEFAULT_W_MAX,
    gamma: float = DEFAULT_GAMMA,
    beta: float = DEFAULT_BETA,
    zero_tol: float = 0.0,
) -> BatchPlan:
    """OraPO's per-row loss inputs and per-step metrics for one batch; updates ``ema`` once per prompt.

    Every group (``uid``) must hold ``group_size`` rows: K = group_size - 1 rollouts and exactly one oracle row.
    """
    if group_size < 2:
        raise ValueError(f"group_size={group_size}: OraPO needs K >= 1 rollouts plus the oracle")
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        if not row.padding:
            groups.setdefault(row.uid, []).append(i)
    grpo_weight = torch.zeros(len(rows))
    delta_old = torch.tensor([float(r.delta_old) for r in rows])
    pair_groups, plans = [], {}
    margins, losses, zs, z_emas, weights = [], [], [], [], []
    chosen_deltas, rejected_deltas = [], []
    truncated, rollout_rewards, oracle_rewards = 0, [], []
    unscorable, unscorable_prompts = 0, 0
    for uid, idx in groups.items():
        oracles = [i for i in idx if rows[i].oracle]
        rollouts = [i for i in idx if not rows[i].oracle]
        if len(oracles) != 1 or len(idx) != group_size:
            raise ValueError(f"OraPO: group uid={uid} has {len(idx)} rows with {len(oracles)} oracle row(s); "
                             f"expected {group_size} rows with exactly one oracle (rollout.n = K + 1)")
        oracle = oracles[0]
        scored = [k for k, i in enumerate(rollouts) if not rows[i].unscorable]
        unscorable += len(rollouts) - len(scored)
        rewards = [rows[rollouts[k]].reward for k in scored]
        if scored:
            z = zero_reward_rate(rewards, zero_tol)
            z_ema = ema.update(rows[oracle].prompt_id, z)
            plan = plan_prompt(rewards, z_ema, rows[oracle].oracle_usable, negatives, w_min, w_max, gamma, zero_tol)
            plan.negatives = [scored[k] for k in plan.negatives]  # positions among the group's rollouts
            zs.append(z)
            z_emas.append(z_ema)
        else:
            unscorable_prompts += 1
            previous = ema.get(rows[oracle].prompt_id)
            plan = PromptPlan(z=math.nan, z_ema=math.nan if previous is None else previous, weight=0.0, negatives=[])
        plans[uid] = plan
        truncated += not rows[oracle].oracle_usable
        weights.append(plan.weight)
        rollout_rewards.extend(rewards)
        oracle_rewards.append(rows[oracle].reward)
        grpo_weight[rollouts] = (1.0 - plan.weight) * group_size / (group_size - 1)
        if plan.in_dpo:
            rejected = [rollouts[k] for k in plan.negatives]
            pair_groups.append((oracle, rejected, plan.weight))
            m = delta_old[oracle] - delta_old[rejected]
            margins.extend(m.tolist())
            chosen_deltas.append(float(delta_old[oracle]))
            rejected_deltas.extend(delta_old[rejected].tolist())
            losses.append(ln_dpo_loss(delta_old[oracle], delta_old[rejected], beta).mean().item())
    terms = dpo_row_terms(delta_old, pair_groups, num_partners=group_size - 1, rows_per_prompt=group_size)
    n_prompts = len(groups)
    dpo_weights = [w for w, g in zip(weights, plans.values()) if g.in_dpo]
    metrics = {
        "orapo/prompts": float(n_prompts),
        "orapo/zrr/mean": _mean(zs),
        "orapo/all_zero_share": _mean([float(z == 1.0) for z in zs]),
        "orapo/z_ema/mean": _mean(z_emas),
        "orapo/w/mean": _mean(weights),
        "orapo/w/mean_in_dpo": _mean(dpo_weights),
        "orapo/dpo_share": len(pair_groups) / n_prompts if n_prompts else 0.0,
        "orapo/dpo/pairs": float(len(margins)),
        "orapo/dpo/margin/mean": _mean(margins),
        "orapo/dpo/accuracy": _mean([float(m > 0) for m in margins]),
        # DPO's implicit rewards / beta (the length-normalised old-vs-reference log-ratios of the pairs' two sides)
        "orapo/dpo/chosen_log_ratio/mean": _mean(chosen_deltas),
        "orapo/dpo/rejected_log_ratio/mean": _mean(rejected_deltas),
        "orapo/dpo/loss": _mean(losses),
        "orapo/oracle_truncated": float(truncated),
        "orapo/unscorable/count": float(unscorable),
        "orapo/unscorable/share": unscorable / max(1, sum(len(idx) - 1 for idx in groups.values())),
        "orapo/unscorable/prompts": float(unscorable_prompts),
        "orapo/rollout_reward/mean": _mean(rollout_rewards),
        "orapo/oracle_reward/mean": _mean(oracle_rewards),
        "orapo/ema_prompts": float(len(ema)),
    }
    return BatchPlan(grpo_weight=grpo_weight, terms=terms, plans=plans, metrics=metrics)


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if len(values) else 0.0
