"""A tiny, randomly initialised Qwen2.5-VL written to disk in its real Hugging Face format, offline, in seconds.

`build_tiny_qwen25_vl(out_dir)` writes everything the real loading paths read:

* ``config.json`` (``Qwen2_5_VLConfig``, ``model_type=qwen2_5_vl``) and ``model.safetensors``: a ~0.5M-parameter
  Qwen2_5_VLForConditionalGeneration (2 vision blocks, 2 decoder layers, real mrope sections);
* ``tokenizer.json`` / ``tokenizer_config.json``: a byte-level BPE (``Qwen2Tokenizer``, Qwen's exact pre-tokenizer
  regex, NFC normaliser and byte-level decoder) trained on a small built-in corpus of radiology sentences, so it
  encodes *any* text and short clinical words are single tokens. All 22 Qwen2.5 special/chat tokens follow the
  learned vocabulary, in Qwen's order (``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``, ... ``<|image_pad|>``,
  ``<|video_pad|>`` ...). ``eos_token=<|im_end|>``, ``pad_token=<|endoftext|>`` as in Qwen2.5-VL-Instruct;
* ``processor_config.json`` / ``chat_template.jinja``: a ``Qwen2_5_VLProcessor`` with Qwen2.5-VL's chat template, a
  ``Qwen2VLImageProcessor`` with a small pixel budget (default 56*56 .. 112*112, i.e. 4..16 visual tokens per
  image) and a ``Qwen2VLVideoProcessor``;
* ``generation_config.json``: ``eos_token_id=[<|im_end|>, <|endoftext|>]``, ``pad_token_id=<|endoftext|>``, as the
  real checkpoint.

It loads through ``AutoProcessor``, ``AutoTokenizer``, ``AutoModelForImageTextToText`` and verl's
``verl.utils.tokenizer.hf_processor`` / ``hf_tokenizer`` (see ``tests/testing/test_tiny_qwen.py``).
The output is deterministic for a given ``seed``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

__all__ = [
    "QWEN_CHAT_TEMPLATE",
    "QWEN_SPECIAL_TOKENS",
    "RADIOLOGY_CORPUS",
    "build_tiny_qwen25_vl",
    "build_tiny_tokenizer",
]

# Qwen2.5-VL-Instruct's chat template (chat_template.json of Qwen/Qwen2.5-VL-*-Instruct), verbatim.
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2.5's added tokens in id order (151643..151664 in the real vocabulary); `special` as in its tokenizer.json.
QWEN_SPECIAL_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)

# A small corpus for the BPE merges: chest X-ray findings phrasing, the prompt wording, and common English words.
# Byte-level BPE encodes anything; the corpus only decides which strings are single tokens.
RADIOLOGY_CORPUS: tuple[str, ...] = (
    "The lungs are clear. There is no focal consolidation, pleural effusion, or pneumothorax.",
    "The cardiomediastinal silhouette is within normal limits. Heart size is normal.",
    "The heart is mildly enlarged. Mild cardiomegaly is unchanged from the prior study.",
    "There is a small left pleural effusion with adjacent atelectasis at the left lung base.",
    "Small bilateral pleural effusions are present. There is mild pulmonary vascular congestion.",
    "Moderate pulmonary edema has increased compared to the prior radiograph.",
    "A right lower lobe opacity may represent pneumonia or aspiration in the appropriate clinical setting.",
    "There is no pneumothorax. No acute osseous abnormality is seen.",
    "Degenerative changes of the thoracic spine are noted. The osseous structures are intact.",
    "A right internal jugular central venous catheter terminates in the mid superior vena cava.",
    "The endotracheal tube terminates approximately 4 cm above the carina. A nasogastric tube is in the stomach.",
    "Median sternotomy wires and mediastinal clips are consistent with prior cardiac surgery.",
    "A left-sided pacemaker is present with leads in the right atrium and right ventricle.",
    "Linear opacities at the lung bases likely reflect subsegmental atelectasis or scarring.",
    "The hilar contours are normal. The aorta is tortuous and calcified.",
    "There is a 1.2 cm nodule in the right upper lobe, new since the prior examination.",
    "Hyperinflation of the lungs with flattening of the diaphragms suggests chronic obstructive pulmonary disease.",
    "No evidence of free intraperitoneal air below the diaphragm.",
    "Frontal and lateral views of the chest were obtained. Portable semi-upright AP view of the chest.",
    "Compared to the prior study there is no significant interval change.",
    "Interval improvement of the right basilar consolidation. Persistent left retrocardiac opacity.",
    "Mild interstitial edema. Enlarged cardiac silhouette. Possible small right effusion.",
    "Support devices are unchanged in position. Stable postoperative appearance of the mediastinum.",
    "Low lung volumes accentuate the bronchovascular markings. No definite focal opacity.",
    "There is a displaced fracture of the left lateral sixth rib. Healed right rib fractures.",
    "Subcutaneous emphysema is seen along the right chest wall. A right chest tube is in place.",
    "Calcified granuloma in the left upper lobe. Hiatal hernia is present.",
    "The trachea is midline. The mediastinum is not widened.",
    "Patchy airspace opacities in both lungs concerning for multifocal pneumonia.",
    "Blunting of the right costophrenic angle may reflect a trace effusion or pleural thickening.",
    "Findings: Impression: Indication: Technique: Comparison: History: None. Chest radiograph, two views.",
    "As a radiologist assistant, your task is to interpret a chest X-ray study. Given the current frontal image, "
    "and the prior lateral image. Please provide a detailed description of the findings from the image(s) in the "
    "current study. If there are prior studies available, please incorporate relevant details from those as well "
    "in your analysis.",
    "INDICATION: Shortness of breath, cough and fever. TECHNIQUE: PA and lateral. COMPARISON: Chest radiograph from",
    "You are a helpful assistant. Describe the image. What do you see? Write the report.",
    "the of and to in is was for on with as at by an be this that are from or it which there have has not no",
    "mild moderate severe small large new old stable unchanged increased decreased improved worsening resolved",
    "right left bilateral upper lower middle lobe base apex apical basilar perihilar retrocardiac lingula",
    "0 1 2 3 4 5 6 7 8 9 10 cm mm ( ) , . ; : - / ' \" ? ! \n\n",
)


def build_tiny_tokenizer(vocab_size: int = 1200, corpus: tuple[str, ...] = RADIOLOGY_CORPUS):
    """Train a byte-level BPE on `corpus` and wrap it as a `Qwen2Tokenizer` carrying Qwen2.5's special tokens.

    The 256 byte symbols are always in the vocabulary, so every string round-trips. Special tokens get the ids
    right after the learned vocabulary, in Qwen's order (`QWEN_SPECIAL_TOKENS`).
    """
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import AddedToken
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

    raw = Tokenizer(BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    raw.normalizer = normalizers.NFC()
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    # Repeat the corpus so that whole words (not only frequent pairs) earn merges.
    raw.train_from_iterator(list(corpus) * 3, trainer=trainer)
    model = json.loads(raw.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    # Special tokens take the ids right after the learned vocabulary, in Qwen's order (151643.. in the real one).
    for token, _special in QWEN_SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]

    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        errors="replace",
        add_prefix_space=False,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        model_max_length=32768,
    )
    # Register them as added tokens (never split, never normalised); their ids are already fixed by `vocab`.
    tokenizer.add_tokens([AddedToken(tok, special=special, normalized=False) for tok, special in QWEN_SPECIAL_TOKENS])
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [tok for tok, special in QWEN_SPECIAL_TOKENS if special and tok not in
                                       ("<|endoftext|>", "<|im_end|>")]}
    )
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def _tiny_config(tokenizer, vocab_size: int):
    from transformers import Qwen2_5_VLConfig

    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok, _ in QWEN_SPECIAL_TOKENS}
    text_hidden = 64
    # head_dim 64 / 2 = 32, the smallest head size vLLM's CPU attention serves (vllm/v1/attention/backends/
    # cpu_attn.py:59-60); mrope sections sum to head_dim // 2 = 16 (Qwen2.5-VL's [16, 24, 24] / 4)
    num_heads = 2
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=text_hidden,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=num_heads,
            num_key_value_heads=1,
            max_position_embeddings=4096,
            max_window_layers=2,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            in_channels=3,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            tokens_per_second=2,
            window_size=112,
            out_hidden_size=text_hidden,
            fullatt_block_indexes=[1],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_qwen25_vl(
    out_dir: str | Path,
    *,
    seed: int = 0,
    min_pixels: int = 56 * 56,
    max_pixels: int = 112 * 112,
    vocab_size: int = 1200,
    eos_probability: Optional[float] = None,
) -> Path:
    """Write a tiny random Qwen2.5-VL (model, tokenizer, processor, chat template, generation config) to `out_dir`.

    Args:
        out_dir: destination directory (created; existing files of the same names are overwritten).
        seed: torch seed for the random weights; the tokenizer is deterministic regardless.
        min_pixels / max_pixels: the image processor's pixel budget. The defaults give 4..16 merged visual tokens
            per image, which keeps CPU forwards fast.
        vocab_size: target size of the learned byte-level BPE vocabulary (before the 22 special tokens).
        eos_probability: if set, make the random policy emit ``<|im_end|>`` with roughly this probability at each
            step, so sampled responses end (a uniform random model over ~1200 tokens almost never stops, and every
            response would run into the length limit). Done by giving every token embedding a constant first
            coordinate and the ``<|im_end|>`` row of ``lm_head`` a matching weight; everything else stays random.

    Returns:
        The directory, ready for `from_pretrained`.
    """
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tiny_tokenizer(vocab_size=vocab_size)
    model_vocab = ((len(tokenizer) + 63) // 64) * 64  # padded like the real checkpoint's embedding matrix
    config = _tiny_config(tokenizer, model_vocab)

    image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    video_processor = Qwen2VLVideoProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    if eos_probability is not None:
        _bias_towards_eos(model, tokenizer.convert_tokens_to_ids("<|im_end|>"), float(eos_probability))
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
    )
    model.save_pretrained(out, safe_serialization=True)
    return out


def _bias_towards_eos(model, eos_id: int, probability: float) -> None:
    """Per-step P(eos) ~= `probability` for a freshly initialised model (see `build_tiny_qwen25_vl`)."""
    import torch

    if not 0.0 < probability < 1.0:
        raise ValueError(f"eos_probability={probability} must be in (0, 1)")
    embed = model.model.language_model.embed_tokens.weight
    hidden = embed.shape[1]
    std = float(model.config.text_config.initializer_range)
    vocab = model.lm_head.weight.shape[0]
    with torch.no_grad():
        embed[:, 0] = 1.0  # dominates the (tiny) random residual stream, so the final RMSNorm output's coordinate 0
        normed0 = 1.0 / math.sqrt((1.0 + (hidden - 1) * std**2) / hidden)  # ~ sqrt(hidden) after RMSNorm
        logit = math.log(probability / (1.0 - probability) * (vocab - 1))
        model.lm_head.weight[eos_id, 0] = logit / normed0
