"""The radiology reward manager for verl 0.9.1's reward loop: ``reward.reward_manager.name=radiology``.

Reward (paper App. D, default): ``R = RadGraph-F1 (partial) + CheXbert micro-F1-14 (uncertain = positive) +
RaTEScore``, unweighted; components and weights are configurable (``verl_ext.reward.config``), and more components
can be registered (``verl_ext.reward.components``). ``run_single`` returns ``{"reward_score": R,
"reward_extra_info": {<each component>, response_rate_entities, invalid, invalid_reason, empty_response,
overlong_response, analysis_reused, is_edited}}`` with the same keys for every response.

Process layout (details in ``verl_ext.reward.service``): verl calls ``run_single`` once per response, concurrently,
inside ``reward.num_workers`` CPU Ray actors (``RewardLoopWorker``). This module loads nothing at import or
construction. Requests go to a scoring service: in training (inside Ray) the per-node shared Ray actor
(``verl_ext.node_actor``) that holds the models once and batches the requests of all reward workers of the node;
elsewhere an in-process micro-batcher. Models run on the GPU when the scoring process sees one (see
``verl_ext.node_actor`` for how to give it one).

Inputs read from each trajectory (as ``naive.py`` does): the response tokens (``responses`` cut by the attention
mask, decoded with ``skip_special_tokens``), ``reward_model["ground_truth"]`` (the reference report), and the
trajectory's extra fields (``tool_extra_fields`` in the reward loop, merged into ``extra_info`` otherwise):
``edit_analysis`` (a RaTE ``ReportAnalysis`` of the response computed by the edit step, reused when compatible) and
``is_edited`` (copied to reward_extra_info for the sampled-vs-edited metrics).

Validation samples are scored like training samples, gradient DiTPO weights included (``ditpo_weighted=1``). The
weights go unused there, so the saliency is wasted work, but ``run_single`` has no way to tell validation from
training in verl 0.9.1 (paths relative to the installed ``verl``):

* V1 trainer (what the recipes run): ``trainer/ppo/v1/trainer_base.py:1066`` sets ``validate=True`` on the batch.
  ``trainer/ppo/v1/agent_loop_tq.py:61-62`` reads it and pops it before building the per-sample kwargs (86-96).
  After that it lives only in ``trajectory["validate"]``, which goes to ``_agent_loop_postprocess`` (150) and is
  not passed to ``_compute_score(outputs, kwargs=kwargs)`` (160).
* Legacy trainer: ``trainer/ppo/ray_trainer.py:632`` puts it in ``meta_info``. ``experimental/agent_loop/agent_loop.py``
  reads it (589) but builds the kwargs from ``non_tensor_batch`` only (645).
* Both paths: ``_compute_score`` (``agent_loop.py:967-1026``) builds the reward ``DataProto`` from those kwargs plus
  ``tool_extra_fields`` (the trajectory's ``extra_fields``), with no ``meta_info``. ``RewardLoopWorker.compute_score``
  (``experimental/reward_loop/reward_loop.py:145-155``) passes it to ``run_single`` unchanged. The colocated
  reward-model path (``trainer/ppo/v1/trainer_base.py:1555-1561``) sends only ``raw_prompt``.
* The dataset does not mark it either: ``create_rl_dataset(..., is_train)`` (``trainer/ppo/utils.py:110``) never
  uses ``is_train``.

``tests/reward/test_validate_flag.py`` runs that verl code and fails if a verl upgrade starts forwarding the flag.

``extra_info["split"]`` (``verl_ext.data.schema``) only says which split a row came from, not what the run is using
it for. Skipping the weights on it would silently turn DiTPO off for a run whose ``train_files`` hold non-train
rows, so this module does not use it. The exact fix belongs in the agent loop: a worker whose
``_agent_loop_postprocess`` sets ``output.extra_fields["validate"] = validate`` before scoring; the flag would then
reach ``tool_extra_fields`` here.

Guards: an empty response scores 0 (every component); a response without RaTE entities scores 0 on RaTEScore
(the package says 0.5); every score is computed from its own pair's texts. A sample that cannot be scored (empty
reference, reference without RaTE entities) is never silently 0: it is counted (``invalid=1`` with the reason; the
reward is the weighted sum of its valid components) or, with ``on_invalid=raise``, raises.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from verl_ext.reward.config import RadiologyRewardConfig
from verl_ext.reward.scoring import InvalidSampleError, ScoreRequest

logger = logging.getLogger(__name__)


def _as_dict(value: Any) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    try:
        return dict(value)
    except Exception:  # noqa: BLE001
        return {}


def _step(value: Any) -> Optional[int]:
    """The trajectory's ``global_steps`` (verl passes the prompt's kwargs as length-1 arrays) as an int, or None."""
    if value is None:
        return None
    if hasattr(value, "tolist"):
        value = value.tolist()
    while isinstance(value, (list, tuple)) and value:
        value = value[0]
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def token_spans(tokenizer, response_ids) -> tuple[str, list]:
    """Decoded content text and the character span of every response token in it (None for stop/special tokens)."""
    from verl_ext.algorithms.ditpo import spans_from_bounds
    from verl_ext.rollout.splice import decode_response

    ids = [int(i) for i in response_ids]
    decoded = decode_response(tokenizer, ids, getattr(tokenizer, "all_special_ids", ()))
    return decoded.text, spans_from_bounds(decoded.bounds, len(ids))


@register("radiology")
class RadiologyRewardManager(RewardManagerBase):
    """Composite clinical reward, batched across concurrent ``run_single`` calls (see the module docstring)."""

    def __init__(
        self,
        config=None,
        tokenizer=None,
        compute_score=None,
        reward_router_address: Optional[str] = None,
        reward_model_tokenizer: Any = None,
        **kwargs: Any,
    ):
        super().__init__(config, tokenizer, compute_score)
        self.reward_config = RadiologyRewardConfig.from_trainer_config(config, **kwargs)
        for name in self.reward_config.component_schedules:  # a share schedule without the run's length fails here
            logger.info("radiology reward: %s weight from step: %s", name, self.reward_config.schedule_steps(name))
        self._service = None
        # In training (inside Ray) place the node's actor and load the reward's models now: a placement or model-path
        # problem then fails the run at start-up, not at the first step (verl_ext.node_actor).
        self.service.start()

    @property
    def service(self):
        if self._service is None:
            from verl_ext.reward.service import get_service

            self._service = get_service(self.reward_config)
        return self._service

    async def run_single(self, data) -> dict:
        data = data[-1:]  # multi-sequence outputs: the reward is for the last sequence (as naive.py)
        item = data[0]
        response_ids = item.batch["responses"]
        response_length = response_ids.shape[-1]
        valid_length = int(item.batch["attention_mask"][-response_length:].sum())
        valid_ids = response_ids[:valid_length]
        response = await self.loop.run_in_executor(
            None, lambda: self.tokenizer.decode(valid_ids, skip_special_tokens=True)
        )
        nt = item.non_tensor_batch
        reference = _as_dict(nt.get("reward_model")).get("ground_truth")
        extra = dict(_as_dict(nt.get("extra_info")))
        extra.update(_as_dict(nt.get("tool_extra_fields")))
        cfg = self.reward_config
        request = ScoreRequest(
            response=response,
            reference=reference,
            analysis=extra.get(cfg.edit_analysis_key) if cfg.reuse_edit_analysis else None,
            is_edited=bool(extra.get("is_edited", False)),
            global_step=_step(nt.get("global_steps")),
        )
        if cfg.token_weights != "none":
            request.saliency_text, request.token_spans = await self.loop.run_in_executor(
                None, lambda: token_spans(self.tokenizer, valid_ids)
            )
        result = await self.service.score(request)
        info = result["reward_extra_info"]
        if info["invalid"] and cfg.on_invalid == "raise":
            raise InvalidSampleError(
                f"radiology reward: sample cannot be scored ({info['invalid_reason']}); reference={reference!r:.200}"
            )
        return result
