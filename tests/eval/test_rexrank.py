"""ReXrank's protocol end to end on a fixture in ReXrank's own test-JSON schema, with tiny offline models."""
import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from verl_ext.eval import rexrank
from verl_ext.eval import rexrank_board as rboard
from verl_ext.eval import rexrank_data as rdata
from verl_ext.metrics import rexrank as rx

# Studies in the layout of rajpurkarlab/ReXrank data/mimic-cxr/ReXRank_MIMICCXR_test.json: a top-level object keyed by
# study id; image_path relative to MIMIC-CXR-JPG's files/ with a leading "/" (joined as img_root_dir + image_path by
# example_files/merversa_inference.py); frontal_lateral with MIMIC's spellings ("antero-posterior", "lateral",
# "left lateral", "Erect") and NaN; section_impression NaN when absent (723 of its 2,347 studies); context as one
# string "Age:..Gender:..Indication: ..Comparison: .."; report = "Findings: " + findings + " Impression: " + impression;
# split "test"; subject_id. Study S4 has no findings, as 138 of the 200 CheXpert Plus studies
# (data/chexpert_plus/ReXRank_CheXpertPlus.json) do.
STUDIES = {
    "50000001": (["lateral", "antero-posterior"], "The lungs are clear. No pleural effusion or pneumothorax.",
                 "No acute cardiopulmonary process.",
                 "Age:50-60.Gender:M.Indication: ___-year-old male with cough.  Evaluate for pneumonia."),
    "50000002": ([float("nan")], "Small left pleural effusion with adjacent atelectasis.", float("nan"),
                 "Indication: Shortness of breath.Comparison: Chest radiograph, last performed on ___."),
    "50000003": (["postero-anterior", "postero-anterior", "left lateral"], "Mild cardiomegaly. No focal consolidation.",
                 "Mild cardiomegaly.", "Age:70-80.Gender:F.Indication: Chest pain."),
    "50000004": (["Erect"], float("nan"), "Moderate pulmonary edema has increased.", "Age:60-70.Gender:F."),
}
ALL_CONTEXTS = {  # context strings as published in the three test JSONs
    "mimic": "Age:50-60.Gender:M.Indication: ___-year-old male with history of metastatic melanoma, presenting with "
             "confusion and somnolence.  Evaluate for acute cardiopulmonary process.",
    "iu": "Indication: Chest pain, dyspnea Comparison: None.",
    "chexpert": "Age:77.0.Gender:F.Indication:nanComparison: None.",
}


def write_fixture(root, image_ext="jpg"):
    """``root/files/...`` images and ``root/test.json`` in ReXrank's schema (see STUDIES)."""
    rng = np.random.default_rng(0)
    data = {}
    for k, (sid, (views, findings, impression, context)) in enumerate(STUDIES.items()):
        paths = []
        for j, _ in enumerate(views):
            rel = f"/p10/p1000000{k}/s{sid}/{k:08x}-{j:08x}.{image_ext}"
            file = root / "files" / rel.lstrip("/")
            file.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((rng.random((64 + 8 * j, 56)) * 255).astype("uint8"), mode="L").save(file)
            paths.append(rel)
        report = f"Findings: {findings} Impression: {impression}"
        data[sid] = {"image_path": paths, "section_findings": findings, "section_impression": impression,
                     "frontal_lateral": views, "split": "test", "subject_id": 10000000 + k, "context": context,
                     "key_image_path": paths[-1], "report": report}
    path = root / "test.json"
    path.write_text(json.dumps(data, indent=1))  # writes NaN bare, as the released files have it
    return path


@pytest.fixture()
def fixture(tmp_path):
    return write_fixture(tmp_path), tmp_path / "files"


def test_reader_keeps_the_released_fields(fixture):
    path, _ = fixture
    assert "NaN" in path.read_text()
    studies = rdata.read_test_json(path)
    assert [s.study_id for s in studies] == list(STUDIES)
    s2, s4 = studies[1], studies[3]
    assert s2.impression is None and s2.views == [None] and s4.findings is None
    assert studies[0].key_image_path.startswith("/p10/") and len(studies[2].image_paths) == 3


def test_boards_references_and_prompts(fixture):
    path, root = fixture
    studies = rdata.read_test_json(path)
    fnd = rdata.prepare_rows(studies, dataset="mimic_cxr", image_root=root, board="findings",
                               min_pixels=3136, max_pixels=12544)
    assert [r["extra_info"]["study_id"] for r in fnd.rows] == ["50000001", "50000002", "50000003"]
    assert fnd.excluded == {"no_findings": ["50000004"]}
    assert fnd.rows[0]["reward_model"]["ground_truth"] == STUDIES["50000001"][1]
    prompt = fnd.rows[0]["prompt"][0]["content"]
    assert prompt.startswith("<image><image>\n")
    assert "Given the current lateral image, and the current AP image." in prompt
    assert "INDICATION: ___-year-old male with cough. Evaluate for pneumonia." in prompt
    assert "TECHNIQUE: N/A" in prompt and "COMPARISON: N/A" in prompt
    assert "the current PA image, the current PA image, and the current left lateral image" in (
        fnd.rows[2]["prompt"][0]["content"])
    assert "Given the current image." in fnd.rows[1]["prompt"][0]["content"]  # NaN view
    assert all(p["image"].endswith(".jpg") and p["max_pixels"] == 12544 for p in fnd.rows[2]["images"])

    fi = rdata.prepare_rows(studies, dataset="mimic_cxr", image_root=root, board="findings_impression")
    refs = [r["reward_model"]["ground_truth"] for r in fi.rows]
    assert len(refs) == 4 and not fi.excluded
    assert refs[1] == f"Findings: {STUDIES['50000002'][1]} Impression: None"  # evaluation_script.md's f-string
    assert refs[3] == f"Findings: None Impression: {STUDIES['50000004'][2]}"
    assert rdata.FINDINGS_IMPRESSION_INSTRUCTION in fi.rows[0]["prompt"][0]["content"]

    bare = rdata.prepare_rows(studies, dataset="mimic_cxr", image_root=root, board="findings", use_context=False,
                                key_image_only=True)
    content = bare.rows[0]["prompt"][0]["content"]
    assert "INDICATION" not in content and content.startswith("<image>\n")
    assert bare.rows[0]["images"][0]["image"].endswith(studies[0].key_image_path.lstrip("/").split("/")[-1])


def test_missing_images_fail_before_generation_unless_allowed(fixture):
    path, root = fixture
    studies = rdata.read_test_json(path)
    victim = root / studies[2].image_paths[1].lstrip("/")
    victim.unlink()
    with pytest.raises(rdata.RexrankError, match="1 studies have image files missing.*allow-missing-images"):
        rdata.prepare_rows(studies, dataset="mimic_cxr", image_root=root, board="findings")
    ok = rdata.prepare_rows(studies, dataset="mimic_cxr", image_root=root, board="findings",
                              allow_missing_images=True)
    assert ok.excluded["missing_image"] == ["50000003"] and len(ok.rows) == 2
    with pytest.raises(rdata.RexrankError, match="no such directory"):
        rdata.prepare_rows(studies, dataset="mimic_cxr", image_root=root / "nope", board="findings")


def test_image_map_for_other_local_layouts(fixture, tmp_path):
    """IU-Xray's ReXrank PNGs are <study>/<k>.png; a local Open-i copy needs a map (rexrank_path,local_path)."""
    path, root = fixture
    studies = rdata.read_test_json(path)[:1]
    lines = ["rexrank_path,local_path"]
    for k, rel in enumerate(studies[0].image_paths):
        target = root / f"openi_{k}.png"
        (root / rel.lstrip("/")).rename(target)
        lines.append(f"{rel},{target.name}")
    (tmp_path / "map.csv").write_text("\n".join(lines) + "\n")
    image_map = rdata.read_image_map(tmp_path / "map.csv")
    rows = rdata.prepare_rows(studies, dataset="iu_xray", image_root=root, board="findings", image_map=image_map).rows
    assert [p["image"].rsplit("/", 1)[1] for p in rows[0]["images"]] == ["openi_0.png", "openi_1.png"]
    assert "TECHNIQUE" not in rows[0]["prompt"][0]["content"]  # IU-Xray's context lines
    with pytest.raises(rdata.RexrankError, match="missing"):
        rdata.prepare_rows(rdata.read_test_json(path)[:2], dataset="iu_xray", image_root=root, board="findings",
                           image_map=image_map)  # study 2 is not in the map
    (tmp_path / "bad.csv").write_text("a,b\n")
    with pytest.raises(rdata.RexrankError, match="rexrank_path,local_path"):
        rdata.read_image_map(tmp_path / "bad.csv")


def test_schema_errors_name_the_study(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"s1": {"image_path": ["a.png"], "section_findings": "x"}}))
    with pytest.raises(rdata.RexrankError, match=r"study 's1': missing \['frontal_lateral', 'section_impression'\]"):
        rdata.read_test_json(bad)
    bad.write_text(json.dumps({"s1": {"image_path": ["a.png"], "frontal_lateral": "Frontal", "section_findings": "x",
                                      "section_impression": "y"}}))
    with pytest.raises(rdata.RexrankError, match="frontal_lateral must be a list"):
        rdata.read_test_json(bad)


def test_view_lists_of_another_length_are_taken_as_unknown(tmp_path):
    """46 of the 590 studies of ReXRank_IUXray_test.json list 1 or 3 views for 2 images (e.g. CXR3646_IM-1808-0001:
    ["Frontal"] for 0.png and 1.png); which label is whose is unknown."""
    root = tmp_path / "images"
    (root / "CXR3646_IM-1808-0001").mkdir(parents=True)
    for k in range(2):
        Image.new("L", (40, 48)).save(root / "CXR3646_IM-1808-0001" / f"{k}.png")
    path = tmp_path / "iu.json"
    path.write_text(json.dumps({"CXR3646_IM-1808-0001": {
        "key_image_path": "CXR3646_IM-1808-0001/0.png",
        "image_path": ["CXR3646_IM-1808-0001/0.png", "CXR3646_IM-1808-0001/1.png"], "frontal_lateral": ["Frontal"],
        "section_findings": "The lungs are clear.", "section_impression": "Normal chest.", "split": "test",
        "context": "Indication: Chest pain Comparison: None.", "report": "..."}}))
    (study,) = rdata.read_test_json(path)
    assert study.views_misaligned and study.views == [None, None]
    prepared = rdata.prepare_rows([study], dataset="iu_xray", image_root=root, board="findings")
    assert prepared.unknown_views == ["CXR3646_IM-1808-0001"]
    assert "Given the current image, and the current image." in prepared.rows[0]["prompt"][0]["content"]
    key = rdata.prepare_rows([study], dataset="iu_xray", image_root=root, board="findings", key_image_only=True)
    assert "Given the current frontal image." in key.rows[0]["prompt"][0]["content"] and not key.unknown_views


def test_parse_context_on_published_strings():
    assert rdata.parse_context(ALL_CONTEXTS["mimic"]) == {
        "age": "50-60", "gender": "M", "indication": ALL_CONTEXTS["mimic"].split("Indication: ")[1]}
    assert rdata.parse_context(ALL_CONTEXTS["iu"]) == {"indication": "Chest pain, dyspnea", "comparison": "None."}
    assert rdata.parse_context(ALL_CONTEXTS["chexpert"]) == {"age": "77.0", "gender": "F", "comparison": "None."}
    assert rdata.parse_context("<context>Age:60-70.Gender:F.</context>") == {"age": "60-70", "gender": "F"}


def test_leaderboard_ranks_our_row_by_inverse_radcliq():
    published = rboard.read_results_csv(rboard.snapshot_path("mimic_cxr", "findings"))
    assert len(published) == 25 and published[-1]["Model Name"] == "UniRG-CXR"
    ours = {"Ours": {rx.BLEU: 0.2, rx.BERTSCORE: 0.41, rx.SEMBSCORE: 0.43, rx.RADGRAPH: 0.22,
                     rx.INV_RADCLIQ_V1: 0.95, rx.RATESCORE: 0.55}}
    rows = rboard.leaderboard(published, ours, date="2026")
    names = [r["Model Name"] for r in rows]
    assert names[:3] == ["UniRG-CXR", "MedVersa", "Ours"]  # 1.217 > 1.103 > 0.95 > 0.898 (Libra)
    mine = rows[2]
    assert mine["Rank"] == "3" and mine["ours"] and mine["GREEN"] == "" and mine[rx.INV_RADCLIQ_V1] == "0.95"
    assert [r["Rank"] for r in rows] == [str(i) for i in range(1, 27)]


@pytest.fixture(scope="module")
def scorer_models(tmp_path_factory):
    from verl_ext.testing.scorer_models import shared_models
    from verl_ext.testing.tiny_roberta import build_tiny_distilroberta

    paths = shared_models()
    return dict(paths.as_dict(), bertscore_model=str(build_tiny_distilroberta(tmp_path_factory.mktemp("roberta"))))


def _model_args(m):
    return ["--bertscore-model", m["bertscore_model"], "--chexbert-checkpoint", m["chexbert_checkpoint"],
            "--chexbert-bert", m["chexbert_bert"], "--radgraph-cache", m["radgraph_cache"], "--radgraph-model-type",
            m["radgraph_model_type"], "--rate-ner", m["rate_ner"], "--biolord", m["biolord"]]


def test_whole_protocol_with_tiny_models(tmp_path, tiny_model, scorer_models, capsys):
    path = write_fixture(tmp_path)
    out = tmp_path / "out"
    rc = rexrank.main(["run", "--model", str(tiny_model), "--name", "Tiny", "--test-json", str(path),
                       "--dataset", "mimic_cxr", "--image-root", str(tmp_path / "files"), "--board", "findings",
                       "--board", "findings_impression", "--out", str(out), "--min-pixels", "3136",
                       "--max-pixels", "12544", "--backend", "hf", "--batch-size", "4", "--max-new-tokens", "12",
                       "--n-boot", "50", "--date", "2026", *_model_args(scorer_models)])
    assert rc == 0, capsys.readouterr().err
    scores = out / "scores"
    tables = (scores / "tables.md").read_text()
    assert "# ReXrank evaluation" in tables and "## mimic_cxr/findings" in tables
    assert "GREEN skipped: no GREEN model path given" in tables
    assert "## Where it would stand: mimic_cxr/findings_impression" in tables

    # ReXrank's submission format: the test JSON's entries + model_prediction
    pred = json.loads((out / "predictions" / "Tiny_mimic_cxr_findings.json").read_text())
    assert list(pred) == ["50000001", "50000002", "50000003"]
    assert set(pred["50000001"]) == {*json.loads(path.read_text())["50000001"], "model_prediction"}

    recs = [json.loads(line) for line in (scores / "per_study" / "mimic_cxr_findings" / "Tiny.jsonl").open()]
    assert [r["id"] for r in recs] == list(pred)
    for r in recs:
        assert 0 <= r[rx.BLEU] <= 1 and -1 <= r[rx.SEMBSCORE] <= 1 and r["ratescore_status"] in ("ok", "no_entities")
        assert r[rx.RADGRAPH] == pytest.approx((r["radgraph_entity_f1"] + r["radgraph_relation_f1"]) / 2)
        assert r[rx.RADCLIQ_V1] == pytest.approx(float(rx.radcliq_v1(*(r[c] for c in rx.RADCLIQ_V1_FEATURES))))
        assert r["generated"] == pred[r["id"]]["model_prediction"]

    with (scores / "summary.csv").open() as fh:
        summary = {(row["dataset"], row["metric"]): row for row in csv.DictReader(fh)}
    inv = summary[("mimic_cxr/findings", rx.INV_RADCLIQ_V1)]
    assert float(inv["value"]) == pytest.approx(1 / np.mean([r[rx.RADCLIQ_V1] for r in recs]), abs=1e-6)
    assert {m for ds, m in summary if ds == "mimic_cxr/findings"} == {
        rx.BLEU, rx.BERTSCORE, rx.SEMBSCORE, rx.RADGRAPH, rx.INV_RADCLIQ_V1, rx.RATESCORE}
    for row in summary.values():
        assert float(row["ci_low"]) <= float(row["value"]) + 1e-9 <= float(row["ci_high"]) + 2e-9

    with (scores / "leaderboard_mimic_cxr_findings.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == rx.RESULTS_HEADER
        ranked = list(reader)
    # three fixture studies are not MIMIC-CXR's 2,347: the row says so
    assert len(ranked) == 26 and sum(r["Model Name"].startswith("Tiny [NOT COMPARABLE: scored 3 studies: the test "
                                                               "JSON puts 3 studies on this board; the published "
                                                               "rows are on all 2,347]") for r in ranked) == 1
    values = [float(r[rx.INV_RADCLIQ_V1]) for r in ranked]
    assert values == sorted(values, reverse=True)
    assert (scores / "metrics.png").stat().st_size > 0


def test_score_two_runs_with_green_and_a_rexrank_prediction_json(tmp_path, scorer_models):
    from verl_ext.clinical.green import GreenScorer

    path = write_fixture(tmp_path)
    studies = rdata.read_test_json(path)
    refs = {s.study_id: rdata.board_reference(s, "findings") for s in studies}
    perfect = tmp_path / "perfect.jsonl"
    perfect.write_text("".join(json.dumps({"id": k, "generated": v, "reference": v}) + "\n"
                               for k, v in refs.items() if v))
    # a ReXrank prediction JSON (example_files/prediction.json's format) with one empty prediction
    preds = [{"id": "50000001", "generated": "Heart size is normal."}, {"id": "50000002", "generated": ""},
             {"id": "50000003", "generated": "No pleural effusion."}]
    weak = rdata.write_prediction_json(studies, preds, tmp_path / "weak.json")
    canned = ("[Clinically Significant Errors]:\n(a) False report of a finding in the candidate: 1. x\n"
              "(b) Missing a finding present in the reference: 0.\n(c) Misidentification: 0.\n(d) Severity: 0.\n"
              "(e) Comparison absent: 0.\n(f) Omitting comparison: 0.\n[Clinically Insignificant Errors]:\n"
              "(a) 0.\n[Matched Findings]:\n2. a; b\n")
    green = GreenScorer(generate_fn=lambda prompts: [canned] * len(prompts))
    config = rexrank.ScoreConfig(**{k: v for k, v in scorer_models.items()})
    files = rexrank.score_and_report({"Perfect": {"findings": str(perfect)}, "Weak": {"findings": str(weak)}},
                                     dataset="mimic_cxr", config=config, out=tmp_path / "o", n_boot=50,
                                     green_scorer=green, leaderboard_spec="none")
    assert "leaderboard_mimic_cxr_findings.csv" not in files
    with files["summary.csv"].open() as fh:
        summary = {(row["run"], row["metric"]): float(row["value"]) for row in csv.DictReader(fh)}
    assert summary[("Perfect", rx.BLEU)] == pytest.approx(1.0)
    assert summary[("Perfect", rx.BERTSCORE)] == pytest.approx(1.0, abs=1e-5)
    assert summary[("Perfect", rx.SEMBSCORE)] == pytest.approx(1.0, abs=1e-6)
    assert summary[("Perfect", rx.GREEN)] == pytest.approx(2 / 3)
    assert summary[("Weak", rx.BLEU)] < 1.0 and summary[("Weak", rx.BERTSCORE)] < summary[("Perfect", rx.BERTSCORE)]
    with files["differences.csv"].open() as fh:
        diffs = {row["metric"]: row for row in csv.DictReader(fh)}
    assert diffs[rx.BLEU]["run"] == "Weak" and float(diffs[rx.BLEU]["delta"]) < 0
    weak_recs = [json.loads(x) for x in (tmp_path / "o" / "per_study" / "mimic_cxr_findings" / "Weak.jsonl").open()]
    empty = next(r for r in weak_recs if r["id"] == "50000002")
    assert empty[rx.BLEU] == 0.0 and empty[rx.RADGRAPH] == 0.0 and empty[rx.RATESCORE] == rx.RATESCORE_NO_ENTITY
    assert not math.isnan(empty[rx.BERTSCORE])


def test_misconfiguration_fails_before_models_load(tmp_path):
    with pytest.raises(rdata.RexrankError, match="bertscore needs --bertscore-model"):
        rexrank.ScoreConfig(chexbert_checkpoint="x").check()
    with pytest.raises(rdata.RexrankError, match="--skip: unknown metrics"):
        rexrank.ScoreConfig(skip=("bleu4",)).check()
    with pytest.raises(rdata.RexrankError, match="--green-model /nowhere: no such directory"):
        rexrank.ScoreConfig(skip=("bertscore", "sembscore", "radgraph", "ratescore"), green_model="/nowhere").check()
    rexrank.ScoreConfig(skip=("bertscore", "sembscore", "radgraph", "ratescore", "green")).check()


def test_cli_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        rexrank.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert all(cmd in text for cmd in ("prepare", "score", "run")) and "ReXrank" in text


def test_a_wrong_leaderboard_fails_before_scoring(tmp_path):
    gen = tmp_path / "g.jsonl"
    gen.write_text(json.dumps({"id": "1", "generated": "a", "reference": "b"}) + "\n")
    cfg = rexrank.ScoreConfig(skip=tuple(rexrank.METRICS))
    with pytest.raises(rdata.RexrankError, match="no such file"):
        rexrank.score_and_report({"A": {"findings": str(gen)}}, dataset="mimic_cxr", config=cfg, out=tmp_path / "o",
                                 leaderboard_spec=str(tmp_path / "missing.csv"))
    with pytest.raises(rdata.RexrankError, match="one results CSV cannot serve"):
        rexrank.score_and_report({"A": {"findings": str(gen), "findings_impression": str(gen)}}, dataset="mimic_cxr",
                                 config=cfg, out=tmp_path / "o", leaderboard_spec=str(gen))


# ------------------------------------------------------------------------------------ protocol of the leaderboard


def _gen_file(path, ids):
    path.write_text("".join(json.dumps({"id": i, "generated": "No pleural effusion.",
                                        "reference": "No pleural effusion or pneumothorax."}) + "\n" for i in ids))
    return path


def test_a_run_on_other_studies_than_the_board_is_flagged_loudly(tmp_path, caplog):
    """8 studies ranked among full-test-set rows: the log, the top of tables.md and our leaderboard row say so."""
    gen = _gen_file(tmp_path / "g.jsonl", [f"5000000{i}" for i in range(8)])
    cfg = rexrank.ScoreConfig(skip=tuple(m for m in rexrank.METRICS if m != "bleu"))
    with caplog.at_level("WARNING"):
        files = rexrank.score_and_report({"Tiny": {"findings": str(gen)}}, dataset="mimic_cxr", config=cfg,
                                         out=tmp_path / "o", n_boot=20)
    why = "scored 8 studies; the board's published rows are on all 2,347 studies of the test set"
    assert f"NOT COMPARABLE with the published mimic_cxr/findings rows: run Tiny {why}" in caplog.text
    tables = files["tables.md"].read_text()
    assert tables.splitlines()[2] == f"> **NOT COMPARABLE with the published rows** — mimic_cxr/findings, Tiny: {why}"
    with files["leaderboard_mimic_cxr_findings.csv"].open() as fh:
        ours = [r for r in csv.DictReader(fh) if r["Model Name"].startswith("Tiny")]
    assert ours[0]["Model Name"] == f"Tiny [NOT COMPARABLE: {why}]"
    # with the board's own study list (score --test-json): the exact difference
    files = rexrank.score_and_report({"Tiny": {"findings": str(gen)}}, dataset="mimic_cxr", config=cfg,
                                     out=tmp_path / "o2", n_boot=20, leaderboard_spec="none",
                                     board_studies={"findings": [f"5000000{i}" for i in range(9)]})
    assert "1 of the board's 9 studies are missing (e.g. ['50000008'])" in files["tables.md"].read_text()
    files = rexrank.score_and_report({"Tiny": {"findings": str(gen)}}, dataset="iu_xray", config=cfg,
                                     out=tmp_path / "o3", n_boot=20, leaderboard_spec="none",
                                     board_studies={"findings": [f"5000000{i}" for i in range(8)]})
    assert "NOT COMPARABLE" not in files["tables.md"].read_text()  # the board's own list, all of it


def test_board_output_names_the_reference_text_and_flags_inconsistent_published_rows(tmp_path):
    gen = _gen_file(tmp_path / "g.jsonl", ["50000001"])
    cfg = rexrank.ScoreConfig(skip=tuple(m for m in rexrank.METRICS if m != "bleu"))
    for board in ("findings", "findings_impression"):
        files = rexrank.score_and_report({"Tiny": {board: str(gen)}}, dataset="mimic_cxr", config=cfg,
                                         out=tmp_path / board, n_boot=20)
        tables = files["tables.md"].read_text()
        assert f"mimic_cxr/{board}: reference text = {rboard.BOARD_REFERENCE[board]}" in tables
    assert "the study's `section_findings` alone. Inferred from the board's name" in rboard.BOARD_REFERENCE["findings"]
    # RadFM's published 1/RadCliQ-v1 on MIMIC-CXR findings + impression (0.625) is not 1/RadCliQ-v1 of its own
    # columns (0.623, beyond their rounding); every findings-board row is consistent
    assert "† 1 published rows' 1/RadCliQ-v1 does not follow" in tables
    assert "RadFM (published 0.625, from its columns 0.623)" in tables and "| RadFM † |" in tables
    findings_rows = rboard.read_results_csv(rboard.snapshot_path("mimic_cxr", "findings"))
    assert rboard.radcliq_mismatches(findings_rows) == []
    iu = rboard.read_results_csv(rboard.snapshot_path("iu_xray", "findings_impression"))
    assert [m[0] for m in rboard.radcliq_mismatches(iu)] == [
        "CheXpertPlus-MIMIC", "CheXpertPlus-CheX", "CheXpertPlus-CheX-MIMIC", "MedVersa", "RadFM"]


def test_plot_gives_inverse_radcliq_its_own_axis():
    # components just under RadCliQ-v1's scaler means: RadCliQ-v1 ~ 0.35, 1/RadCliQ-v1 ~ 2.9
    recs = [{"id": str(i), rx.BLEU: 0.3 + 0.01 * i, rx.BERTSCORE: 0.55, rx.SEMBSCORE: 0.7, rx.RADGRAPH: 0.4,
             rx.RATESCORE: 0.5} for i in range(10)]
    for r in recs:
        r[rx.RADCLIQ_V1] = float(rx.radcliq_v1(*(r[c] for c in rx.RADCLIQ_V1_FEATURES)))
    report = rboard.build_report({"A": {"mimic_cxr/findings": recs}}, n_boot=20)
    fig = rboard.board_figure(report)
    scores, inverse = fig.axes[0], fig.axes[1]
    assert [t.get_text() for t in scores.get_xticklabels()] == [rx.BLEU, rx.BERTSCORE, rx.SEMBSCORE, rx.RADGRAPH,
                                                                rx.RATESCORE]
    assert scores.get_ylim() == (0.0, 1.0)
    assert [t.get_text() for t in inverse.get_xticklabels()] == [rx.INV_RADCLIQ_V1]
    assert inverse.get_ylim()[1] > 2.5  # its bar is not clipped to (nor does it stretch) the 0-1 axis


def test_green_follows_the_reference_code_by_default(tmp_path):
    from verl_ext.clinical.green import GreenScorer

    gen = _gen_file(tmp_path / "g.jsonl", ["1", "2"])
    second_line = ("[Clinically Significant Errors]:\n(a) False report of a finding in the candidate: 1. Edema\n\n"
                   "[Matched Findings]:\nThe findings that match:\n2. Effusion; cardiomegaly\n")
    green = GreenScorer(generate_fn=lambda prompts: [second_line, "I cannot evaluate these reports."])
    only_green = tuple(m for m in rexrank.METRICS if m != "green")
    files = rexrank.score_and_report({"A": {"findings": str(gen)}}, dataset="mimic_cxr", out=tmp_path / "ref",
                                     config=rexrank.ScoreConfig(skip=only_green), green_scorer=green, n_boot=20,
                                     leaderboard_spec="none")
    recs = [json.loads(x) for x in (tmp_path / "ref" / "per_study" / "mimic_cxr_findings" / "A.jsonl").open()]
    assert [(r[rx.GREEN], r["green_status"]) for r in recs] == [(0.0, "ok"), (0.0, "unparseable")]
    tables = files["tables.md"].read_text()
    assert "GREEN: 1 completions could not be parsed and score 0, as the GREEN reference code scores them" in tables
    assert "GREEN protocol: chat=user_assistant, unparseable=zero, multiline=False (the GREEN reference code" in tables
    ours = rexrank.ScoreConfig(skip=only_green, green_chat="user", green_unparseable="drop", green_multiline=True)
    rexrank.score_and_report({"A": {"findings": str(gen)}}, dataset="mimic_cxr", out=tmp_path / "ours", config=ours,
                             green_scorer=green, n_boot=20, leaderboard_spec="none")
    recs = [json.loads(x) for x in (tmp_path / "ours" / "per_study" / "mimic_cxr_findings" / "A.jsonl").open()]
    assert recs[0][rx.GREEN] == pytest.approx(2 / 3) and recs[1][rx.GREEN] is None


def test_ratescore_uses_the_leaderboards_weight_set(scorer_models):
    """ReXrank's RaTEScore column dates from RaTEScore 0.5.0 (negation weight 0.3612); 0.6.0's default is 0.8717."""
    import numpy as np

    from verl_ext.editing.types import Entity, ReportAnalysis, Sentence

    def report(text, typ):
        v = np.zeros(768, dtype=np.float32)
        v[0] = 1.0
        return ReportAnalysis("x" * 10, (Sentence("x" * 10, 0, 10, (Entity(text, typ, v),)),))

    present, absent = report("effusion", "DISEASE"), report("no effusion", "NON-DISEASE")
    keys = ("rate_ner", "biolord")
    board = rexrank.RexrankScorer(rexrank.ScoreConfig(skip=("bertscore", "sembscore", "radgraph", "green"),
                                                      **{k: scorer_models[k] for k in keys}))
    newer = rexrank.RexrankScorer(rexrank.ScoreConfig(skip=("bertscore", "sembscore", "radgraph", "green"),
                                                      rate_weights="long", **{k: scorer_models[k] for k in keys}))
    assert board.clinical.rate.ratescore(present, absent) == pytest.approx(0.3612)
    assert newer.clinical.rate.ratescore(present, absent) == pytest.approx(0.8716553966489615)
    assert board.config.protocol_notes()[0] == ("RaTEScore weight set 0.5.0 (negation weight 0.3612) (the "
                                                "leaderboard's: RaTEScore 0.5.0)")
    with pytest.raises(rdata.RexrankError, match="--rate-weights medium"):
        rexrank.ScoreConfig(skip=tuple(rexrank.METRICS), rate_weights="medium").check()
