import numpy as np
import pytest

from verl_ext.clinical.chexbert import CheXbertLabeler, normalize_report

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
