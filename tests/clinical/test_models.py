import pytest

from verl_ext.clinical import models


def test_loaded_once_per_process(scorer_paths):
    a = models.load_rate_ner(str(scorer_paths.rate_ner), "cpu")
    n = models.LOAD_COUNTS["rate_ner"]
    b = models.load_rate_ner(str(scorer_paths.rate_ner), "cpu")
    assert a is b and models.LOAD_COUNTS["rate_ner"] == n


def test_missing_paths_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="rate_ner is not set"):
        models.load_rate_ner(None)
    with pytest.raises(FileNotFoundError, match="biolord="):
        models.load_biolord(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="chexbert_checkpoint="):
        models.load_chexbert(str(tmp_path / "x.pth"), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="radgraph-xl"):
        models.load_radgraph(str(tmp_path), "radgraph-xl")


def test_chexbert_checkpoint_mismatch_is_an_error(scorer_paths, tmp_path):
    import torch

    state = torch.load(scorer_paths.chexbert_checkpoint, weights_only=True)["model_state_dict"]
    state.pop("module.linear_heads.13.bias")
    bad = tmp_path / "bad.pth"
    torch.save({"model_state_dict": state}, bad)
    with pytest.raises(RuntimeError, match="missing"):
        models.load_chexbert(str(bad), str(scorer_paths.chexbert_bert), "cpu")


def test_model_paths_from_dict():
    p = models.ModelPaths.from_dict({"rate_ner": "/a", "radgraph_model_type": "radgraph"})
    assert p.rate_ner == "/a" and p.biolord is None and p.radgraph_model_type == "radgraph"
    with pytest.raises(ValueError, match="unknown keys"):
        models.ModelPaths.from_dict({"ratener": "/a"})


def test_resolve_device():
    import torch

    assert models.resolve_device("cpu").type == "cpu"
    assert models.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_localize_radgraph(tmp_path, scorer_paths):
    import json
    import shutil

    d = tmp_path / "rg"
    shutil.copytree(scorer_paths.radgraph_cache / scorer_paths.radgraph_model_type, d)
    old = models.localize_radgraph(str(d), str(tmp_path))
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["model"]["embedder"]["token_embedders"]["bert"]["model_name"] == str(tmp_path.resolve())
    assert (d / "config.json.orig").exists() and old[0] == str(scorer_paths.radgraph_cache / "base-bert")
