"""BERTScore with ReXrank's settings (verl_ext.clinical.bertscore), the bert-score package as the oracle."""
import re

import numpy as np
import pandas as pd
import pytest

from verl_ext.clinical import compat
from verl_ext.clinical.bertscore import BertScorer, bundled_baseline, default_layer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from verl_ext.testing.tiny_roberta import build_tiny_distilroberta

    return str(build_tiny_distilroberta(tmp_path_factory.mktemp("distilroberta")))


CANDS = ["No pleural effusion.", "Heart  size is   normal. Lungs are clear.", "Mild pulmonary edema."]
REFS = ["No pleural effusion.", "The lungs are clear.", "Small left pleural effusion."]


def test_settings_are_what_the_hub_name_selects():
    assert default_layer() == 5  # bert_score.utils.model2layers["distilroberta-base"]
    assert bundled_baseline().endswith("rescale_baseline/en/distilroberta-base.tsv")


def test_equals_bert_score_with_the_rescaling_formula(model_dir):
    from bert_score import BERTScorer

    ours = BertScorer(model_dir, device="cpu", batch_size=2).score(CANDS, REFS)
    raw = BertScorer(model_dir, device="cpu", rescale=False).score(CANDS, REFS)
    base = float(pd.read_csv(bundled_baseline()).iloc[5]["F"])  # layer 5's F baseline
    np.testing.assert_allclose(ours, (raw - base) / (1 - base), rtol=1e-5, atol=1e-6)
    assert ours[0] == pytest.approx(1.0, abs=1e-5)
    # the package itself, on CXR-Report-Metric's space-collapsed texts
    direct = BERTScorer(model_type=model_dir, num_layers=5, lang="en", rescale_with_baseline=True,
                        baseline_path=bundled_baseline(), device="cpu")
    _, _, f1 = direct.score([re.sub(r" +", " ", c) for c in CANDS], REFS)
    np.testing.assert_allclose(ours, f1.numpy(), rtol=1e-5, atol=1e-6)


def test_empty_candidate_needs_the_compat_shim(model_dir):
    """bert-score encodes "" with build_inputs_with_special_tokens, which transformers 5 removed."""
    from bert_score import BERTScorer

    compat.uninstall()
    try:
        direct = BERTScorer(model_type=model_dir, num_layers=5, device="cpu")
        with pytest.raises(AttributeError, match="build_inputs_with_special_tokens"):
            direct.score([""], ["No effusion."])
    finally:
        compat.install()
    scores = BertScorer(model_dir, device="cpu", rescale=False).score(["", "No effusion."], ["No effusion.", ""])
    assert scores.tolist() == [0.0, 0.0]  # bert-score's rule for an empty side, before rescaling


def test_first_word_is_tokenised_with_its_leading_space(model_dir):
    """bert-score asks RoBERTa for add_prefix_space=True (``sent_encode``); transformers 5 drops the keyword, so
    without the compat shim "No" is encoded as ``No`` instead of ``ĠNo`` (what transformers 4 gave)."""
    from bert_score.utils import sent_encode

    expected = ["<s>", "ĠNo", "Ġpleural", "Ġeffusion", ".", "</s>"]
    compat.uninstall_bert_score()
    try:
        from bert_score.scorer import get_tokenizer

        upstream = get_tokenizer(model_dir)
        assert upstream.convert_ids_to_tokens(sent_encode(upstream, "No pleural effusion.")) == ["<s>", "No"] + expected[2:]
    finally:
        compat.install_bert_score()
    scorer = BertScorer(model_dir, device="cpu")._build(None)
    tok = scorer._tokenizer
    assert tok.convert_ids_to_tokens(sent_encode(tok, "No pleural effusion.")) == expected
    # every word, the first included, is the token it is inside a sentence
    assert sent_encode(tok, "effusion")[1] == sent_encode(tok, "No effusion")[2]
