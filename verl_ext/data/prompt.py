"""The EditGRPO prompt (paper App. E) with the actual views named, and the clinical context lines.

The paper's example, for two images::

    <image><image>

    As a radiologist assistant, your task is to interpret a chest X-ray study. Given the current <view> image,
    and the prior <view> image.

    Please provide a detailed description of the findings from the image(s) in the current study. If there are
    prior studies available, please incorporate relevant details from those as well in your analysis.

    INDICATION: <INDICATION>
    TECHNIQUE: <TECHNIQUE>
    COMPARISON: <COMPARISON>

`build_prompt` fills ``<view>`` per image in order ("the current PA image, the current lateral image, and the prior
PA image") and writes only the context lines a dataset has (MIMIC-CXR: all three; ReXGradient and IU-Xray:
INDICATION and COMPARISON; PadChest-GR: none). A line whose value is missing for a study gets `missing_value`.
The target is the FINDINGS section; prior reports are never part of the prompt.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from verl_ext.data.views import prompt_view_name

IMAGE_PLACEHOLDER = "<image>"
INSTRUCTION_HEAD = "As a radiologist assistant, your task is to interpret a chest X-ray study."
INSTRUCTION_BODY = (
    "Please provide a detailed description of the findings from the image(s) in the current study. "
    "If there are prior studies available, please incorporate relevant details from those as well in your analysis."
)
CONTEXT_FIELDS = ("indication", "technique", "comparison")
DEFAULT_MISSING_VALUE = "N/A"


@dataclass(frozen=True)
class ImageSlot:
    """One image of a prompt: whether it belongs to the current or the prior study, and its canonical view."""

    role: str  # "current" | "prior"
    view: str  # canonical label from verl_ext.data.views


def describe_image(slot: ImageSlot) -> str:
    """"the current PA image", "the prior lateral image", "the current image" (unknown view)."""
    name = prompt_view_name(slot.view)
    return f"the {slot.role} {name} image" if name else f"the {slot.role} image"


def describe_images(slots: Sequence[ImageSlot]) -> str:
    """"Given the current PA image, the current lateral image, and the prior PA image." (App. E's comma style)."""
    parts = [describe_image(s) for s in slots]
    if not parts:
        return ""
    if len(parts) == 1:
        return f"Given {parts[0]}."
    return "Given " + ", ".join(parts[:-1]) + ", and " + parts[-1] + "."


def build_prompt(
    slots: Sequence[ImageSlot],
    context: dict[str, str | None] | None = None,
    context_fields: Sequence[str] = CONTEXT_FIELDS,
    missing_value: str = DEFAULT_MISSING_VALUE,
) -> str:
    """The user message: one `<image>` per slot first, then the App. E instruction and the context lines.

    Args:
        slots: the images in prompt order.
        context: section texts keyed by lower-case name (``indication``, ``technique``, ``comparison``).
        context_fields: which context lines this dataset has, in order; others are left out entirely.
        missing_value: written after ``INDICATION:`` etc. when the study lacks that section.
    """
    context = context or {}
    lines = [IMAGE_PLACEHOLDER * len(slots), "", f"{INSTRUCTION_HEAD} {describe_images(slots)}".rstrip(), "",
             INSTRUCTION_BODY]
    ctx = []
    for name in context_fields:
        value = " ".join((context.get(name) or "").split())
        ctx.append(f"{name.upper()}: {value or missing_value}")
    if ctx:
        lines += [""] + ctx
    return "\n".join(lines)
