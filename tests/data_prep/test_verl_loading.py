"""The converters' output loads in verl's RLHFDataset and MultiTurnSFTDataset with the right image tokens."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from verl_ext.data.output import split_files


@pytest.mark.parametrize("name", ["mimic_out", "rex_out", "iu_out", "padchest_out", "chexpert_out"])
def test_rlhf_dataset(name, request, tiny_processor, tmp_path):
    from verl.utils.dataset.rl_dataset import RLHFDataset

    out, stats = request.getfixturevalue(name)
    files = split_files(out, "train") + split_files(out, "test")
    # workers=None keeps the length filter in-process: datasets 5 forks a pool even for num_proc=1, which can hang
    # in a process that already runs torch threads.
    cfg = OmegaConf.create({"prompt_key": "prompt", "image_key": "images", "max_prompt_length": 4096,
                            "filter_overlong_prompts": True, "filter_overlong_prompts_workers": None,
                            "cache_dir": str(tmp_path / "cache")})
    ds = RLHFDataset(files, tiny_processor.tokenizer, cfg, tiny_processor)
    assert len(ds) == sum(stats["splits"][s]["samples"] for s in ("train", "test") if s in stats["splits"])
    pad = tiny_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for i in range(min(len(ds), 12)):
        item = ds[i]
        msgs = item["raw_prompt"]
        images, _, _ = RLHFDataset._process_multi_modal_info(msgs, 14, cfg)
        assert len(images) == item["extra_info"]["n_images"]
        assert all(im.size == (56, 56) for im in images)  # stored at the configured budget, not resized again
        text = tiny_processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        enc = tiny_processor(text=[text], images=images, return_tensors="pt")
        assert int((enc["input_ids"] == pad).sum()) == 4 * item["extra_info"]["n_images"]
        assert item["reward_model"]["ground_truth"] == item["extra_info"]["findings"]


def test_sft_dataset(mimic_out, tiny_processor):
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    out, stats = mimic_out
    files = split_files(out, "train")
    ds = MultiTurnSFTDataset(files, tiny_processor.tokenizer, OmegaConf.create(
        {"max_length": 4096, "pad_mode": "no_padding", "truncation": "error", "messages_key": "messages"}),
        tiny_processor)
    assert len(ds) == stats["splits"]["train"]["samples"]
    pad = tiny_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    import pyarrow.parquet as pq

    rows = pq.read_table(files[0]).to_pylist()
    for i in range(3):
        x = ds[i]
        assert int((x["input_ids"] == pad).sum()) == 4 * rows[i]["extra_info"]["n_images"]
        target = tiny_processor.tokenizer.decode(x["input_ids"][x["loss_mask"].bool()])
        assert target.startswith(rows[i]["reward_model"]["ground_truth"])
