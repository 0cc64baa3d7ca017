"""CheXbert [CLS] embeddings (SembScore): batched and padded equal one unpadded forward pass per report."""
import numpy as np
import torch

from verl_ext.clinical.chexbert_embed import CheXbertEncoder

TEXTS = [
    "The heart is enlarged. Small left pleural effusion.",
    "Heart size is normal.",
    "",
    "Mild cardiomegaly.\n\nBibasilar   atelectasis.",
    "pneumothorax",
]


def test_batched_embeddings_equal_single_unpadded_passes(scorer_paths):
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
