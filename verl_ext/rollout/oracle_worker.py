"""OraPO's oracle trajectory: each training group gets the reference report as one more trajectory.

Select it with (``verl_ext.trainer.orapo_config`` checks the whole OraPO setup)::

    +actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.rollout.oracle_worker.OraPOAgentLoopManagerTQ
    actor_rollout_ref.rollout.n=K+1  trainer.v1.trainer_mode=orapo

With ``rollout.n = K + 1`` the worker runs the edit worker's group assembly for K sessions (plain sampling with
``editgrpo.scheme=none``, or sampled + edited copies), then adds session K: the prompt's reference report
(``reward_model.ground_truth``) as the response of the same prompt. It is built from session 0's output, so it
shares the **exact prompt token ids** the rollouts were sampled from (same chat template, same images, same
generation prompt); the response is the reference encoded without special tokens plus the model's end-of-turn token,
which is how a sampled response of an instruct model ends. verl's own post-processing then computes its multimodal
inputs, its Qwen2.5-VL mrope position ids and its reward, and writes it to TransferQueue like every other
trajectory, so verl's actor computes its old log-probs and the reference policy its ref log-probs, the inputs of
OraPO's DPO term (``verl_ext.trainer.orapo_trainer``).

Extra fields of every trajectory of an OraPO group: ``orapo_oracle`` (bool) and ``orapo_oracle_truncated`` (bool:
the reference does not fit in ``rollout.response_length``; it is cut there and the trainer keeps the prompt out of
the DPO branch, counting it in ``orapo/oracle_truncated``).

Validation prompts are plain sampling (no oracle).
"""
from __future__ import annotations

import contextvars
import logging
from typing import Any, Optional

import ray

from verl.experimental.agent_loop import AgentLoopOutput

from verl_ext.rollout.edit_worker import EditAgentLoopManagerTQ, EditAgentLoopWorker

logger = logging.getLogger(__name__)

__all__ = ["OraPOAgentLoopManagerTQ", "OraPOAgentLoopWorker", "oracle_response_ids"]

ORACLE_FIELD = "orapo_oracle"
TRUNCATED_FIELD = "orapo_oracle_truncated"
# The session id of the oracle of the group being assembled (None outside an OraPO training group).
_ORACLE_SESSION: contextvars.ContextVar[Optional[int]] = contextvars.ContextVar("verl_ext_orapo_oracle", default=None)


def reference_of(prompt: dict) -> str:
    """The reference report of a prompt row (``reward_model.ground_truth``), or a clear error."""
    reward_model = prompt.get("reward_model") or {}
    reference = reward_model.get("ground_truth") if isinstance(reward_model, dict) else None
    if not isinstance(reference, str) or not reference.strip():
        raise ValueError(f"OraPO: the prompt row has no reference report in reward_model.ground_truth "
                         f"(got {reward_model!r:.200}); the oracle trajectory cannot be built")
    return reference


def oracle_response_ids(tokenizer, reference: str, end_of_turn_id: int, max_length: int) -> tuple[list[int], bool]:
    """(response ids, truncated): the reference without special tokens + the end-of-turn token, cut at
    ``max_length``."""
    ids = list(tokenizer.encode(reference, add_special_tokens=False)) + [int(end_of_turn_id)]
    if len(ids) > max_length:
        return ids[:max_length], True
    return ids, False


class OraPOAgentLoopWorker(EditAgentLoopWorker):
    """The edit worker's group assembly for K = n - 1 sessions, plus the oracle trajectory as session K."""

    async def _run_prompt(self, prompt: dict, sampling_params: dict, trajectory: dict, trace: bool = False) -> None:
        if trajectory["validate"]:
            return await super()._run_prompt(prompt, sampling_params, trajectory, trace=trace)
        n = int(prompt.pop("__rollout_n__", self.rollout_config.n))
        prompt["__rollout_n__"] = n - 1
        token = _ORACLE_SESSION.set(n - 1)
        try:
            return await super()._run_prompt(prompt, sampling_params, trajectory, trace=trace)
        finally:
            _ORACLE_SESSION.reset(token)

    async def _finalize(self, output: AgentLoopOutput, session_id: int, prompt: dict) -> None:
        oracle_session = _ORACLE_SESSION.get()
        if oracle_session is None:
            return await super()._finalize(output, session_id, prompt)
        # built before session 0 is post-processed (post-processing adds its reward to the output)
        oracle = self._oracle_output(output, prompt) if session_id == 0 else None
        output.extra_fields.setdefault(ORACLE_FIELD, False)
        output.extra_fields.setdefault(TRUNCATED_FIELD, False)
        await super()._finalize(output, session_id, prompt)
        if oracle is not None:
            await super()._finalize(oracle, oracle_session, prompt)

    def _oracle_output(self, source: AgentLoopOutput, prompt: dict) -> AgentLoopOutput:
        ids, truncated = oracle_response_ids(
            self.tokenizer, reference_of(prompt), self.end_of_turn_id, int(self.rollout_config.response_length)
        )
        if truncated:
            logger.warning(f"OraPO: the reference of uid={prompt.get('uid')} exceeds rollout.response_length; "
                           "the prompt stays out of the DPO branch this step")
        extra: dict[str, Any] = {k: v for k, v in source.extra_fields.items()
                                 if k not in ("edit_analysis", "edit_error", "reward_extra_info")}
        extra.update({ORACLE_FIELD: True, TRUNCATED_FIELD: truncated, "is_edited": False})
        return source.model_copy(
            update={
                "response_ids": ids,
                "response_mask": [1] * len(ids),
                "response_logprobs": None,
                "routed_experts": None,
                "reward_score": None,
                "num_turns": 2,
                "extra_fields": extra,
                "metrics": source.metrics.model_copy(),
            }
        )


class OraPOAgentLoopManagerTQ(EditAgentLoopManagerTQ):
    """``AgentLoopManagerTQ`` whose workers add OraPO's oracle trajectory (``OraPOAgentLoopWorker``)."""

    def __init__(self, config, llm_client, teacher_client=None, reward_loop_worker_handles=None):
        from verl_ext.trainer.orapo_config import validate_orapo_setup

        self.orapo_cfg = validate_orapo_setup(config)
        super().__init__(config, llm_client, teacher_client, reward_loop_worker_handles)
        self.agent_loop_workers_class = ray.remote(OraPOAgentLoopWorker)
