"""Advantage estimators registered with verl: ``algorithm.adv_estimator=dr_grpo``.

Import-light: verl imports this module (through ``verl_ext.register``) in every process. The estimator is registered
in ``verl.trainer.ppo.core_algos.ADV_ESTIMATOR_REGISTRY`` as soon as that module is imported (see
`verl_ext.post_import`), so importing this file costs nothing when no advantage is ever computed.

**Dr. GRPO** (Liu et al., 2025, arXiv 2503.20783; EditGRPO paper Sec. 2 "removes this bias-inducing quotient"):
the advantage of response i in the group of prompt q is ``R(q, o_i) - mean_j R(q, o_j)``, broadcast over the
response tokens, with no division by the group's standard deviation. It is verl's GRPO with
``norm_adv_by_std_in_grpo=False``, bit for bit (`tests/algorithms/test_advantages.py`); having a named estimator
makes the recipes state the intent. The other half of Dr. GRPO, the constant length normaliser, is a loss setting:
``actor.loss_agg_mode=seq-mean-token-sum-norm`` with a constant ``actor.loss_scale_factor``.

The group is every trajectory with the same ``uid``: for EditGRPO, the G/2 sampled responses *and* their G/2 edited
copies (the edits shift the baseline, as in the authors' implementation).

DEER's token-weighted advantages (DiTPO) need the response token ids, which verl does not pass to estimators; they
are applied by the ``editgrpo`` trainer after this estimator runs (see `verl_ext.algorithms.ditpo`).
"""
from __future__ import annotations

from typing import Any, Optional

from verl_ext.post_import import when_imported

DR_GRPO = "dr_grpo"
_CORE_ALGOS = "verl.trainer.ppo.core_algos"


def compute_dr_grpo_outcome_advantage(
    token_level_rewards,
    response_mask,
    index,
    epsilon: float = 1e-6,
    config: Optional[Any] = None,
    **kwargs,
):
    """Dr. GRPO outcome advantage: per-``uid`` mean-centred sequence reward, broadcast over ``response_mask``.

    Args:
        token_level_rewards: (bs, response_length); the sequence reward is the sum over tokens.
        response_mask: (bs, response_length).
        index: (bs,) group ids (verl passes ``uid``).
        epsilon: unused (no std division); kept for signature compatibility with verl's GRPO.
        config: verl's ``AlgoConfig`` (unused).

    Returns:
        (advantages, returns), both (bs, response_length) and identical, as verl's GRPO returns them.
    """
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    return compute_grpo_outcome_advantage(
        token_level_rewards=token_level_rewards,
        response_mask=response_mask,
        index=index,
        epsilon=epsilon,
        norm_adv_by_std_in_grpo=False,
        config=config,
    )


def _register() -> None:
    from verl.trainer.ppo.core_algos import register_adv_est

    register_adv_est(DR_GRPO)(compute_dr_grpo_outcome_advantage)


when_imported(_CORE_ALGOS, _register)
