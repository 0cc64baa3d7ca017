"""DEER's evaluation columns: known answers for PromptMRG's example-based CE metrics and the macro variant."""
import numpy as np
import pytest

from verl_ext.metrics.deer import ce_scores, deer_columns, nlg_scores


def _promptmrg_example_based(h, r):
    """PromptMRG's formulas, written out (tp/fp/fn per example, nan -> 0, mean over examples)."""
    h, r = h.astype(bool), r.astype(bool)
    tp, fp, fn = (h & r).sum(1), (h & ~r).sum(1), (~h & r).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.nan_to_num(tp / (tp + fp)).mean(), np.nan_to_num(tp / (tp + fn)).mean(),
                np.nan_to_num(tp / (tp + 0.5 * (fp + fn))).mean())


def test_example_based_known_answer():
    h = np.zeros((3, 14), dtype=int)
    r = np.zeros((3, 14), dtype=int)
    h[0, [1, 9]] = 1; r[0, [1]] = 1          # P 1/2, R 1, F1 2/3
    h[1, [4]] = 1; r[1, [4, 7]] = 1          # P 1, R 1/2, F1 2/3
    # row 2: nothing predicted, nothing in the reference -> 0, 0, 0 (PromptMRG's nan_to_num)
    got = ce_scores(h, r, "example")
    assert got["ce_precision"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert got["ce_recall"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert got["ce_f1"] == pytest.approx((2 / 3 + 2 / 3) / 3)
    rng = np.random.default_rng(0)
    h, r = rng.integers(0, 2, (50, 14)), rng.integers(0, 2, (50, 14))
    assert tuple(ce_scores(h, r, "example").values()) == pytest.approx(_promptmrg_example_based(h, r))


def test_macro_known_answer():
    h = np.array([[1, 0], [1, 1], [0, 0]])
    r = np.array([[1, 0], [0, 1], [0, 1]])
    got = ce_scores(h, r, "macro")
    # class 0: P 1/2 R 1 F1 2/3; class 1: P 1 R 1/2 F1 2/3
    assert got == pytest.approx({"ce_precision": 0.75, "ce_recall": 0.75, "ce_f1": 2 / 3})


def test_nlg_scores_identity_and_columns():
    refs = ["the heart is enlarged . small left pleural effusion .", "lungs are clear ."]
    out = nlg_scores(refs, refs)
    assert out["bleu4"] == pytest.approx(1.0)
    if out["rouge_l"] is not None:
        assert out["rouge_l"] == pytest.approx(1.0)
    cols = deer_columns(["heart enlarged", "lungs clear"], refs, np.eye(2, 14, dtype=int), np.eye(2, 14, dtype=int))
    assert cols["ce_f1"] == 1.0 and cols["n"] == 2.0 and 0 <= cols["bleu4"] < 1


def test_cli_table(tmp_path, capsys):
    import json

    from verl_ext.metrics.deer import main
    from verl_ext.testing.scorer_models import build_chexbert

    cx = build_chexbert(tmp_path / "cx")
    rows = [{"generated": "small left pleural effusion .", "reference": "small left pleural effusion ."},
            {"generated": "lungs are clear .", "reference": "mild cardiomegaly ."}]
    src = tmp_path / "gen.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["--input", str(src), "--chexbert-checkpoint", str(cx / "chexbert.pth"), "--chexbert-bert",
                 str(cx / "bert"), "--out", str(tmp_path / "o"), "--device", "cpu"]) == 0
    table = json.loads((tmp_path / "o" / "deer_table.json").read_text())
    assert table["n"] == 2.0 and 0 <= table["ce_f1"] <= 1 and "| P | R | F1" in capsys.readouterr().out
    src.write_text(json.dumps({"generated": "x", "reference": ""}) + "\n")
    with pytest.raises(SystemExit):
        main(["--input", str(src), "--chexbert-checkpoint", str(cx / "chexbert.pth"), "--chexbert-bert",
              str(cx / "bert"), "--out", str(tmp_path / "o2")])
