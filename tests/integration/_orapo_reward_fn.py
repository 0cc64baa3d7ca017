"""Reward of the OraPO CPU integration test (verl's ``naive`` reward manager, ``custom_reward_function``).

Every response to the prompt whose dataset index is ``hard_index`` fails (0); every response to any other prompt earns
1, whatever the tiny random policy samples. So the hard prompt's group is all zero (OraPO's DPO branch) and every
group's rewards are constant, which makes Dr. GRPO's advantages 0 for all rollouts: any change of the parameters in
the test's run comes from the DPO term."""


def compute_score(data_source, solution_str, ground_truth, extra_info=None, hard_index=None, **kwargs):
    if hard_index is None:
        raise ValueError("_orapo_reward_fn: set +reward.custom_reward_function.reward_kwargs.hard_index")
    index = (extra_info or {}).get("index")
    if index is None:
        raise ValueError("_orapo_reward_fn: the sample has no extra_info.index")
    return 0.0 if int(index) == int(hard_index) else 1.0
