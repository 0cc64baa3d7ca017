"""Why verl_ext.clinical.compat exists: each test shows the upstream failure without the shim."""

import contextlib
import io
import shutil
import warnings

import numpy as np
import pytest

from verl_ext.clinical import compat


@contextlib.contextmanager
def shim_removed():
    was = compat.is_installed()
    compat.uninstall()
    try:
        yield
    finally:
        if was:
            compat.install()


def test_radgraph_fails_on_transformers5_without_shim(scorer_paths):
    from radgraph import RadGraph

    kwargs = dict(model_type=scorer_paths.radgraph_model_type, model_cache_dir=str(scorer_paths.radgraph_cache),
                  cuda=-1)
    with shim_removed(), contextlib.redirect_stdout(io.StringIO()):
        with pytest.raises(AttributeError, match="encode_plus"):
            RadGraph(**kwargs)
    compat.install()
    with contextlib.redirect_stdout(io.StringIO()):
        rg = RadGraph(**kwargs)
    out = rg(["Mild cardiomegaly. Bibasilar atelectasis."])
    assert set(out) == {"0"} and "entities" in out["0"]


@pytest.fixture()
def f1chexbert_offline(scorer_paths, monkeypatch, tmp_path):
    """f1chexbert hard-wires hub ids: lay the fixtures out as its caches (HF cache + ~/.cache/chexbert)."""
    import f1chexbert.f1chexbert as fc

    from verl_ext.testing.scorer_models import install_hf_cache_entry

    hf_home = tmp_path / "hf"
    install_hf_cache_entry(hf_home, "bert-base-uncased", scorer_paths.chexbert_bert)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hf_home / "hub"))
    cache = tmp_path / "chexbert"
    cache.mkdir()
    shutil.copy(scorer_paths.chexbert_checkpoint, cache / "chexbert.pth")
    monkeypatch.setattr(fc, "CACHE_DIR", str(cache))
    with warnings.catch_warnings():  # F1CheXbert's module set warnings to "ignore" at import; keep ours
        yield fc.F1CheXbert(device="cpu")


def test_f1chexbert_get_label_needs_shim_and_matches_our_labeler(f1chexbert_offline, scorer_paths):
    from verl_ext.clinical.chexbert import CheXbertLabeler

    upstream = f1chexbert_offline
    texts = [
        "The heart is enlarged.\nSmall left pleural effusion.",
        "  No acute process  ",
        "",
        "Lungs are clear. " * 200,
    ]
    with shim_removed():
        with pytest.raises(AttributeError, match="encode_plus"):
            upstream.get_label(texts[0])
    compat.install()
    ours = CheXbertLabeler(str(scorer_paths.chexbert_checkpoint), str(scorer_paths.chexbert_bert), device="cpu")
    expected = np.array([upstream.get_label(t.strip()) for t in texts])
    assert ours.labels(texts).tolist() == expected.tolist()
    assert len(ours.input_ids(texts[3])) == 512  # cut to 512 with the final [SEP] kept, as upstream


def test_f1chexbert_forward_breaks_on_sklearn_1_8(f1chexbert_offline):
    """F1CheXbert.forward unpacks sklearn's private _check_targets into 3 values; sklearn 1.8 returns 4. Hence all
    F1s are computed in verl_ext.metrics from label vectors."""
    compat.install()
    with pytest.raises(ValueError, match="too many values to unpack"):
        f1chexbert_offline(["mild cardiomegaly"], ["heart size is normal"])


def test_quiet_imports_keeps_warning_filters():
    before = list(warnings.filters)
    with compat.quiet_imports():
        warnings.filterwarnings("ignore")  # what f1chexbert does at import
    assert warnings.filters == before


def test_encode_plus_shim_semantics():
    from transformers import BertTokenizer

    compat.install()
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "mild", "cardiomegaly"])}
    tok = BertTokenizer(vocab=vocab)
    assert tok.encode_plus(["mild", "cardiomegaly"])["input_ids"] == [2, 5, 6, 3]  # a token list, as f1chexbert
    assert tok.encode_plus("mild cardiomegaly")["input_ids"] == [2, 5, 6, 3]
    assert tok.build_inputs_with_special_tokens([5], [6]) == [2, 5, 3, 6, 3]


def test_pyfastner_syntax_notes_are_silenced_and_nothing_else(caplog, monkeypatch):
    """PyRuSH's PyFastNER logs '"\\." is not a eligible syntax.' on the root logger for every sentence RaTEScore's
    splitter reads; the filter drops exactly those records."""
    import logging

    from verl_ext.clinical.rate import rate_units

    report = "Heart size is normal. No pleural effusion. Lungs are clear."
    with caplog.at_level(logging.INFO):
        with monkeypatch.context() as m:  # the filter passing everything: what the user saw
            m.setattr(compat._PyFastNERSyntaxNote, "filter", lambda self, record: True)
            rate_units(report + " Upstream.")
        upstream = [r for r in caplog.records if "eligible syntax" in r.getMessage()]
        caplog.clear()
        rate_units(report + " Shimmed.")
        logging.info("a root INFO record of our own")
    assert upstream and all(r.pathname.split("/")[-2] == "PyFastNER" for r in upstream)
    assert [r.getMessage() for r in caplog.records] == ["a root INFO record of our own"]
