"""OraPO's actor loss against verl's own ppo_loss and against the closed-form LN-DPO gradient."""
import os

import pytest
import torch
from tensordict import TensorDict

from verl_ext.algorithms.orapo import dpo_row_terms, length_normalised_log_ratio, ln_dpo_loss
from verl_ext.trainer.orapo_loss import orapo_loss

L = 5  # response length
P = 3  # prompt length


@pytest.fixture(scope="module")
def actor_config():
    import verl
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from verl.utils.config import omega_conf_to_dataclass

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=os.path.join(os.path.dirname(verl.__file__), "trainer/config"),
                               version_base=None):
        cfg = compose("ppo_trainer", overrides=[
            "actor_rollout_ref.rollout.name=vllm", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
            "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm",
            f"actor_rollout_ref.actor.loss_scale_factor={L}", "actor_rollout_ref.actor.use_kl_loss=True",
            "actor_rollout_ref.actor.kl_loss_coef=0.1", "actor_rollout_ref.actor.kl_loss_type=low_var_kl"])
    return omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)


def _batch(n_rows, lengths, seed=0, **rows):
    g = torch.Generator().manual_seed(seed)
    nested = lambda xs: torch.nested.as_nested_tensor(xs, layout=torch.jagged)  # noqa: E731
    fields = {
        "prompts": nested([torch.ones(P, dtype=torch.long)] * n_rows),
        "responses": nested([torch.ones(n, dtype=torch.long) for n in lengths]),
        "response_mask": nested([torch.ones(n, dtype=torch.long) for n in lengths]),
        "old_log_probs": nested([-torch.rand(n, generator=g) for n in lengths]),
        "ref_log_prob": nested([-torch.rand(n, generator=g) for n in lengths]),
        "advantages": nested([torch.full((n,), float(torch.randn(1, generator=g))) for n in lengths]),
    }
    fields.update(rows)
    td = TensorDict(fields, batch_size=n_rows)
    from verl.utils import tensordict_utils as tu

    tu.assign_non_tensor(td, dp_size=1, batch_num_tokens=sum(lengths), global_batch_size=n_rows)
    return td


def _log_probs(td, lengths, shift=0.0):
    """Model output over prompt + response (verl layout) whose response part equals old_log_probs + shift."""
    old = td["old_log_probs"].unbind()
    full = [torch.cat([torch.zeros(P - 1), o + shift, torch.zeros(1)]).requires_grad_(True) for o in old]
    return full, {"log_probs": torch.nested.as_nested_tensor(full, layout=torch.jagged)}


def _row_fields(grpo_weight, terms=None, n_partners=2):
    n = len(grpo_weight)
    terms = terms or dpo_row_terms(torch.zeros(n), [], n_partners)
    return {"orapo_grpo_weight": torch.tensor(grpo_weight)[:, None], "orapo_dpo_sign": terms.sign[:, None],
            "orapo_dpo_coef": terms.coef[:, None], "orapo_dpo_partners": terms.partners,
            "orapo_dpo_partner_mask": terms.partner_mask}


def test_without_oracle_and_weight_it_is_verls_ppo_loss(actor_config):
    from verl.workers.utils.losses import ppo_loss

    lengths = [5, 3, 4]
    td = _batch(3, lengths, **_row_fields([1.0, 1.0, 1.0]))
    full_a, out_a = _log_probs(td, lengths, shift=0.05)
    full_b, out_b = _log_probs(td, lengths, shift=0.05)
    ours, _ = orapo_loss(actor_config, out_a, td, grpo_token_norm=L)
    theirs, _ = ppo_loss(actor_config, out_b, td)
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    for a, b in zip(full_a, full_b):
        torch.testing.assert_close(a.grad, b.grad)


def test_weighted_grpo_branch_with_an_oracle_row(actor_config):
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.losses import ppo_loss

    # one prompt: 2 rollouts + the oracle (n = 3), w = 0.15
    lengths, w = [5, 3, 4], 0.15
    td = _batch(3, lengths, **_row_fields([(1 - w) * 3 / 2, (1 - w) * 3 / 2, 0.0]))
    _, out = _log_probs(td, lengths, shift=0.05)
    ours, _ = orapo_loss(actor_config, out, td, grpo_token_norm=L)
    # reference: (1 - w) x verl's Dr. GRPO loss on the two rollouts alone (a batch of 2)
    ref_td = TensorDict({k: torch.nested.as_nested_tensor(td[k].unbind()[:2], layout=torch.jagged)
                         for k in ("prompts", "responses", "response_mask", "old_log_probs", "ref_log_prob",
                                   "advantages")}, batch_size=2)
    tu.assign_non_tensor(ref_td, dp_size=1, batch_num_tokens=8, global_batch_size=2)
    _, ref_out = _log_probs(ref_td, lengths[:2], shift=0.05)
    theirs, _ = ppo_loss(actor_config, ref_out, ref_td)
    torch.testing.assert_close(ours, (1 - w) * theirs)


def test_grpo_dpo_balance_does_not_move_with_the_response_length(actor_config):
    """Issue 21: verl's loss_scale_factor (= max_response_length) divided the GRPO branch only, so 4x the response
    length made the GRPO share of the gradient 4x smaller against the same w_i-weighted DPO term."""
    import copy

    lengths, w, n = [5, 3, 4], 0.15, 3
    base = _batch(3, lengths, seed=1)
    pad = lambda xs: torch.nn.utils.rnn.pad_sequence(list(xs), batch_first=True)  # noqa: E731
    mask = pad([torch.ones(k) for k in lengths])
    delta = length_normalised_log_ratio(pad(base["old_log_probs"].unbind()), pad(base["ref_log_prob"].unbind()), mask)
    terms = dpo_row_terms(delta, [(2, [0, 1], w)], num_partners=2, rows_per_prompt=n)
    td = _batch(3, lengths, seed=1, **_row_fields([(1 - w) * 3 / 2, (1 - w) * 3 / 2, 0.0], terms))
    grads = []
    for factor in (L, 4 * L, 4096):
        cfg = copy.deepcopy(actor_config)
        object.__setattr__(cfg, "loss_scale_factor", factor)
        full, out = _log_probs(td, lengths, shift=0.05)
        loss, _ = orapo_loss(cfg, out, td)
        loss.backward()
        grads.append(torch.cat([f.grad for f in full]))
    torch.testing.assert_close(grads[0], grads[1])
    torch.testing.assert_close(grads[0], grads[2])


def test_dpo_branch_gradient_is_the_ln_dpo_gradient(actor_config):
    lengths, w, beta, n = [5, 3, 4], 0.15, 0.5, 3
    base = _batch(3, lengths)
    old = [x for x in base["old_log_probs"].unbind()]
    ref = [x for x in base["ref_log_prob"].unbind()]
    pad = lambda xs: torch.nn.utils.rnn.pad_sequence(list(xs), batch_first=True)  # noqa: E731
    mask = pad([torch.ones(k) for k in lengths])
    delta_old = length_normalised_log_ratio(pad(old), pad(ref), mask)
    # rows 0, 1 rejected, row 2 (the oracle) chosen; rows_per_prompt = n, global_batch_size = n rows
    terms = dpo_row_terms(delta_old, [(2, [0, 1], w)], num_partners=2, rows_per_prompt=n)
    td = _batch(3, lengths, **_row_fields([0.0, 0.0, 0.0], terms))
    full, out = _log_probs(td, lengths)
    loss, metrics = orapo_loss(actor_config, out, td, beta=beta)
    loss.backward()
    # closed form at theta_old: w * mean_j LN-DPO(Delta_c, Delta_rj), differentiated w.r.t. each row's log-probs
    xs = [o.clone().requires_grad_(True) for o in old]
    deltas = torch.stack([((x - r).sum() / len(x)) for x, r in zip(xs, ref)])
    target = w * ln_dpo_loss(deltas[2].expand(2), deltas[:2], beta).mean()
    grads = torch.autograd.grad(target, xs)
    for f, g, k in zip(full, grads, lengths):
        torch.testing.assert_close(f.grad[P - 1:P - 1 + k], g)
    assert metrics["actor/orapo_dpo_surrogate"].aggregate() == pytest.approx(2 * target.item(), rel=1e-5)


def test_missing_row_fields_name_the_setup(actor_config):
    td = _batch(2, [3, 3])
    _, out = _log_probs(td, [3, 3])
    with pytest.raises(KeyError, match="trainer_mode=orapo"):
        orapo_loss(actor_config, out, td)
