"""verl 0.9.1 does not tell the reward manager which samples are validation samples (``verl_ext.reward.manager``).

Runs verl's own V1 agent-loop code with a validation batch as ``trainer/ppo/v1/trainer_base.py`` builds it
(``validate=True`` as non-tensor data). It checks where the flag goes: the per-sample prompt (the kwargs that become
the reward's ``non_tensor_batch``) does not have it, only the trajectory info does, and the reward ``DataProto`` that
``_compute_score`` sends to ``RewardLoopWorker.compute_score`` has no ``meta_info``. This is why gradient DiTPO
weights are also computed during validation. If a verl upgrade starts forwarding the flag, this test fails; the
reward manager can then skip the saliency there.
"""

import asyncio
from types import SimpleNamespace

import numpy as np
import torch


class _Handle:
    """Stands in for the RewardLoopWorker actor handle: records what verl sends to ``compute_score``."""

    def __init__(self):
        self.sent = []
        self.compute_score = SimpleNamespace(remote=self._remote)

    async def _remote(self, data):
        self.sent.append(data)
        return {"reward_score": 0.0, "reward_extra_info": {}}


def _validation_prompts() -> tuple[dict, dict]:
    """The prompt dict and trajectory info that verl's V1 worker builds for a validation batch of one row."""
    import verl.trainer.ppo.v1.agent_loop_tq as tq_mod
    from verl.utils import tensordict_utils as tu

    batch = tu.get_tensordict({
        "raw_prompt": np.array([[{"role": "user", "content": "findings?"}]], dtype=object),
        "reward_model": np.array([{"ground_truth": "no effusion."}], dtype=object),
        "extra_info": np.array([{"split": "validate", "index": 0}], dtype=object),
        "index": np.array([0]),
        "uid": np.array(["u0"], dtype=object),
    })
    tu.assign_non_tensor_data(batch, "global_steps", 3)  # as trainer_base._validate
    tu.assign_non_tensor_data(batch, "validate", True)

    seen = []

    async def run_prompt(prompt, sampling_params, trajectory, trace=False):
        seen.append((prompt, trajectory))

    rollout = SimpleNamespace(temperature=1.0, top_p=1.0, top_k=-1, calculate_log_probs=False,
                              val_kwargs=SimpleNamespace(top_p=1.0, top_k=-1, temperature=0.0),
                              agent=SimpleNamespace(default_agent_loop="single_turn_agent"))
    worker = SimpleNamespace(config=SimpleNamespace(actor_rollout_ref=SimpleNamespace(rollout=rollout)),
                             background_tasks=set(), _run_prompt=run_prompt)

    async def go():
        await tq_mod.AgentLoopWorkerTQ.__ray_actor_class__.generate_sequences(worker, batch)
        await asyncio.gather(*worker.background_tasks)

    asyncio.run(go())
    assert len(seen) == 1
    return seen[0]


def test_v1_worker_drops_validate_from_the_per_sample_kwargs():
    prompt, trajectory = _validation_prompts()
    assert trajectory["validate"] is True
    assert "validate" not in prompt
    assert prompt["global_steps"] == 3  # the kwargs do reach the reward (manager.py reads global_steps from them)


def test_reward_dataproto_carries_only_kwargs_and_extra_fields():
    from verl.experimental.agent_loop.agent_loop import AgentLoopOutput, AgentLoopWorker

    prompt, _ = _validation_prompts()
    handle = _Handle()
    worker = SimpleNamespace(
        reward_loop_worker_handles=[handle],
        _compute_multi_modal_inputs=lambda output, input_ids: {},
        _compute_position_ids=lambda input_ids, attention_mask, mm, kw: torch.arange(input_ids.shape[-1])[None],
        _get_mm_processor_kwargs=lambda audios: None,
    )
    output = AgentLoopOutput(prompt_ids=[1, 2], response_ids=[3, 4], response_mask=[1, 1], num_turns=2,
                             metrics={}, extra_fields={})
    asyncio.run(AgentLoopWorker._compute_score(worker, [output], kwargs=prompt))

    (data,) = handle.sent
    assert not data.meta_info
    assert set(data.non_tensor_batch) == set(prompt) | {"__num_turns__", "tool_extra_fields", "prompt_len",
                                                        "response_len"}
    assert "validate" not in data.non_tensor_batch
    assert "validate" not in data.non_tensor_batch["tool_extra_fields"][0]
