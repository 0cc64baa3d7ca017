"""DEER's token-masking table (verl_ext.eval.token_masking): known answers with a keyword labeler, and the CLI."""
import json

import numpy as np
import pytest

from verl_ext.eval.token_masking import _f1_vs_original, main, masking_analysis, top_share


class KeywordLabeler:
    """Test stand-in for CheXbertLabeler.labels: effusion -> Pleural Effusion (9), edema -> Edema (4); ``m`` is the
    real (tiny) CheXbert model, used by the gradient weighting."""

    def __init__(self, m):
        self.m = m

    def labels(self, texts, uncertain="negative"):
        out = np.zeros((len(texts), 14), dtype=np.int64)
        for i, t in enumerate(texts):
            out[i, 9] = "effusion" in t
            out[i, 4] = "edema" in t
        return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoTokenizer

    from verl_ext.clinical.models import load_chexbert
    from verl_ext.testing.scorer_models import build_chexbert

    path = build_chexbert(tmp_path_factory.mktemp("cx") / "cx")
    m = load_chexbert(str(path / "chexbert.pth"), str(path / "bert"), "cpu")
    return {"path": path, "m": m, "tok": AutoTokenizer.from_pretrained(str(path / "bert"))}


def test_top_share_and_f1_against_the_original():
    assert top_share(np.array([0.1, 0.9, 0.5, 0.9]), 0.5).tolist() == [1, 3]
    assert top_share(np.array([0.3, 0.2]), 0.1).tolist() == [0]  # at least one token
    a = np.array([[1, 0], [0, 0], [1, 1]])
    b = np.array([[0, 0], [0, 0], [1, 0]])
    assert _f1_vs_original(b, a).tolist() == pytest.approx([0.0, 1.0, 2 / 3])


def test_tfidf_masks_the_distinctive_finding(tiny):
    # group of two: "." is shared (IDF 0, weight 1), the finding word is unique (weight > 1) -> it is masked
    table = masking_analysis(["effusion .", "edema ."], ["r", "r"], ["g", "g"], tokenizer=tiny["tok"],
                             labeler=KeywordLabeler(tiny["m"]), share=0.1, weightings=("tfidf",))
    assert table["tfidf"] == {"label_modification_ratio": 1.0, "post_masking_f1": 0.0, "masked_tokens_mean": 1.0,
                              "n": 2.0}


def test_all_weightings_run_and_empty_responses_are_skipped(tiny):
    responses = ["small left pleural effusion . no edema .", "", "mild edema and effusion ."]
    table = masking_analysis(responses, ["pleural effusion .", "x", "edema ."], tokenizer=tiny["tok"],
                             labeler=KeywordLabeler(tiny["m"]), share=0.5, seed=1)
    assert set(table) == {"random", "tfidf", "gradient"}
    for row in table.values():
        assert row["n"] == 2.0 and 0 <= row["label_modification_ratio"] <= 1 and 0 <= row["post_masking_f1"] <= 1
    with pytest.raises(ValueError, match="no non-empty"):
        masking_analysis([" "], ["r"], tokenizer=tiny["tok"], labeler=KeywordLabeler(tiny["m"]))


def test_cli_writes_the_table(tiny, tmp_path, capsys):
    rows = [{"generated": "small left pleural effusion .", "reference": "effusion ."},
            {"generated": "mild cardiomegaly .", "reference": "effusion ."}]
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tiny["path"]
    assert main(["--input", str(src), "--tokenizer", str(path / "bert"), "--chexbert-checkpoint",
                 str(path / "chexbert.pth"), "--chexbert-bert", str(path / "bert"), "--out", str(tmp_path / "o"),
                 "--device", "cpu"]) == 0
    assert "Label Mod. Ratio" in capsys.readouterr().out
    assert set(json.loads((tmp_path / "o" / "masking.json").read_text())) == {"random", "tfidf", "gradient"}
    # verl's rollout dump layout (trainer.rollout_data_dir)
    dump = tmp_path / "1.jsonl"
    dump.write_text("".join(json.dumps({"input": "p", "output": r["generated"], "gts": r["reference"], "score": 0.0})
                            + "\n" for r in rows))
    assert main(["--input", str(dump), "--tokenizer", str(path / "bert"), "--chexbert-checkpoint",
                 str(path / "chexbert.pth"), "--chexbert-bert", str(path / "bert"), "--out", str(tmp_path / "v"),
                 "--device", "cpu", "--generated-key", "output", "--reference-key", "gts", "--group-key", "input"]) == 0
