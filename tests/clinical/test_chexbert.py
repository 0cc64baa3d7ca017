import numpy as np
import pytest
import torch

from verl_ext.clinical.chexbert import CheXbertLabeler, normalize_report
from verl_ext.clinical.chexbert_embed import CheXbertEncoder

TEXTS = [
    "The heart is enlarged. Small left pleural effusion.",
    "Heart size is normal.",
    "",
    "Mild cardiomegaly.\n\nBibasilar   atelectasis.",
    "pneumothorax",
]


@pytest.fixture(scope="module")
def labeler(scorer_paths):
    return CheXbertLabeler(
        str(scorer_paths.chexbert_checkpoint), str(scorer_paths.chexbert_bert), device="cpu", batch_size=3
    )


def test_normalize():
    assert (
        normalize_report("  Mild\ncardiomegaly.\n\n  Bibasilar\tatelectasis. ")
        == "Mild cardiomegaly. Bibasilar atelectasis."
    )


def test_batched_equals_single_and_cache(labeler, scorer_paths):
    batched = labeler.classes(TEXTS)
    assert batched.shape == (5, 14) and batched.dtype == np.int64
    assert set(np.unique(batched[:, :13])) <= {0, 1, 2, 3} and set(np.unique(batched[:, 13])) <= {0, 1}
    single = CheXbertLabeler(
        str(scorer_paths.chexbert_checkpoint), str(scorer_paths.chexbert_bert), device="cpu", batch_size=1
    )
    assert single.classes(TEXTS).tolist() == batched.tolist()
    passes = labeler.counters["forward_passes"]
    assert labeler.classes(TEXTS[::-1]).tolist() == batched[::-1].tolist()
    assert labeler.counters["forward_passes"] == passes
    assert len({tuple(r) for r in batched}) > 1  # the fixture is input-sensitive
    lab = labeler.labels(TEXTS)
    assert lab.tolist() == (((batched == 1) | (batched == 3)).astype(int)).tolist()


def test_input_ids(labeler):
    tok = labeler.m.tokenizer
    assert labeler.input_ids("") == [tok.cls_token_id, tok.sep_token_id]
    ids = labeler.input_ids("effusion " * 600)
    assert len(ids) == 512 and ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id


def test_batched_embeddings_equal_single_unpadded_passes(scorer_paths):
    """SembScore's [CLS] vectors: batched and padded equal one unpadded forward pass per report."""
    enc = CheXbertEncoder(str(scorer_paths.chexbert_checkpoint), str(scorer_paths.chexbert_bert), device="cpu",
                          batch_size=2)
    out = enc.embeddings(TEXTS)
    bert = enc.labeler.m.model.bert
    assert out.shape == (len(TEXTS), bert.config.hidden_size) and out.dtype == np.float64
    with torch.inference_mode():
        single = [bert(torch.tensor([enc.labeler.input_ids(t)]))[0][0, 0].double().numpy() for t in TEXTS]
    np.testing.assert_allclose(out, np.stack(single), rtol=1e-5, atol=1e-5)
    assert len({tuple(np.round(r, 4)) for r in out}) == len(TEXTS)  # the fixture is input-sensitive
    assert enc.embeddings([]).shape == (0, bert.config.hidden_size)
