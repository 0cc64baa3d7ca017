"""Generation: verl-identical prompts, the transformers fallback (batched, left-padded), resumability."""
import json

import pytest
import torch

from verl_ext.eval.generate import (
    GenerateConfig,
    HFGenerator,
    PromptBuilder,
    build_vllm_request,
    main,
    read_done_ids,
    resolve_data_files,
    run,
)


@pytest.fixture(scope="module")
def builder(tiny_model):
    return PromptBuilder(str(tiny_model))


def _prepared(builder, files):
    dataset = builder.open([str(f) for f in files])
    return [builder.prepare(dataset[i], i) for i in range(len(dataset))]


def test_prompts_are_what_verl_rollouts_see(builder, test_parquet, tmp_path, parquet_writer, references):
    """Same ids as processor(chat template(messages), images) — the SingleTurnAgentLoop tokenisation — with one
    image-pad run per image of the size its grid says, for bytes and for path images."""
    path_parquet = tmp_path / "test_paths.parquet"
    parquet_writer(path_parquet, image_mode="path")
    processor = builder.processor
    pad = processor.image_token_id
    for file in (test_parquet, path_parquet):
        prompts = _prepared(builder, [file])
        assert [p.id for p in prompts] == [f"S0{i:03d}" for i in range(5)]
        assert [p.reference for p in prompts] == list(references)
        assert [p.data_source for p in prompts] == ["iu_xray"] * 3 + ["padchest_gr"] * 2
        for i, p in enumerate(prompts):
            n_images = 1 + i % 2
            grid = p.mm_inputs["image_grid_thw"]
            assert len(p.images) == n_images and grid.shape == (n_images, 3)
            assert p.prompt_ids.count(pad) == int(grid.prod(dim=1).sum()) // 4  # spatial merge 2x2
            messages = [{"role": "user", "content": [{"type": "image"}] * n_images + [
                {"type": "text", "text": "\nAs a radiologist assistant, describe the findings.\nINDICATION: cough."}]}]
            text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            expected = processor(text=[text], images=p.images, return_tensors="pt")["input_ids"][0].tolist()
            assert p.prompt_ids == expected
            assert text.endswith("<|im_start|>assistant\n")


def test_pixel_budget_override(tiny_model, test_parquet):
    small = _prepared(PromptBuilder(str(tiny_model)), [test_parquet])[0]
    large = _prepared(PromptBuilder(str(tiny_model), min_pixels=112 * 112, max_pixels=112 * 112), [test_parquet])[0]
    assert int(small.mm_inputs["image_grid_thw"].prod()) < int(large.mm_inputs["image_grid_thw"].prod())


def test_vllm_request_collapses_image_pads(builder, test_parquet):
    prompt = _prepared(builder, [test_parquet])[1]  # two images
    request = build_vllm_request(prompt, builder.processor, {"max_pixels": 12544})
    pad = builder.processor.image_token_id
    assert request["prompt_token_ids"].count(pad) == 2
    assert len(request["prompt_token_ids"]) == len(prompt.prompt_ids) - prompt.prompt_ids.count(pad) + 2
    assert request["multi_modal_data"]["image"] == prompt.images
    assert request["mm_processor_kwargs"] == {"max_pixels": 12544}


def test_left_padded_batch_matches_single_rows(tiny_model, builder, test_parquet):
    cfg = GenerateConfig(model=str(tiny_model), data=[], out="", max_new_tokens=5, device="cpu")
    gen = HFGenerator(cfg, builder)
    prompts = _prepared(builder, [test_parquet])[:3]  # different lengths and image counts
    batch = gen._collate(prompts)
    assert "mm_token_type_ids" in batch
    with torch.inference_mode():
        batched = gen.model(**batch).logits[:, -1]
        # Without mm_token_type_ids transformers 5 silently gives image tokens 1-D text positions.
        text_positions = gen.model(**{k: v for k, v in batch.items() if k != "mm_token_type_ids"}).logits[:, -1]
        assert not torch.allclose(batched, text_positions, atol=1e-5)
        for row, prompt in enumerate(prompts):
            single = gen.model(**gen._collate([prompt])).logits[0, -1]
            torch.testing.assert_close(batched[row], single, atol=1e-4, rtol=1e-4)
    one_by_one = [gen.generate([p])[0] for p in prompts]
    assert gen.generate(prompts) == one_by_one


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_generation_is_resumable(tiny_model, test_parquet, tmp_path, references):
    out = tmp_path / "rows.jsonl"
    base = {"model": str(tiny_model), "data": [str(test_parquet)], "out": str(out), "backend": "hf",
            "max_new_tokens": 6, "batch_size": 2}
    first = run(GenerateConfig(**base, limit=2))
    assert first["generated"] == 2 and first["remaining"] == 3 and first["backend"] == "hf"
    # An interrupted write leaves a torn line: it is dropped and that row is generated again.
    with out.open("a") as fh:
        fh.write('{"id": "S0002", "gener')
    second = run(GenerateConfig(**base))
    assert second["already_done"] == 2 and second["generated"] == 3 and second["remaining"] == 0
    rows = _rows(out)
    assert [r["id"] for r in rows] == [f"S0{i:03d}" for i in range(5)]
    assert [r["reference"] for r in rows] == list(references)
    assert {r["finish_reason"] for r in rows} <= {"stop", "length"}
    assert all(0 <= r["num_generated_tokens"] <= 6 and isinstance(r["generated"], str) for r in rows)
    # Nothing left: a third run generates nothing; greedy decoding makes the resumed file equal a one-shot run.
    assert run(GenerateConfig(**base))["generated"] == 0
    oneshot = tmp_path / "oneshot.jsonl"
    assert main(["--model", str(tiny_model), "--data", str(test_parquet), "--out", str(oneshot), "--backend", "hf",
                 "--max-new-tokens", "6", "--batch-size", "5"]) == 0
    assert _rows(oneshot) == rows
    meta = json.loads((tmp_path / "rows.jsonl.meta.json").read_text())
    assert meta["backend"] == "hf" and meta["settings"]["repetition_penalty"] == 1.0
    # Resuming with different decoding settings would mix two runs in one file.
    with pytest.raises(ValueError, match="max_new_tokens"):
        run(GenerateConfig(**{**base, "max_new_tokens": 7}))


def test_read_done_ids_rejects_a_corrupt_middle_line(tmp_path):
    out = tmp_path / "rows.jsonl"
    out.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_done_ids(out)


def test_duplicate_ids_and_data_resolution(tiny_model, tmp_path, parquet_writer):
    first = tmp_path / "test-00000.parquet"
    parquet_writer(first, n_rows=2)
    parquet_writer(tmp_path / "test-00001.parquet", n_rows=2)  # same seed: same study ids
    assert resolve_data_files([str(tmp_path)]) == sorted(str(p) for p in tmp_path.glob("test-*.parquet"))
    assert resolve_data_files([str(tmp_path / "test-*.parquet"), str(first)]) == resolve_data_files([str(tmp_path)])
    with pytest.raises(FileNotFoundError):
        resolve_data_files([str(tmp_path / "nothing-*.parquet")])
    with pytest.raises(ValueError, match="repeats"):
        run(GenerateConfig(model=str(tiny_model), data=[str(tmp_path)], out=str(tmp_path / "o.jsonl"), backend="hf",
                           max_new_tokens=2))
