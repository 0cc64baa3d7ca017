"""Token-level splicing: kept text keeps the sampled token ids, only inserted text is encoded, exact whitespace."""
import random

import pytest

from verl_ext.rollout.splice import decode_response, splice_pieces, stop_token_ids


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from verl_ext.testing.tiny_qwen import build_tiny_tokenizer

    return build_tiny_tokenizer()


REPORT = (
    "The lungs are clear.\nThere is a small left pleural effusion.  Heart size is normal.\n\n"
    "No pneumothorax. Größe 1.2 cm — 中文 😀 ok."
)


def _sample(tok, text, eos=True):
    ids = tok.encode(text, add_special_tokens=False)
    return ids + ([tok.eos_token_id] if eos else [])


def _check_kept(result, sampled_ids):
    for s0, s1, d in result.kept:
        assert result.response_ids[d : d + (s1 - s0)] == sampled_ids[s0:s1]


def test_stop_token_ids_orders_generation_config_first(tok):
    class Gen:
        eos_token_id = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]

    ids = stop_token_ids(tok, Gen())
    assert ids == tuple(Gen.eos_token_id)
    assert stop_token_ids(tok) == (tok.eos_token_id,)


@pytest.mark.parametrize("eos", [True, False])
def test_decode_response_exact_text_and_bounds(tok, eos):
    ids = _sample(tok, REPORT, eos=eos)
    r = decode_response(tok, ids, [tok.eos_token_id, tok.pad_token_id])
    assert r.text == REPORT == tok.decode(ids, skip_special_tokens=True)
    assert r.byte_level
    assert r.content_len == len(ids) - int(eos)
    assert r.terminator_ids == ((tok.eos_token_id,) if eos else ())
    assert r.bounds[0] == 0 and r.bounds[-1] == len(REPORT)
    defined = [b for b in r.bounds if b is not None]
    assert defined == sorted(defined)
    # Every defined boundary is a real prefix boundary of the decoded text.
    for k, b in enumerate(r.bounds):
        if b is not None:
            assert tok.decode(ids[:k], skip_special_tokens=True) == REPORT[:b]


def test_replace_middle_sentence_keeps_sampled_ids(tok):
    ids = _sample(tok, REPORT)
    r = decode_response(tok, ids, [tok.eos_token_id])
    a = REPORT.index("There")
    b = REPORT.index("effusion.") + len("effusion.")
    pieces = [("kept", (0, a)), ("inserted", "No pleural effusion."), ("kept", (b, len(REPORT)))]
    res = splice_pieces(tok, r, pieces, end_token_id=tok.eos_token_id, max_length=512)
    expected = REPORT[:a] + "No pleural effusion." + REPORT[b:]
    assert res.text == expected and res.exact
    assert res.response_ids[-1] == tok.eos_token_id and not res.truncated
    assert tok.decode(res.response_ids, skip_special_tokens=True) == expected
    _check_kept(res, ids)
    # Nearly everything is reused: only the inserted sentence is new.
    assert res.num_inserted_tokens <= len(tok.encode("No pleural effusion.", add_special_tokens=False)) + 1
    assert res.num_kept_tokens + res.num_inserted_tokens == len(res.response_ids) - 1


def test_delete_and_append_preserve_whitespace(tok):
    ids = _sample(tok, REPORT)
    r = decode_response(tok, ids, [tok.eos_token_id])
    a = REPORT.index("Heart")
    b = REPORT.index("No pneumothorax")
    pieces = [("kept", (0, a)), ("kept", (b, len(REPORT))), ("inserted", " Mild cardiomegaly.")]
    res = splice_pieces(tok, r, pieces, end_token_id=tok.eos_token_id, max_length=512)
    assert res.text == REPORT[:a] + REPORT[b:] + " Mild cardiomegaly."
    assert "\n\n" not in res.text and "  " in res.text  # the double space before "Heart" was kept, "\n\n" deleted
    _check_kept(res, ids)


def test_boundaries_inside_multibyte_characters(tok):
    text = "Größe ok. 中文句子。 😀 fine."
    ids = _sample(tok, text)
    r = decode_response(tok, ids, [tok.eos_token_id])
    assert r.text == text
    # cut between every pair of characters: kept prefix + inserted middle + kept suffix
    for cut in range(1, len(text)):
        pieces = [("kept", (0, cut)), ("inserted", "X"), ("kept", (cut, len(text)))]
        res = splice_pieces(tok, r, pieces, end_token_id=tok.eos_token_id, max_length=512)
        assert res.text == text[:cut] + "X" + text[cut:], cut
        _check_kept(res, ids)


def test_invalid_utf8_and_special_tokens_inside_response(tok):
    # A lone byte token (first byte of a 3-byte character) and a special token in the middle of the response.
    lone = tok.convert_tokens_to_ids("ä")  # byte 0xE4 in the byte-level alphabet
    vision = tok.convert_tokens_to_ids("<|vision_start|>")
    head = tok.encode("Heart normal.", add_special_tokens=False)
    tail = tok.encode(" Lungs clear.", add_special_tokens=False)
    ids = head + [lone, vision] + tail + [tok.eos_token_id]
    r = decode_response(tok, ids, [tok.eos_token_id])
    assert r.text == "Heart normal.\ufffd Lungs clear."
    a = r.text.index(" Lungs")
    res = splice_pieces(
        tok, r, [("kept", (0, len("Heart normal."))), ("kept", (a, len(r.text))), ("inserted", " New.")],
        end_token_id=tok.eos_token_id, max_length=512,
    )
    assert res.text == "Heart normal. Lungs clear. New."
    _check_kept(res, ids)
    assert lone not in res.response_ids and vision not in res.response_ids


def test_length_limit(tok):
    ids = _sample(tok, REPORT)
    r = decode_response(tok, ids, [tok.eos_token_id])
    pieces = [("kept", (0, len(REPORT))), ("inserted", " Additional sentence about the heart.")]
    full = splice_pieces(tok, r, pieces, end_token_id=tok.eos_token_id, max_length=10_000)
    n = len(full.response_ids)
    fits = splice_pieces(tok, r, pieces, end_token_id=tok.eos_token_id, max_length=n)
    assert fits.response_ids == full.response_ids and not fits.truncated
    cut = splice_pieces(tok, r, pieces, end_token_id=tok.eos_token_id, max_length=n - 1)
    assert cut.truncated and len(cut.response_ids) == n - 1
    assert tok.eos_token_id not in cut.response_ids
    _check_kept(cut, ids)


def test_everything_replaced_and_empty(tok):
    ids = _sample(tok, REPORT)
    r = decode_response(tok, ids, [tok.eos_token_id])
    res = splice_pieces(tok, r, [("inserted", "The reference report.")], end_token_id=tok.eos_token_id, max_length=64)
    assert res.text == "The reference report." and res.num_kept_tokens == 0 and res.kept == ()
    empty = splice_pieces(tok, r, [], end_token_id=tok.eos_token_id, max_length=64)
    assert empty.response_ids == [tok.eos_token_id] and empty.text == ""


def test_rejects_bad_pieces(tok):
    r = decode_response(tok, _sample(tok, "Heart normal."), [tok.eos_token_id])
    with pytest.raises(ValueError, match="outside"):
        splice_pieces(tok, r, [("kept", (0, 99))], end_token_id=tok.eos_token_id, max_length=64)
    with pytest.raises(ValueError, match="unknown piece kind"):
        splice_pieces(tok, r, [("moved", "x")], end_token_id=tok.eos_token_id, max_length=64)


def test_edit_engine_segments_round_trip(tok):
    """Pieces from the real edit engine (sentence spans from the project's splitter) splice exactly."""
    import numpy as np

    from verl_ext.editing import EditConfig, Entity, ReportAnalysis, Sentence, edit_report, split_sentences

    def analysis(text, entity_words):
        sents = []
        for a, b in split_sentences(text):
            ents = []
            for k, w in enumerate(entity_words):
                if w in text[a:b].lower():
                    v = np.zeros(len(entity_words), dtype=np.float32)
                    v[k] = 1
                    neg = text[a:b].lower().startswith("no ")
                    ents.append(Entity(w, "NON-ABNORMALITY" if neg else "ABNORMALITY", v))
            sents.append(Sentence(text[a:b], a, b, tuple(ents)))
        return ReportAnalysis(text, tuple(sents))

    words = ["effusion", "pneumothorax", "cardiomegaly", "edema"]
    gen_text = "Mild edema is present.\nThere is a small effusion.   No pneumothorax.\n"
    ref_text = "No edema. There is a small effusion. No pneumothorax. Mild cardiomegaly."
    ids = _sample(tok, gen_text)
    r = decode_response(tok, ids, [tok.eos_token_id])
    for seed in range(5):
        result = edit_report(analysis(r.text, words), analysis(ref_text, words), EditConfig(max_ops=3),
                             random.Random(seed))
        assert result.changed
        res = splice_pieces(tok, r, result.merged_segments(), end_token_id=tok.eos_token_id, max_length=256)
        assert res.text == result.text and res.exact
        _check_kept(res, ids)
        assert res.num_kept_tokens > 0


def test_random_edits_invariants(tok):
    """Random sentence deletions / replacements / insertions over many reports: exact text, ids reused."""
    from verl_ext.editing import split_sentences
    from verl_ext.testing.tiny_qwen import RADIOLOGY_CORPUS

    rng = random.Random(0)
    corpus = [s for s in RADIOLOGY_CORPUS if "." in s]
    for _ in range(60):
        text = rng.choice([" ", "\n", "  ", "\n\n"]).join(rng.sample(corpus, 3))
        ids = _sample(tok, text, eos=rng.random() < 0.8)
        r = decode_response(tok, ids, [tok.eos_token_id])
        spans = split_sentences(r.text)
        pieces, expected = [], ""
        cursor = 0
        for a, b in spans:
            gap = (cursor, a)
            pieces.append(("kept", gap))
            expected += r.text[cursor:a]
            op = rng.random()
            if op < 0.6:
                pieces.append(("kept", (a, b)))
                expected += r.text[a:b]
            elif op < 0.8:
                new = rng.choice(corpus).split(". ")[0] + "."
                pieces.append(("inserted", new))
                expected += new
            cursor = b
        pieces.append(("kept", (cursor, len(r.text))))
        expected += r.text[cursor:]
        res = splice_pieces(tok, r, pieces, end_token_id=tok.eos_token_id, max_length=1024)
        assert res.text == expected
        _check_kept(res, ids)
        assert res.response_ids[-1] == tok.eos_token_id


def test_prefix_decoding_fallback_for_non_byte_level_tokenizers():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "heart", "is", "normal", ".", "lungs", "are", "clear", "no", "effusion", "</s>"]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", eos_token="</s>")
    ids = tok.encode("heart is normal . lungs are clear .", add_special_tokens=False) + [tok.eos_token_id]
    r = decode_response(tok, ids, [tok.eos_token_id])
    assert not r.byte_level and r.text == tok.decode(ids[:-1])
    a = r.text.index("lungs")
    res = splice_pieces(tok, r, [("kept", (0, a)), ("inserted", "no effusion .")],
                        end_token_id=tok.eos_token_id, max_length=64)
    _check_kept(res, ids)
    assert res.num_kept_tokens >= 3 and res.response_ids[-1] == tok.eos_token_id


def test_decoded_text_matches_the_tokenizer_for_arbitrary_byte_tokens(tok):
    """Random byte-level tokens (invalid UTF-8 included): the text equals tokenizer.decode, and every defined
    boundary is exact, so what the edit step analyses is what the reward decodes."""
    rng = random.Random(1)
    singles = [tok.convert_tokens_to_ids(c) for c in "äöü¿½ÃÂ¤¥ð"]  # lone bytes 0x80-0xFF (byte alphabet)
    assert None not in singles
    byte_tokens = singles + tok.encode("中文 ok. Größe 😀", add_special_tokens=False)
    special = [tok.convert_tokens_to_ids("<|vision_start|>")]
    for _ in range(200):
        ids = [rng.choice(byte_tokens + special + tok.encode(" a.", add_special_tokens=False))
               for _ in range(rng.randint(0, 12))]
        r = decode_response(tok, ids + [tok.eos_token_id], [tok.eos_token_id])
        assert r.text == tok.decode(ids, skip_special_tokens=True)
        for k, b in enumerate(r.bounds):
            if b is not None:
                assert r.text[:b] == tok.decode(ids[:k], skip_special_tokens=True)
        cut = rng.randint(0, len(r.text))
        res = splice_pieces(tok, r, [("kept", (0, cut)), ("inserted", "X."), ("kept", (cut, len(r.text)))],
                            end_token_id=tok.eos_token_id, max_length=256)
        _check_kept(res, ids)
