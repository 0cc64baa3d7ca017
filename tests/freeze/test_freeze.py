"""verl_ext.freeze through verl's own model-building path (HFModelConfig: external_lib + override_config)."""
import json
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from verl_ext.testing.tiny_qwen import build_tiny_qwen25_vl

    return build_tiny_qwen25_vl(tmp_path_factory.mktemp("q"))


def _build(path, part):
    """What verl's FSDP engine does: HFModelConfig (imports external_lib, applies override_config), then
    get_hf_auto_model_class(hf_config).from_pretrained(config=hf_config)."""
    from verl.utils.model import get_hf_auto_model_class
    from verl.workers.config.model import HFModelConfig

    overrides = {"attn_implementation": "sdpa"}  # no flash-attention on CPU
    if part is not None:
        overrides["verl_ext_freeze"] = part
    cfg = HFModelConfig(path=str(path), external_lib="verl_ext.freeze", override_config=overrides)
    auto = get_hf_auto_model_class(cfg.hf_config)
    return auto.from_pretrained(str(path), config=cfg.hf_config, torch_dtype=torch.float32)


@pytest.mark.parametrize("part", ["language_model", "vision_tower"])
def test_freezes_the_named_part(tiny, part):
    model = _build(tiny, part)
    visual = {id(p) for p in model.model.visual.parameters()}
    for name, p in model.named_parameters():
        frozen = not p.requires_grad
        assert frozen == ((id(p) in visual) == (part == "vision_tower")), name
    merger = next(model.model.visual.merger.parameters())
    assert merger.requires_grad == (part == "language_model")  # the projector trains with the vision encoder (SFT)


def test_default_trains_everything_and_checkpoints_keep_the_architecture(tiny, tmp_path):
    model = _build(tiny, None)
    assert all(p.requires_grad for p in model.parameters())
    frozen = _build(tiny, "language_model")
    frozen.save_pretrained(tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]


def test_only_the_vision_tower_learns_when_the_language_model_is_frozen(tiny):
    model = _build(tiny, "language_model")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    pixel = torch.randn(16, model.config.vision_config.in_channels * 2 * 14 * 14)
    out = model.model.visual(pixel, grid_thw=torch.tensor([[1, 4, 4]]))
    feats = out.pooler_output if hasattr(out, "pooler_output") else out
    feats = feats[0] if isinstance(feats, (tuple, list)) else feats
    feats.float().pow(2).mean().backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed and all(n.startswith("model.visual") for n in changed)


def test_unknown_part_is_refused(tiny):
    from verl_ext.freeze import apply_freeze

    with pytest.raises(ValueError, match="verl_ext_freeze='decoder'"):
        apply_freeze(_build(tiny, None), "decoder")


def _rl_model_config(tiny, *overrides):
    """``actor_rollout_ref.model`` of editgrpo_trainer.yaml composed by Hydra, as verl's workers turn it into an
    ``HFModelConfig`` (``omega_conf_to_dataclass``: imports external_lib, copies override_config onto the HF config)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from verl.utils.config import omega_conf_to_dataclass

    import verl_ext

    config_dir = str(Path(verl_ext.__file__).parent / "config")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        cfg = compose("editgrpo_trainer", overrides=[f"actor_rollout_ref.model.path={tiny}",
                                                     "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
                                                     *overrides])
    GlobalHydra.instance().clear()
    return omega_conf_to_dataclass(cfg.actor_rollout_ref.model)


def _engine_model(model_cfg):
    """What verl's FSDP engine builds (``FSDPEngine._build_module``): the auto class of the HF config,
    ``from_pretrained(local_path, config=hf_config)``."""
    from verl.utils.model import get_hf_auto_model_class

    auto = get_hf_auto_model_class(hf_config=model_cfg.hf_config)
    return auto.from_pretrained(model_cfg.local_path, config=model_cfg.hf_config, torch_dtype=torch.float32)


def test_editgrpo_rl_config_freezes_the_vision_tower_by_default(tiny):
    """The EditGRPO authors' freeze_vision_tower, on verl's own config path: after an optimizer step on a loss that
    reaches every parameter, the vision tower is unchanged and the language model moved. DEER's override trains all."""
    model = _engine_model(_rl_model_config(tiny))
    visual = {id(p) for p in model.model.visual.parameters()}
    assert all(not p.requires_grad for p in model.model.visual.parameters())
    assert all(p.requires_grad for p in model.parameters() if id(p) not in visual)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    sum(p.float().pow(2).sum() for p in model.parameters()).backward()  # a gradient path to every parameter
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed and not any(n.startswith("model.visual") for n in changed)
    assert any(n.startswith("model.language_model") for n in changed)

    deer = _engine_model(_rl_model_config(tiny, "actor_rollout_ref.model.override_config.verl_ext_freeze=none"))
    assert all(p.requires_grad for p in deer.parameters())
