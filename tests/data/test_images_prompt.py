"""Image resizing/encoding, view labels and the App. E prompt."""
from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image

from verl_ext.data.images import ImageError, ImageSpec, encode_image, load_image, smart_resize
from verl_ext.data.prompt import ImageSlot, build_prompt
from verl_ext.data.views import normalize_view, view_class


def test_smart_resize_matches_qwen_vl_utils():
    from qwen_vl_utils import smart_resize as qwen

    rng = random.Random(0)
    for _ in range(3000):
        h, w = rng.randint(28, 4000), rng.randint(28, 4000)
        if max(h, w) / min(h, w) > 100:
            continue
        lo, hi = rng.choice([(262_144, 401_408), (3136, 12544), (3136, 1_605_632)])
        expected = tuple(qwen(h, w, factor=28, min_pixels=lo, max_pixels=hi))
        if 0 in expected:  # qwen_vl_utils floors very thin images to 0 pixels; ours keeps one grid cell
            assert smart_resize(h, w, 28, lo, hi) == tuple(max(28, v) for v in expected)
            continue
        assert smart_resize(h, w, 28, lo, hi) == expected


def test_paper_budget_on_mimic_sized_jpeg(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (3056, 2544), np.uint8), "L").save(path)
    img = load_image(str(path), ImageSpec())
    w, h = img.size
    assert w % 28 == 0 and h % 28 == 0 and 262_144 <= w * h <= 401_408 and img.mode == "L"
    data = encode_image(img, ImageSpec())
    assert Image.open(io.BytesIO(data)).format == "JPEG"


def test_16bit_and_errors(tmp_path):
    arr = (np.arange(64 * 64).reshape(64, 64) % 1024).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "a.png")
    img = load_image(str(tmp_path / "a.png"), ImageSpec(min_pixels=3136, max_pixels=12544))
    assert img.mode == "L" and np.asarray(img).max() >= 250  # scaled by the 10-bit maximum, not clipped
    with pytest.raises(ImageError) as e:
        load_image(str(tmp_path / "missing.png"), ImageSpec())
    assert e.value.reason == "image_missing"
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageError) as e:
        load_image(str(tmp_path / "bad.jpg"), ImageSpec())
    assert e.value.reason == "image_unreadable"


def test_views():
    assert normalize_view("POSTERO_ANTERIOR") == "PA" and normalize_view("ANTERO_POSTERIOR") == "AP"
    assert normalize_view(float("nan"), "postero-anterior") == "PA"
    assert normalize_view(None, "left lateral") == "LL"
    assert normalize_view(None) == "UNKNOWN" and normalize_view("ap axial") == "AP AXIAL"
    assert [view_class(v) for v in ("PA", "AP", "FRONTAL", "LATERAL", "LL", "SWIMMERS")] == \
        ["frontal"] * 3 + ["lateral"] * 2 + ["other"]


def test_prompt_template():
    slots = [ImageSlot("current", "PA"), ImageSlot("current", "LATERAL"), ImageSlot("prior", "AP")]
    text = build_prompt(slots, {"indication": "Cough.\n fever", "technique": "", "comparison": "___"})
    assert text == (
        "<image><image><image>\n\n"
        "As a radiologist assistant, your task is to interpret a chest X-ray study. Given the current PA image, the "
        "current lateral image, and the prior AP image.\n\n"
        "Please provide a detailed description of the findings from the image(s) in the current study. If there are "
        "prior studies available, please incorporate relevant details from those as well in your analysis.\n\n"
        "INDICATION: Cough. fever\nTECHNIQUE: N/A\nCOMPARISON: ___")
    one = build_prompt([ImageSlot("current", "UNKNOWN")], {}, context_fields=())
    assert "Given the current image.\n\nPlease" in one and one.endswith("in your analysis.")
