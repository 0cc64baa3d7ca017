"""A CPU stand-in for verl's actor worker, for the integration test and the CPU demo (not for training runs).

verl's actor (``verl.workers.engine_workers`` + the FSDP engine) cannot run on CPU (verl_integration.md §8), so the
CPU paths train the policy here instead, reading and writing the same TransferQueue fields the V1 trainer uses:

* ``compute_old_log_probs``: like ``PPOTrainer._compute_old_log_prob``: log-probs of every trajectory's response
  under the current policy (edited copies included), written to TQ as nested ``old_log_probs``;
* ``update``: one optimisation step on the given keys with **verl's own loss**
  (``verl.workers.utils.losses.ppo_loss``: ``core_algos.get_policy_loss_fn(loss_mode)`` + ``agg_loss``, honouring
  ``actor.loss_agg_mode`` / ``loss_scale_factor`` / ``clip_ratio``), from the trajectories' ``advantages``.

The forward pass is the Hugging Face model with exactly what verl's engine feeds it: ``input_ids`` (prompt +
response), the 4-row Qwen2.5-VL ``position_ids`` verl computed during post-processing (``(4, 1, L)``: text row +
t/h/w mrope rows), and ``pixel_values`` / ``image_grid_thw`` from ``multi_modal_inputs``. Log-probs use the rollout
temperature like verl's actor. One sequence per forward (no padding), which is fine for tiny models.
"""
from __future__ import annotations

from typing import Any, Optional

import torch

__all__ = ["HFActor", "sequence_next_token_log_probs"]

_MM_KEYS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts")


def sequence_next_token_log_probs(
    model, input_ids: torch.Tensor, position_ids: Optional[torch.Tensor], multi_modal_inputs: Optional[dict],
    temperature: float = 1.0, mm_token_type_ids: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``out[t] = log p(input_ids[t + 1] | input_ids[:t + 1])`` for one sequence; ``out[-1] = 0`` (verl's layout).

    ``position_ids``: ``(L,)``, or verl's ``(4, L)`` for Qwen-VL (row 0 text positions, rows 1-3 mrope), or None to
    let the model compute its own (then pass ``mm_token_type_ids`` ``(1, L)`` for Qwen-VL under transformers 5).
    """
    kwargs: dict[str, Any] = {"input_ids": input_ids.unsqueeze(0), "attention_mask": torch.ones_like(input_ids)[None]}
    if position_ids is not None:
        kwargs["position_ids"] = position_ids.unsqueeze(-2) if position_ids.dim() == 2 else position_ids[None]
    elif mm_token_type_ids is not None:
        kwargs["mm_token_type_ids"] = mm_token_type_ids
    for key in _MM_KEYS:
        if multi_modal_inputs and multi_modal_inputs.get(key) is not None:
            kwargs[key] = multi_modal_inputs[key]
    logits = model(**kwargs).logits[0].float() / float(temperature)
    log_probs = torch.log_softmax(logits[:-1], dim=-1).gather(-1, input_ids[1:, None]).squeeze(-1)
    return torch.cat([log_probs, log_probs.new_zeros(1)])


class HFActor:
    """Old log-probs and PPO updates on a Hugging Face policy, through TransferQueue (see the module docstring).

    Args:
        model: the policy (e.g. ``AutoModelForImageTextToText.from_pretrained(...)``), trained in place.
        actor_config: verl's ``ActorConfig`` (``omega_conf_to_dataclass(config.actor_rollout_ref.actor)``).
        temperature: the rollout temperature (verl divides logits by it for all log-probs).
        optimizer: defaults to AdamW with ``actor_config.optim`` lr / weight decay.
    """

    FIELDS = ("input_ids", "position_ids", "multi_modal_inputs", "prompts", "responses", "response_mask")

    def __init__(self, model, actor_config, temperature: float = 1.0, optimizer=None):
        self.model = model
        self.config = actor_config
        self.temperature = float(temperature)
        optim = getattr(actor_config, "optim", None)
        self.optimizer = optimizer or torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=float(getattr(optim, "lr", 1e-6)),
            weight_decay=float(getattr(optim, "weight_decay", 0.01)),
        )

    # ------------------------------------------------------------------------------------------------------------

    def _full_log_probs(self, data) -> list[torch.Tensor]:
        mm = data["multi_modal_inputs"]
        out = []
        for i in range(len(data["input_ids"])):
            mmi = mm[i] if mm is not None else None
            mmi = getattr(mmi, "data", mmi)
            out.append(
                sequence_next_token_log_probs(
                    self.model, data["input_ids"][i], data["position_ids"][i], mmi, self.temperature
                )
            )
        return out

    @staticmethod
    def _response_part(full: list[torch.Tensor], data) -> list[torch.Tensor]:
        # verl's no_padding_2_padding: response token j of a sequence is predicted at position prompt_len + j - 1
        out = []
        for lp, p, r in zip(full, data["prompts"], data["responses"]):
            out.append(lp[len(p) - 1 : len(p) + len(r) - 1])
        return out

    def response_log_probs(self, data) -> list[torch.Tensor]:
        """Per-trajectory response log-probs (no grad) for a TQ batch with ``FIELDS``."""
        with torch.no_grad():
            return self._response_part(self._full_log_probs(data), data)

    def compute_old_log_probs(self, keys: list[str], partition_id: str = "train") -> list[torch.Tensor]:
        """Write nested ``old_log_probs`` for ``keys`` to TransferQueue (verl's actor recompute); returns them."""
        import transfer_queue as tq
        from tensordict import TensorDict

        data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=list(self.FIELDS))
        old = self.response_log_probs(data)
        nested = torch.nested.as_nested_tensor(old, layout=torch.jagged)
        tq.kv_batch_put(keys=keys, partition_id=partition_id,
                        fields=TensorDict({"old_log_probs": nested}, batch_size=len(keys)))
        return old

    def update(self, keys: list[str], partition_id: str = "train") -> dict[str, float]:
        """One optimiser step on ``keys`` with verl's ``ppo_loss``; returns scalar metrics."""
        import transfer_queue as tq
        from tensordict import TensorDict

        from verl.utils import tensordict_utils as tu
        from verl.workers.utils.losses import ppo_loss

        fields = list(self.FIELDS) + ["old_log_probs", "advantages"]
        data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=fields)
        self.model.train()
        full = self._full_log_probs(data)
        model_output = {"log_probs": torch.nested.as_nested_tensor(full, layout=torch.jagged)}
        batch = TensorDict(
            {k: data[k] for k in ("prompts", "responses", "response_mask", "old_log_probs", "advantages")},
            batch_size=len(keys),
        )
        num_tokens = int(sum(int(m.sum()) for m in data["response_mask"]))
        tu.assign_non_tensor(batch, dp_size=1, batch_num_tokens=num_tokens, global_batch_size=len(keys))
        loss, metrics = ppo_loss(self.config, model_output, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), float(getattr(self.config, "grad_clip", 1.0) or 1.0)
        )
        self.optimizer.step()
        self.model.eval()
        out = {"actor/loss": float(loss.detach()), "actor/grad_norm": float(grad_norm)}
        for name, metric in metrics.items():
            value = metric.aggregate() if hasattr(metric, "aggregate") else metric  # verl's Metric objects
            if isinstance(value, torch.Tensor):
                value = value.detach().float().mean().item()
            if isinstance(value, (int, float)):
                out[name if name.startswith("actor/") else f"actor/{name}"] = float(value)
        return out
