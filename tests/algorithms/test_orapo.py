"""Known-answer tests of OraPO's pure pieces: zero-reward rate, EMA, mixing weight, LN-DPO and its decomposition."""
import math

import pytest
import torch

from verl_ext.algorithms.orapo import (
    ZeroRewardEMA,
    dpo_row_loss,
    dpo_row_terms,
    ema_update,
    length_normalised_log_ratio,
    ln_dpo_loss,
    mixing_weight,
    plan_prompt,
    select_negatives,
    zero_reward_rate,
)


def test_mixing_weight_known_values():
    # paper defaults w_min=0.05, w_max=0.15, gamma=2
    assert mixing_weight(0.0) == pytest.approx(0.05)
    assert mixing_weight(1.0) == pytest.approx(0.15)
    assert mixing_weight(0.5) == pytest.approx(0.05 + 0.10 * 0.25)  # 0.075
    assert mixing_weight(0.3) == pytest.approx(0.05 + 0.10 * 0.09)  # 0.059
    assert mixing_weight(0.5, 0.0, 1.0, 1.0) == pytest.approx(0.5)
    assert mixing_weight(0.5, 0.2, 0.2, 3.0) == pytest.approx(0.2)  # w_min == w_max: constant


@pytest.mark.parametrize("args", [(1.5,), (-0.1,), (float("nan"),), (0.5, 0.2, 0.1), (0.5, 0.05, 0.15, 0.0)])
def test_mixing_weight_rejects_bad_input(args):
    with pytest.raises(ValueError):
        mixing_weight(*args)


def test_zero_reward_rate():
    assert zero_reward_rate([0.0, 0.0, 0.3, 0.0]) == pytest.approx(0.75)
    assert zero_reward_rate([0.0, 0.01], zero_tol=0.01) == 1.0
    assert zero_reward_rate([0.2, 0.9]) == 0.0
    with pytest.raises(ValueError):
        zero_reward_rate([])
    with pytest.raises(ValueError):
        zero_reward_rate([0.0, float("nan")])


def test_ema_update_known_sequence():
    # alpha = 0.5, first visit starts from the observation
    z = ema_update(None, 1.0)
    assert z == 1.0
    z = ema_update(z, 0.0)
    assert z == pytest.approx(0.5)
    z = ema_update(z, 0.5)
    assert z == pytest.approx(0.5)
    z = ema_update(z, 0.0, alpha=0.9)
    assert z == pytest.approx(0.45)
    assert ema_update(None, 1.0, init="zero") == pytest.approx(0.5)
    with pytest.raises(ValueError):
        ema_update(None, 1.0, alpha=1.0)


def test_per_prompt_ema_state():
    ema = ZeroRewardEMA()
    assert ema.update(7, 1.0) == 1.0 and ema.update(8, 0.0) == 0.0
    assert ema.update(7, 0.0) == pytest.approx(0.5)  # prompt 7's history only
    assert ema.get(8) == 0.0 and ema.get(9) is None and len(ema) == 2
    restored = ZeroRewardEMA()
    restored.load_state_dict(ema.state_dict())
    assert restored.update(7, 0.0) == pytest.approx(0.25)


def test_select_negatives_modes():
    rewards = [0.0, 0.6, 0.2, 0.0]  # mean 0.2
    assert select_negatives(rewards, "zero_reward") == [0, 3]
    assert select_negatives(rewards, "all") == [0, 1, 2, 3]
    assert select_negatives(rewards, "below_mean") == [0, 3]
    assert select_negatives([0.1, 0.5, 0.3], "below_mean") == [0]
    assert select_negatives([0.0, 0.0, 0.0], "below_mean") == [0, 1, 2]  # an all-zero group still fails
    with pytest.raises(ValueError, match="negatives"):
        select_negatives(rewards, "worst")


def test_plan_prompt():
    plan = plan_prompt([0.0, 0.0, 0.0, 0.0], z_ema=1.0)
    assert plan.z == 1.0 and plan.weight == pytest.approx(0.15) and plan.negatives == [0, 1, 2, 3] and plan.in_dpo
    plan = plan_prompt([0.5, 0.4], z_ema=0.5)  # no zero reward: no pair, pure GRPO
    assert plan.z == 0.0 and plan.weight == 0.0 and not plan.in_dpo
    plan = plan_prompt([0.5, 0.4], z_ema=0.0, negatives="all")
    assert plan.weight == pytest.approx(0.05) and plan.negatives == [0, 1]
    assert not plan_prompt([0.0, 0.0], z_ema=1.0, has_oracle=False).in_dpo


def test_length_normalised_log_ratio_and_ln_dpo_known_answer():
    lp = torch.tensor([[-1.0, -2.0, -9.0], [-1.0, -1.0, -1.0]])
    ref = torch.tensor([[-1.5, -2.5, 0.0], [-2.0, -2.0, -2.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    delta = length_normalised_log_ratio(lp, ref, mask)
    torch.testing.assert_close(delta, torch.tensor([0.5, 1.0]))
    # Delta_c = 0.5, Delta_r = 1.0, beta = 2: -log sigma(-1) = log(1 + e)
    loss = ln_dpo_loss(delta[:1], delta[1:], beta=2.0)
    torch.testing.assert_close(loss, torch.tensor([math.log(1 + math.e)]))
    assert ln_dpo_loss(torch.tensor(0.3), torch.tensor(0.3), 0.1).item() == pytest.approx(math.log(2))


def test_row_decomposition_has_the_exact_ln_dpo_gradient():
    torch.manual_seed(0)
    # 2 prompts x (1 chosen + 3 rollouts); a linear "policy": Delta_row(theta) = x_row . theta
    x = torch.randn(8, 5)
    theta = torch.randn(5, requires_grad=True)
    groups = [(0, [1, 3], 0.15), (4, [5, 6, 7], 0.075)]
    beta = 0.7

    def reference_loss(th):
        d = x @ th
        total = 0.0
        for c, rej, w in groups:
            total = total + w * ln_dpo_loss(d[c].expand(len(rej)), d[rej], beta).mean()
        return total

    g_ref = torch.autograd.grad(reference_loss(theta), theta)[0]
    with torch.no_grad():
        delta_old = x @ theta
    terms = dpo_row_terms(delta_old, groups, num_partners=3)
    assert terms.sign.tolist() == [1, -1, 0, -1, 1, -1, -1, -1]
    assert terms.coef[0].item() == pytest.approx(0.075) and terms.coef[5].item() == pytest.approx(0.025)
    rows = dpo_row_loss(x @ theta, terms.sign, terms.coef, terms.partners, terms.partner_mask, beta)
    assert rows[2].item() == 0.0
    g_rows = torch.autograd.grad(rows.sum(), theta)[0]
    torch.testing.assert_close(g_rows, g_ref)
    # at theta_old the value counts each pair from both ends
    assert rows.sum().item() == pytest.approx(2 * reference_loss(theta).item(), rel=1e-6)


def test_row_terms_scale_and_checks():
    delta = torch.tensor([0.1, 0.2, 0.3])
    terms = dpo_row_terms(delta, [(0, [1, 2], 0.1)], num_partners=2, rows_per_prompt=3)
    assert terms.coef.tolist() == pytest.approx([0.15, 0.15, 0.15])
    torch.testing.assert_close(terms.partners[0], torch.tensor([0.2, 0.3]))
    torch.testing.assert_close(terms.partners[1:, 0], torch.tensor([0.1, 0.1]))
    with pytest.raises(ValueError, match="num_partners"):
        dpo_row_terms(delta, [(0, [1, 2], 0.1)], num_partners=1)
    with pytest.raises(ValueError, match="two DPO"):
        dpo_row_terms(delta, [(0, [1], 0.1), (1, [2], 0.1)], num_partners=1)


def _rows(uid, prompt_id, rewards, oracle_reward=1.0, deltas=None, usable=True):
    from verl_ext.algorithms.orapo import BatchRow

    deltas = deltas or [0.0] * (len(rewards) + 1)
    rows = [BatchRow(uid, prompt_id, r, d) for r, d in zip(rewards, deltas)]
    rows.append(BatchRow(uid, prompt_id, oracle_reward, deltas[-1], oracle=True, oracle_usable=usable))
    return rows


def test_plan_batch_known_answer():
    from verl_ext.algorithms.orapo import BatchRow, plan_batch

    ema = ZeroRewardEMA()
    rows = (_rows("a", 1, [0.0, 0.0, 0.0], deltas=[0.1, -0.1, 0.3, 0.5])  # all-zero group
            + _rows("b", 2, [0.2, 0.6, 0.0])  # one failure
            + [BatchRow("pad", None, 0.0, 0.0, padding=True)])
    plan = plan_batch(rows, ema, group_size=4)
    assert plan.plans["a"].weight == pytest.approx(0.15) and plan.plans["a"].negatives == [0, 1, 2]
    assert plan.plans["b"].z == pytest.approx(1 / 3)
    assert plan.plans["b"].weight == pytest.approx(0.05 + 0.1 / 9)
    torch.testing.assert_close(plan.grpo_weight, torch.tensor(
        [0.85 * 4 / 3] * 3 + [0.0] + [(1 - plan.plans["b"].weight) * 4 / 3] * 3 + [0.0] + [0.0]))
    assert plan.terms.sign.tolist() == [-1, -1, -1, 1, 0, 0, -1, 1, 0]
    # chosen of "a": w * rows_per_prompt / #rejected = 0.15 * 4 / 3
    assert plan.terms.coef[3].item() == pytest.approx(0.2)
    m = plan.metrics
    assert m["orapo/prompts"] == 2 and m["orapo/dpo_share"] == 1.0 and m["orapo/all_zero_share"] == 0.5
    assert m["orapo/zrr/mean"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["orapo/dpo/pairs"] == 4
    # margins of "a": 0.5 - (0.1, -0.1, 0.3); of "b": 0 - 0
    assert m["orapo/dpo/margin/mean"] == pytest.approx((0.4 + 0.6 + 0.2 + 0.0) / 4)
    assert m["orapo/dpo/accuracy"] == pytest.approx(3 / 4)
    assert m["orapo/dpo/chosen_log_ratio/mean"] == pytest.approx((0.5 + 0.0) / 2)  # per DPO prompt
    assert m["orapo/dpo/rejected_log_ratio/mean"] == pytest.approx((0.1 - 0.1 + 0.3 + 0.0) / 4)  # per rejected row
    assert m["orapo/oracle_reward/mean"] == 1.0 and m["orapo/ema_prompts"] == 2
    # next step: prompt 1 now succeeds once; its EMA halves, the weight follows the power map
    plan2 = plan_batch(_rows("c", 1, [0.0, 0.0, 0.9]), ema, group_size=4)
    assert plan2.plans["c"].z_ema == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert plan2.plans["c"].weight == pytest.approx(0.05 + 0.1 * (5 / 6) ** 2)


def test_plan_batch_rejects_malformed_groups_and_skips_truncated_oracles():
    from verl_ext.algorithms.orapo import plan_batch

    with pytest.raises(ValueError, match="oracle"):
        plan_batch(_rows("a", 1, [0.0, 0.0])[:-1] + _rows("a", 1, [0.0])[:1], ZeroRewardEMA(), group_size=3)
    plan = plan_batch(_rows("a", 1, [0.0, 0.0], usable=False), ZeroRewardEMA(), group_size=3)
    assert not plan.plans["a"].in_dpo and plan.metrics["orapo/oracle_truncated"] == 1
    assert plan.grpo_weight[:2].tolist() == pytest.approx([1.5, 1.5]) and plan.terms.sign.abs().sum() == 0


def test_unscorable_rollouts_are_neither_zero_rewards_nor_negatives():
    """Issue 21: a FactS pair the reward cannot score (reward 0, invalid=1) counted as a failed exploration, raising
    the zero-reward rate and turning the prompt into DPO supervision."""
    from verl_ext.algorithms.orapo import BatchRow, plan_batch

    ema = ZeroRewardEMA()
    rows = _rows("a", 1, [0.0, 0.0, 0.5])  # rollout 0 scored 0 (failed); rollout 1 unscorable (e.g. unparseable)
    rows[1] = BatchRow("a", 1, 0.0, 0.0, unscorable=True)
    # prompt 2: the reference has no present label, so no rollout can be scored
    rows += [BatchRow("b", 2, 0.0, 0.0, unscorable=True) for _ in range(3)] + [BatchRow("b", 2, 1.0, 0.0, oracle=True)]
    plan = plan_batch(rows, ema, group_size=4)
    assert plan.plans["a"].z == pytest.approx(1 / 2) and plan.plans["a"].negatives == [0]
    assert not plan.plans["b"].in_dpo and plan.plans["b"].weight == 0.0 and ema.get(2) is None
    assert plan.terms.sign.tolist() == [-1, 0, 0, 1, 0, 0, 0, 0]
    m = plan.metrics
    assert m["orapo/zrr/mean"] == pytest.approx(1 / 2) and m["orapo/dpo_share"] == 0.5
    assert m["orapo/unscorable/count"] == 4 and m["orapo/unscorable/share"] == pytest.approx(4 / 6)
    assert m["orapo/unscorable/prompts"] == 1
