"""Dr. GRPO estimator: bit-for-bit verl's GRPO with norm_adv_by_std_in_grpo=False, through verl's own dispatch."""
import numpy as np
import pytest
import torch
from verl.trainer.ppo import core_algos

import verl_ext.algorithms.advantages  # noqa: F401  (registers when core_algos is imported)


def _batch(seed: int = 0, groups=(("a", 4), ("b", 5), ("c", 1), ("d", 10)), width: int = 7):
    gen = torch.Generator().manual_seed(seed)
    index = np.array([uid for uid, n in groups for _ in range(n)], dtype=object)
    bs = len(index)
    lengths = torch.randint(1, width + 1, (bs,), generator=gen)
    mask = (torch.arange(width)[None, :] < lengths[:, None]).float()
    rewards = torch.zeros(bs, width)
    rewards[torch.arange(bs), lengths - 1] = torch.rand(bs, generator=gen) * 3  # score on the last valid token
    return rewards, mask, index


def test_registered_under_dr_grpo():
    fn = core_algos.get_adv_estimator_fn("dr_grpo")
    assert fn is verl_ext.algorithms.advantages.compute_dr_grpo_outcome_advantage


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bit_identical_to_grpo_without_std(seed):
    rewards, mask, index = _batch(seed)
    ours, ours_ret = core_algos.get_adv_estimator_fn("dr_grpo")(
        token_level_rewards=rewards, response_mask=mask, index=index, config=None
    )
    ref, ref_ret = core_algos.compute_grpo_outcome_advantage(
        token_level_rewards=rewards, response_mask=mask, index=index, norm_adv_by_std_in_grpo=False
    )
    assert torch.equal(ours, ref) and torch.equal(ours_ret, ref_ret)
    # Dr. GRPO: mean-centred per group, no std; a single-member group gets its raw score (verl's convention).
    scores = rewards.sum(-1)
    for uid in set(index):
        rows = np.flatnonzero(index == uid)
        first = ours[rows, 0]
        expected = scores[rows] - (scores[rows].mean() if len(rows) > 1 else 0.0)
        torch.testing.assert_close(first, expected)


@pytest.mark.slow
def test_through_verl_v1_dispatch_equals_grpo_norm_false():
    # verl's V1 trainer sends "grpo" through its multi-trajectory path and any other name through
    # ray_trainer.compute_advantage; both must give the same advantages for single-turn trajectories.
    from verl import DataProto
    from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories

    rewards, mask, index = _batch(3)
    keys = [f"{uid}_{i}_0" for i, uid in enumerate(index)]

    def run(estimator):
        data = DataProto.from_dict(
            tensors={"token_level_rewards": rewards.clone(), "response_mask": mask.clone()},
            non_tensors={"uid": index.copy()},
        )
        out = compute_advantage_for_multi_trajectories(
            data, batch_keys=keys, adv_estimator=estimator, num_repeat=1, norm_adv_by_std_in_grpo=False, config=None
        )
        return out.batch["advantages"]

    assert torch.equal(run("dr_grpo"), run(core_algos.AdvantageEstimator.GRPO))
