"""CheXbert saliency (DEER Eq. 9-11) on the tiny CheXbert fixture, checked against independent computations."""
import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def chexbert(scorer_paths):
    from verl_ext.clinical.models import load_chexbert

    return load_chexbert(str(scorer_paths.chexbert_checkpoint), str(scorer_paths.chexbert_bert), "cpu")


TEXTS = ["The heart is enlarged.\n\n  Small left pleural effusion, no pneumothorax!", "Lungs are clear.", "",
         "Mild edema and bibasilar atelectasis."]
TARGETS = [[1, 9], [13], [1], [4, 7]]


def _oracle(chexbert, text, targets, classes=(1,)):
    """Eq. 9-11 through f1chexbert's own forward(ids, mask), one report at a time: grad of the word embeddings."""
    from verl_ext.clinical.chexbert import CheXbertLabeler

    ids = torch.tensor([CheXbertLabeler.input_ids(type("L", (), {"m": chexbert})(), text)])
    captured = {}

    def hook(_module, _inputs, output):
        captured["e"] = output.detach().requires_grad_(True)  # the model's weights are frozen
        return captured["e"]

    handle = chexbert.model.bert.embeddings.word_embeddings.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            heads = chexbert.model(ids, torch.ones_like(ids))
            s = sum(heads[c][0, k] for c in targets for k in classes if k < heads[c].shape[-1])
            if not torch.is_tensor(s):
                return np.zeros(ids.shape[1] - 2)
            s.backward()
    finally:
        handle.remove()
    return captured["e"].grad[0].norm(dim=-1)[1:-1].numpy()


def test_batched_saliency_equals_per_report_oracle(chexbert):
    from verl_ext.clinical.chexbert_saliency import chexbert_saliency

    got = chexbert_saliency(chexbert, TEXTS, TARGETS, batch_size=8)
    for text, targets, sal in zip(TEXTS, TARGETS, got):
        np.testing.assert_allclose(sal.scores, _oracle(chexbert, text, targets), rtol=1e-4, atol=1e-7)
    assert got[2].spans == () and got[2].scores.size == 0  # an empty report has no word pieces


def test_positive_uncertain_variant_adds_the_uncertain_logit(chexbert):
    from verl_ext.clinical.chexbert_saliency import chexbert_saliency

    got = chexbert_saliency(chexbert, TEXTS[:1], TARGETS[:1], logit_classes="positive_uncertain")
    np.testing.assert_allclose(got[0].scores, _oracle(chexbert, TEXTS[0], TARGETS[0], (1, 3)), rtol=1e-4, atol=1e-7)


def test_empty_target_set_has_no_gradient(chexbert):
    from verl_ext.clinical.chexbert_saliency import chexbert_saliency

    (sal,) = chexbert_saliency(chexbert, [TEXTS[0]], [[]])
    assert sal.scores.size > 0 and np.all(sal.scores == 0)


def test_spans_point_into_the_original_text(chexbert):
    from verl_ext.clinical.chexbert import normalize_report
    from verl_ext.clinical.chexbert_saliency import chexbert_saliency, normalize_with_map

    for text in TEXTS + ["  a\t\tb \n c  "]:
        assert normalize_with_map(text)[0] == normalize_report(text)
    (sal,) = chexbert_saliency(chexbert, [TEXTS[0]], [[1]])
    words = [TEXTS[0][a:b] for a, b in sal.spans]
    assert words[:4] == ["The", "heart", "is", "enlarged"] and "pneumothorax" in words


def test_input_ids_match_the_labeler(chexbert):
    from verl_ext.clinical.chexbert import CheXbertLabeler
    from verl_ext.clinical.chexbert_saliency import _encode

    fake = type("L", (), {"m": chexbert})()
    for text in TEXTS + ["x " * 700]:
        ids, spans = _encode(chexbert.tokenizer, text)
        assert ids == CheXbertLabeler.input_ids(fake, text)
        assert len(spans) == len(ids) - 2


def test_bad_target_index_is_refused(chexbert):
    from verl_ext.clinical.chexbert_saliency import chexbert_saliency

    with pytest.raises(ValueError, match="target condition index 14"):
        chexbert_saliency(chexbert, ["effusion"], [[14]])
