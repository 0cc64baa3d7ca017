"""The tiny Qwen2.5-VL fixture loads through the real loading paths (transformers Auto*, verl's hf_processor)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from verl_ext.testing.tiny_qwen import QWEN_SPECIAL_TOKENS, build_tiny_qwen25_vl


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_qwen25_vl(tmp_path_factory.mktemp("tiny_qwen"))


def _images():
    rng = np.random.default_rng(0)
    return [
        Image.fromarray((rng.random((100, 80, 3)) * 255).astype("uint8")),
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")),
    ]


def _messages(text="Findings for this chest X-ray?"):
    return [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": text}]}]


def test_files_and_generation_config(tiny_dir):
    names = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
            "processor_config.json"} <= names
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl"
    gen = json.loads((tiny_dir / "generation_config.json").read_text())
    tok = json.loads((tiny_dir / "tokenizer.json").read_text())
    ids = {t["content"]: t["id"] for t in tok["added_tokens"]}
    assert gen["eos_token_id"] == [ids["<|im_end|>"], ids["<|endoftext|>"]]
    assert gen["pad_token_id"] == ids["<|endoftext|>"]


def test_tokenizer_special_tokens_and_roundtrip(tiny_dir):
    from transformers import AutoTokenizer

    from verl.utils.tokenizer import hf_tokenizer

    tokenizer = hf_tokenizer(str(tiny_dir))
    assert type(tokenizer) is type(AutoTokenizer.from_pretrained(str(tiny_dir)))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    ids = [tokenizer.convert_tokens_to_ids(tok) for tok, _ in QWEN_SPECIAL_TOKENS]
    assert ids == list(range(ids[0], ids[0] + len(ids))), "special tokens must be contiguous, in Qwen's order"
    assert max(ids) + 1 == len(tokenizer)
    # Byte-level: any text round-trips exactly (newlines, double spaces, non-ASCII, digits).
    for text in ["The lungs are clear.\nNo pleural effusion.", "  Xyzzy™ 1.2 cm  ", "ÄÖÜ ß 中文 \t tab", ""]:
        assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
    # Clinical words are compact: the vocabulary was trained on radiology text.
    assert len(tokenizer.encode(" pneumothorax", add_special_tokens=False)) <= 2
    # A special token in text is one token and is dropped by skip_special_tokens.
    enc = tokenizer.encode("clear.<|im_end|>", add_special_tokens=False)
    assert enc[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(enc, skip_special_tokens=True) == "clear."


def test_processor_chat_template_forward_generate(tiny_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(str(tiny_dir))
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessor"
    text = processor.apply_chat_template(_messages(), add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert text.endswith("<|im_start|>assistant\n")

    inputs = processor(text=[text], images=_images(), return_tensors="pt")
    grid = inputs["image_grid_thw"]
    n_image_tokens = int((inputs["input_ids"] == processor.image_token_id).sum())
    assert n_image_tokens == int(grid.prod(-1).sum()) // 4
    assert 2 * 4 <= n_image_tokens <= 2 * 16  # the small pixel budget: 4..16 merged tokens per image

    model = AutoModelForImageTextToText.from_pretrained(str(tiny_dir))
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    model.eval()
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits.shape[:2] == inputs["input_ids"].shape
    assert torch.isfinite(out.logits).all()

    torch.manual_seed(0)
    generated = model.generate(**inputs, max_new_tokens=8, do_sample=True)
    assert generated.shape[1] > inputs["input_ids"].shape[1]
    assert torch.equal(generated[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])


def test_verl_hf_processor_binds_rope_index(tiny_dir):
    from verl.utils.tokenizer import hf_processor

    processor = hf_processor(str(tiny_dir))
    assert processor is not None and type(processor).__name__ == "Qwen2_5_VLProcessor"
    text = processor.apply_chat_template(_messages(), add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=_images(), return_tensors="pt")
    position_ids, _ = processor.get_rope_index(
        inputs["input_ids"],
        image_grid_thw=inputs["image_grid_thw"],
        attention_mask=inputs["attention_mask"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
    )
    assert position_ids.shape == (3, 1, inputs["input_ids"].shape[1])
    # Visual tokens share temporal positions; text positions after the images advance by one per token.
    assert position_ids[0, 0, -1] < inputs["input_ids"].shape[1] - 1


def test_deterministic(tmp_path):
    from safetensors.torch import load_file

    a = load_file(build_tiny_qwen25_vl(tmp_path / "a", seed=3) / "model.safetensors")
    b = load_file(build_tiny_qwen25_vl(tmp_path / "b", seed=3) / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a" / "tokenizer.json").read_text() == (tmp_path / "b" / "tokenizer.json").read_text()


def test_eos_probability_makes_responses_end(tmp_path):
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    path = build_tiny_qwen25_vl(tmp_path / "eos", eos_probability=0.15)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForImageTextToText.from_pretrained(str(path)).eval()
    ids = tokenizer("<|im_start|>user\nFindings?<|im_end|>\n<|im_start|>assistant\n", return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(**ids, max_new_tokens=60, do_sample=True, num_return_sequences=16,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    ended = sum(int((row[ids["input_ids"].shape[1]:] == tokenizer.eos_token_id).any()) for row in out)
    assert ended >= 12
    with pytest.raises(ValueError, match="eos_probability"):
        build_tiny_qwen25_vl(tmp_path / "bad", eos_probability=1.5)
