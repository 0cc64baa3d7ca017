"""`python -m verl_ext.eval.deer`: DEER's evaluation table from generated reports (CheXbert, NLG, RadGraph F1)."""
import json

import pytest

def test_cli_table(tmp_path, capsys):
    from verl_ext.eval.deer import main
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
    assert table["bleu4"] > 0 and 0 < table["meteor"] < 1 and 0 < table["rouge_l"] < 1
    src.write_text(json.dumps({"generated": "x", "reference": ""}) + "\n")
    with pytest.raises(SystemExit):
        main(["--input", str(src), "--chexbert-checkpoint", str(cx / "chexbert.pth"), "--chexbert-bert",
              str(cx / "bert"), "--out", str(tmp_path / "o2")])


def test_cli_without_java_stops_before_labelling(tmp_path, monkeypatch, capsys):
    from verl_ext.eval.deer import main

    src = tmp_path / "gen.jsonl"
    src.write_text(json.dumps({"generated": "lungs are clear .", "reference": "lungs are clear ."}) + "\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit):  # the CheXbert paths do not exist: they are never reached
        main(["--input", str(src), "--chexbert-checkpoint", str(tmp_path / "none.pth"), "--chexbert-bert",
              str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert "needs a Java runtime" in capsys.readouterr().err


def test_cli_adds_radgraph_f1_and_states_the_protocol(tmp_path, capsys, monkeypatch):
    """DEER's Table 1 also reports RadGraph F1 (RG) and GREEN (GN): --radgraph-cache adds RG (GREEN needs a GPU)."""
    import verl_ext.metrics.deer as deer
    from verl_ext.eval.deer import main

    monkeypatch.setattr(deer, "meteor_scores", lambda gts, res, timeout_s: (1.0, [1.0]))  # the jar: test_cli_table
    from verl_ext.testing.scorer_models import build_chexbert, build_radgraph

    cx = build_chexbert(tmp_path / "cx")
    rg = build_radgraph(tmp_path / "rg")
    text = "small left pleural effusion ."
    src = tmp_path / "gen.jsonl"
    src.write_text(json.dumps({"generated": text, "reference": text}) + "\n")
    assert main(["--input", str(src), "--chexbert-checkpoint", str(cx / "chexbert.pth"), "--chexbert-bert",
                 str(cx / "bert"), "--out", str(tmp_path / "o"), "--device", "cpu", "--radgraph-cache", str(rg),
                 "--radgraph-model-type", "radgraph-xl"]) == 0
    table = json.loads((tmp_path / "o" / "deer_table.json").read_text())
    assert table["radgraph_f1"] == pytest.approx(1.0) and "green" not in table  # identical texts: same graph
    assert table["protocol"]["nlg_tokenization"] == "r2gen" and table["protocol"]["ce"] == "example"
    out = capsys.readouterr().out
    assert "| RG |" in out and "NLG text r2gen" in out
