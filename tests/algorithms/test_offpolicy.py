"""Inserted-token policy losses (verl_ext.algorithms.offpolicy): verl's registry, vanilla equality, LUFFY shaping."""
import pytest
import torch


@pytest.fixture(scope="module")
def verl_losses():
    import verl_ext.algorithms.offpolicy  # noqa: F401  (registers when core_algos is imported)
    from verl.trainer.ppo import core_algos

    return core_algos


def _actor_config(**kw):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"clip_ratio": 0.2, "clip_ratio_low": None, "clip_ratio_high": None, "clip_ratio_c": 3.0,
                            **kw})
    cfg.global_batch_info = {}
    return cfg


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(3, 5, generator=g) * 2
    new = old + (torch.rand(3, 5, generator=g) - 0.5)
    adv = torch.tensor([[1.0] * 5, [-0.5] * 5, [2.0] * 5])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.float32)
    return old, new, adv, mask


def test_registered_in_verls_policy_loss_registry(verl_losses):
    for name in ("inserted_masked", "inserted_luffy"):
        assert verl_losses.get_policy_loss_fn(name) is verl_losses.POLICY_LOSS_REGISTRY[name]


@pytest.mark.parametrize("mode", ["inserted_masked", "inserted_luffy"])
@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-sum-norm"])
def test_without_inserted_tokens_equals_verls_vanilla(verl_losses, mode, agg):
    from verl_ext.algorithms.offpolicy import OffPolicyBatch, offpolicy_context

    old, new, adv, mask = _batch()
    cfg = _actor_config()
    if agg == "seq-mean-token-sum-norm":
        cfg.global_batch_info = {"loss_scale_factor": 5}
    want, want_m = verl_losses.get_policy_loss_fn("vanilla")(old, new, adv, mask, agg, cfg)
    with offpolicy_context(OffPolicyBatch(torch.zeros_like(mask))):
        got, got_m = verl_losses.get_policy_loss_fn(mode)(old, new, adv, mask, agg, cfg)
    torch.testing.assert_close(got, want)
    assert got_m["actor/ppo_kl"] == pytest.approx(want_m["actor/ppo_kl"], abs=1e-6)
    assert got_m["actor/pg_clipfrac"] == pytest.approx(want_m["actor/pg_clipfrac"])


def test_luffy_known_answer_and_gradient(verl_losses):
    from verl_ext.algorithms.offpolicy import OffPolicyBatch, luffy_shaping, offpolicy_context

    assert luffy_shaping(torch.tensor(0.1), 0.1).item() == pytest.approx(0.5)
    assert luffy_shaping(torch.tensor(0.9), 0.1).item() == pytest.approx(0.9)
    # one response, two tokens: token 0 sampled (ratio 1, A=2 -> loss -2), token 1 inserted with p = 0.3
    old = torch.log(torch.tensor([[0.5, 0.3]]))
    new = old.clone().requires_grad_(True)
    adv = torch.tensor([[2.0, 2.0]])
    mask = torch.ones(1, 2)
    cfg = _actor_config()
    cfg.global_batch_info = {"loss_scale_factor": 2}
    with offpolicy_context(OffPolicyBatch(torch.tensor([[0.0, 1.0]]), gamma=0.1)):
        loss, metrics = verl_losses.get_policy_loss_fn("inserted_luffy")(old, new, adv, mask,
                                                                          "seq-mean-token-sum-norm", cfg)
    # (-2 * 1 + -2 * 0.3/0.4) / 2
    assert loss.item() == pytest.approx((-2.0 - 2.0 * 0.75) / 2)
    loss.backward()
    # d/dlogp of -A p/(p+g) = -A * g p/(p+g)^2 ; /2 for the normaliser. Not clipped even far from the old policy.
    assert new.grad[0, 1].item() == pytest.approx(-2.0 * 0.1 * 0.3 / 0.4 ** 2 / 2)
    assert metrics["actor/inserted_token_share"] == pytest.approx(0.5)


def test_luffy_is_not_clipped_but_sampled_tokens_are(verl_losses):
    from verl_ext.algorithms.offpolicy import inserted_token_losses

    old = torch.log(torch.tensor([[0.1, 0.1]]))
    new = torch.log(torch.tensor([[0.5, 0.5]]))  # ratio 5: far outside [0.8, 1.2]
    adv = torch.ones(1, 2)
    losses, agg_mask, _ = inserted_token_losses(old, new, adv, torch.ones(1, 2), torch.tensor([[0.0, 1.0]]),
                                                "inserted_luffy", gamma=0.1)
    assert losses[0, 0].item() == pytest.approx(-1.2)  # clipped PPO
    assert losses[0, 1].item() == pytest.approx(-0.5 / 0.6)  # shaped, unclipped
    assert agg_mask.tolist() == [[True, True]]


def test_masked_drops_inserted_tokens_from_the_pg_term(verl_losses):
    from verl_ext.algorithms.offpolicy import OffPolicyBatch, offpolicy_context

    old, new, adv, mask = _batch(1)
    inserted = torch.zeros_like(mask)
    inserted[0, 2:] = 1.0
    cfg = _actor_config()
    cfg.global_batch_info = {"loss_scale_factor": 5}
    vanilla = verl_losses.get_policy_loss_fn("vanilla")
    keep = mask * (1 - inserted)
    want, _ = vanilla(old, new, adv, keep, "seq-mean-token-sum-norm", cfg)  # the sampled tokens' PPO loss
    new = new.clone().requires_grad_(True)
    with offpolicy_context(OffPolicyBatch(inserted)):
        got, _ = verl_losses.get_policy_loss_fn("inserted_masked")(old, new, adv, mask, "seq-mean-token-sum-norm", cfg)
    torch.testing.assert_close(got, want)
    got.backward()
    assert torch.all(new.grad[0, 2:] == 0) and torch.any(new.grad[0, :2] != 0)


def test_without_the_channel_the_loss_refuses(verl_losses):
    old, new, adv, mask = _batch()
    with pytest.raises(RuntimeError, match="inserted-token mask"):
        verl_losses.get_policy_loss_fn("inserted_luffy")(old, new, adv, mask, "token-mean", _actor_config())
