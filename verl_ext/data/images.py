"""Image loading, resizing into a Qwen2.5-VL pixel budget, and encoding for parquet.

* `smart_resize` gives the same (height, width) as ``qwen_vl_utils.smart_resize`` (factor 28 = patch 14 x merge 2;
  checked in tests) without importing qwen_vl_utils (which imports torchvision) into every worker.
* `load_image` decodes JPEG with PIL's ``draft`` (DCT scaling), so a 2,500 x 3,000 MIMIC JPEG is decoded at 1/2..1/8
  size when the target allows it; 16-bit PNGs (PadChest) are scaled to 8 bits by their actual maximum, not clipped.
* Images stay grey-scale (mode ``L``) when the source is grey; verl converts to RGB when it builds the prompt.

The defaults are the paper's RL budget: 262,144 (512^2) to 401,408 (512 x 28 x 28) pixels per image (App. E).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

FACTOR = 28
DEFAULT_MIN_PIXELS = 262_144
DEFAULT_MAX_PIXELS = 401_408
MAX_ASPECT_RATIO = 200


class ImageError(Exception):
    """An image that cannot be used; `reason` is the stats key (``image_missing``, ``image_unreadable`` ...)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def smart_resize(height: int, width: int, factor: int = FACTOR, min_pixels: int = DEFAULT_MIN_PIXELS,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(height, width), both multiples of `factor`, with min_pixels <= h*w <= max_pixels and the aspect ratio kept
    as closely as the grid allows (Qwen2.5-VL's rule)."""
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio above {MAX_ASPECT_RATIO}: {height}x{width}")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


@dataclass(frozen=True)
class ImageSpec:
    """How images are stored: pixel budget, grid factor, file format and JPEG quality."""

    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    factor: int = FACTOR
    format: str = "jpeg"  # "jpeg" | "png"
    quality: int = 95

    @property
    def extension(self) -> str:
        return ".jpg" if self.format == "jpeg" else ".png"


def _to_8bit(img: Image.Image) -> Image.Image:
    """Grey ``L`` or ``RGB``; 16/32-bit grey is scaled by its actual maximum."""
    if img.mode in ("L", "RGB"):
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        if top <= 0:
            return Image.new("L", img.size, 0)
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if img.mode in ("LA", "1", "P"):
        return img.convert("L") if img.mode != "P" else img.convert("RGB")
    return img.convert("RGB")


def load_image(source: str | bytes, spec: ImageSpec) -> Image.Image:
    """Open, decode and resize one image into `spec`'s budget. Raises `ImageError` with a stats reason."""
    try:
        fp = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except FileNotFoundError as e:
        raise ImageError("image_missing", f"image file not found: {source}") from e
    except OSError as e:
        raise ImageError("image_unreadable", f"cannot open image {source}: {e}") from e
    try:
        with fp:
            img = Image.open(fp)
            width, height = img.size
            th, tw = smart_resize(height, width, spec.factor, spec.min_pixels, spec.max_pixels)
            if img.format == "JPEG" and img.mode in ("L", "RGB"):
                img.draft(img.mode, (tw, th))  # decode at a reduced DCT scale, never below the target size
            img.load()
    except ImageError:
        raise
    except Exception as e:  # PIL raises many types for corrupt data
        raise ImageError("image_unreadable", f"cannot decode image {source}: {type(e).__name__}: {e}") from e
    img = _to_8bit(img)
    if img.size != (tw, th):
        img = img.resize((tw, th), Image.Resampling.BICUBIC)
    return img


def encode_image(img: Image.Image, spec: ImageSpec) -> bytes:
    """Encoded bytes (JPEG or PNG) of an already resized image."""
    buf = io.BytesIO()
    if spec.format == "jpeg":
        img.save(buf, format="JPEG", quality=spec.quality)
    elif spec.format == "png":
        img.save(buf, format="PNG", compress_level=6)
    else:
        raise ValueError(f"unknown image format {spec.format!r} (jpeg or png)")
    return buf.getvalue()
