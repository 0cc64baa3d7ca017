"""Freeze parts of Qwen2.5-VL in verl's engines (SFT and RL): ``language_model`` or ``vision_tower``.

DEER's SFT stage freezes the language model and trains only the vision encoder and the vision-language projector
(Sec. 4); the EditGRPO authors froze the vision tower during RL. verl 0.9.1 has ``actor.freeze_vision_tower`` in
its config but no engine reads it (FSDP ignores it), so we use the two hooks verl does honour in every worker that
builds a model (RL actor/ref and the SFT trainer alike, both through ``HFModelConfig``):

* ``model.external_lib=verl_ext.freeze`` — verl imports the module before building the model
  (``HFModelConfig.__post_init__`` -> ``import_external_libs``); importing it registers `FreezableQwen25VL` for
  ``Qwen2_5_VLConfig`` with transformers' ``AutoModelForImageTextToText`` (``register(..., exist_ok=True)``), the
  auto class verl's ``get_hf_auto_model_class`` picks for VLMs;
* ``+model.override_config.verl_ext_freeze=language_model|vision_tower`` — verl copies override keys onto the HF
  config (``update_model_config``), where the model reads it after ``from_pretrained``.

RL keys are under ``actor_rollout_ref.model.``; SFT keys under ``model.``. What is frozen (``requires_grad=False``;
the optimizer then never updates those weights, AdamW skipping parameters without gradients):

* ``language_model``: everything except ``model.visual`` (the ViT blocks, patch embedding and the ``merger``, which is
  Qwen2.5-VL's vision-language projector): the text decoder, the token embeddings and ``lm_head``;
* ``vision_tower``: all of ``model.visual`` (patch embedding, blocks and merger, as EasyR1's ``freeze_vision_tower``
  used by the EditGRPO authors does).

The subclass keeps the class name ``Qwen2_5_VLForConditionalGeneration`` so saved checkpoints name the upstream
architecture (vLLM and plain transformers load them as usual). With verl's FSDP1 strategy, mixed frozen/trainable
parameters need ``use_orig_params``; FSDP2 (the project's default) handles them as is.
"""
from __future__ import annotations

import logging
from typing import Optional

logger = logging.getLogger(__name__)

FREEZE_KEY = "verl_ext_freeze"
PARTS = ("none", "language_model", "vision_tower")


def apply_freeze(model, part: Optional[str]) -> dict[str, int]:
    """Set ``requires_grad=False`` on ``part`` of a Qwen2.5-VL model; returns frozen/trainable parameter counts."""
    part = part or "none"
    if part not in PARTS:
        raise ValueError(f"{FREEZE_KEY}={part!r}: expected one of {PARTS}")
    visual = getattr(getattr(model, "model", None), "visual", None)
    if part != "none" and visual is None:
        raise ValueError(f"{FREEZE_KEY}={part}: {type(model).__name__} has no model.visual vision tower")
    visual_ids = {id(p) for p in visual.parameters()} if visual is not None else set()
    for p in model.parameters():
        is_visual = id(p) in visual_ids
        if part == "language_model" and not is_visual:
            p.requires_grad_(False)
        elif part == "vision_tower" and is_visual:
            p.requires_grad_(False)
    counts = {"frozen": sum(p.numel() for p in model.parameters() if not p.requires_grad),
              "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    if part != "none":
        logger.info("verl_ext.freeze: froze %s (%d parameters frozen, %d trainable)", part, counts["frozen"],
                    counts["trainable"])
    return counts


def _define():
    from transformers import AutoModelForImageTextToText, Qwen2_5_VLConfig
    from transformers import Qwen2_5_VLForConditionalGeneration as _Upstream

    class FreezableQwen25VL(_Upstream):
        """Qwen2.5-VL that freezes ``config.verl_ext_freeze`` right after ``from_pretrained``."""

        @classmethod
        def from_pretrained(cls, *args, **kwargs):
            model = super().from_pretrained(*args, **kwargs)
            apply_freeze(model, getattr(model.config, FREEZE_KEY, None))
            return model

    FreezableQwen25VL.__name__ = _Upstream.__name__  # checkpoints keep naming the upstream architecture
    FreezableQwen25VL.__qualname__ = _Upstream.__qualname__
    AutoModelForImageTextToText.register(Qwen2_5_VLConfig, FreezableQwen25VL, exist_ok=True)
    return FreezableQwen25VL


FreezableQwen25VL = _define()
