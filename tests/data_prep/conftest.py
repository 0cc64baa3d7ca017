"""Fixtures for the converter tests: synthetic dataset layouts (never real data), converted once per session, and a
tiny Qwen2.5-VL processor for verl's datasets."""
from __future__ import annotations

import pytest

from verl_ext.data.cli import main
from verl_ext.testing import synthetic

# Small pixel budget for tests: 64 px synthetic images -> 56x56 = 4 merged visual tokens each.
PIXELS = ["--min-pixels", str(56 * 56), "--max-pixels", str(112 * 112)]


@pytest.fixture(scope="session")
def pixel_args() -> list[str]:
    return list(PIXELS)


@pytest.fixture(scope="session")
def mimic_layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic_src")
    return synthetic.write_mimic_cxr(root, synthetic.generate_patients(12, seed=3), seed=3, reports="dir")


@pytest.fixture(scope="session")
def mimic_out(mimic_layout, tmp_path_factory):
    out = tmp_path_factory.mktemp("mimic_out")
    stats = main("mimic_cxr", ["--mimic-cxr-jpg", str(mimic_layout.paths["jpg_root"]), "--reports",
                               str(mimic_layout.paths["reports"]), "--out", str(out), "--no-progress", *PIXELS])
    return out, stats


@pytest.fixture(scope="session")
def rex_layout(tmp_path_factory):
    return synthetic.write_rexgradient(tmp_path_factory.mktemp("rex_src"), seed=4)


@pytest.fixture(scope="session")
def rex_out(rex_layout, tmp_path_factory):
    out = tmp_path_factory.mktemp("rex_out")
    stats = main("rexgradient", ["--root", str(rex_layout.root), "--out", str(out), "--no-progress", *PIXELS])
    return out, stats


@pytest.fixture(scope="session")
def iu_layout(tmp_path_factory):
    return synthetic.write_iu_xray(tmp_path_factory.mktemp("iu_src"), seed=5, openi=True)


@pytest.fixture(scope="session")
def iu_out(iu_layout, tmp_path_factory):
    out = tmp_path_factory.mktemp("iu_out")
    stats = main("iu_xray", ["--root", str(iu_layout.root), "--out", str(out), "--no-progress", *PIXELS])
    return out, stats


@pytest.fixture(scope="session")
def padchest_layout(tmp_path_factory):
    return synthetic.write_padchest_gr(tmp_path_factory.mktemp("pc_src"), seed=6)


@pytest.fixture(scope="session")
def padchest_out(padchest_layout, tmp_path_factory):
    out = tmp_path_factory.mktemp("pc_out")
    stats = main("padchest_gr", ["--root", str(padchest_layout.root), "--out", str(out), "--no-progress", *PIXELS])
    return out, stats


@pytest.fixture(scope="session")
def chexpert_out(tmp_path_factory):
    from verl_ext.testing.released import write_chexpert_release

    rel = write_chexpert_release(tmp_path_factory.mktemp("cxp_src"))
    out = tmp_path_factory.mktemp("cxp_out")
    # the release has no test split; val is merged so that the loading test sees every row
    stats = main("chexpert_plus", ["--root", str(rel.root), "--out", str(out), "--no-progress",
                                   "--merge-val-into-train", *PIXELS])
    return out, stats


@pytest.fixture(scope="session")
def tiny_processor(tmp_path_factory):
    """A tiny Qwen2.5-VL processor whose image budget (56*56 .. 112*112) contains the test images' sizes."""
    from transformers import AutoProcessor

    from verl_ext.testing.tiny_qwen import build_tiny_qwen25_vl

    model_dir = build_tiny_qwen25_vl(tmp_path_factory.mktemp("tiny_qwen"), min_pixels=56 * 56, max_pixels=112 * 112)
    return AutoProcessor.from_pretrained(model_dir)
