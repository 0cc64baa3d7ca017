import json

import pandas as pd
import pytest

from verl_ext.metrics.chexbert import CONDITIONS
from verl_ext.reward.class_frequencies import main, read_references


def test_cli_on_verl_parquet(tmp_path, scorer_paths):
    refs = ["mild cardiomegaly.", "no acute process.", "small left pleural effusion.", "lungs are clear."]
    path = tmp_path / "train.parquet"
    pd.DataFrame(
        {"reward_model": [{"ground_truth": r, "style": "model"} for r in refs], "data_source": "mimic"}
    ).to_parquet(path)
    assert read_references(str(path)) == refs
    out = tmp_path / "freqs.json"
    main(
        [
            "--input",
            str(path),
            "--out",
            str(out),
            "--chexbert-checkpoint",
            str(scorer_paths.chexbert_checkpoint),
            "--chexbert-bert",
            str(scorer_paths.chexbert_bert),
            "--device",
            "cpu",
        ]
    )
    data = json.loads(out.read_text())
    assert set(data["frequencies"]) == set(CONDITIONS) and data["n"] == 4
    assert all(v in (0.0, 0.25, 0.5, 0.75, 1.0) for v in data["frequencies"].values())


def test_missing_column(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(ValueError, match="--column"):
        read_references(str(p))
    assert read_references(str(p), "text") == ["x"]


def test_csv_and_json_inputs_and_an_unknown_suffix(tmp_path):
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text("reference,other\nlungs are clear.,1\nmild cardiomegaly.,2\n")
    assert read_references(str(csv_path)) == ["lungs are clear.", "mild cardiomegaly."]
    json_path = tmp_path / "rows.json"
    json_path.write_text(json.dumps([{"ground_truth": "no effusion."}]))
    assert read_references(str(json_path)) == ["no effusion."]
    with pytest.raises(ValueError, match=r"^--input .*rows\.txt': expected ") as err:
        read_references(str(tmp_path / "rows.txt"))
    assert all(s in str(err.value) for s in (".jsonl", ".json", ".csv", ".parquet"))
