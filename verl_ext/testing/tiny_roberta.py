"""A tiny, randomly initialised stand-in for ``distilroberta-base`` (ReXrank's BERTScore model), offline, in seconds.

`build_tiny_distilroberta(out_dir)` writes what ``bert_score`` loads with ``AutoModel`` / ``AutoTokenizer``: a
``RobertaModel`` (6 layers like distilroberta-base, so bert-score's default layer 5 exists; hidden 32) and a
byte-level BPE ``RobertaTokenizer`` (``<s> <pad> </s> <unk>`` at ids 0-3 as in the real vocabulary, then
``<mask>``) trained on the radiology corpus of ``verl_ext.testing.tiny_qwen``. The scores it gives are meaningless; the loading,
tokenising, layer selection, greedy matching and baseline rescaling of bert-score all run for real.
"""
from __future__ import annotations

import json
from pathlib import Path

from verl_ext.testing.tiny_qwen import RADIOLOGY_CORPUS

__all__ = ["build_tiny_distilroberta"]

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
NUM_LAYERS = 6  # distilroberta-base


def build_tiny_distilroberta(out_dir: str | Path, seed: int = 0, vocab_size: int = 600) -> Path:
    """Write the tiny model + tokenizer to `out_dir` (created) and return it."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(RADIOLOGY_CORPUS) * 3, vocab_size=vocab_size, min_frequency=1,
                            special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    model = json.loads(bpe._tokenizer.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    # transformers 5 builds the tokenizer from the vocabulary and merges in memory; 512 = distilroberta-base's
    # model_max_length (bert-score truncates to it).
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=512)
    tokenizer.save_pretrained(out)
    config = RobertaConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=NUM_LAYERS, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=514, type_vocab_size=1, pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"], initializer_range=0.3,
    )
    torch.manual_seed(seed)
    RobertaModel(config, add_pooling_layer=False).eval().save_pretrained(out)
    return out
