"""The ``editgrpo`` config key, group plans, analyzer construction and cross-prompt analysis batching."""
import asyncio
import random
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from verl_ext.rollout.analysis import AnalysisBatcher, build_analyzer, get_analyzer
from verl_ext.rollout.config import EditRolloutConfig, plan_group

KEYWORD_ANALYZER = f"{Path(__file__).resolve().parents[1] / 'integration' / '_keyword_analyzer.py'}:KeywordAnalyzer"


def test_defaults_follow_the_paper():
    cfg = EditRolloutConfig()
    assert (cfg.scheme, cfg.level, cfg.tau, cfg.max_ops, cfg.analyzer) == ("paper", "sentence", 0.6, 1, "rate")
    edit = cfg.edit_config()
    assert edit.tau == 0.6 and edit.max_ops == 1 and edit.matching == "embedding"
    assert EditRolloutConfig(analyzer="radgraph").edit_config().matching == "exact"
    assert EditRolloutConfig(edit_options={"count_anatomy": True}).edit_config().count_anatomy is True


@pytest.mark.parametrize(
    "bad",
    [{"scheme": "half"}, {"level": "word"}, {"on_unchanged": "drop"}, {"analyzer": "chexbert"}, {"num_edits": -1},
     {"matching": "fuzzy"}, {"max_failed_edit_share": 1.5}, {"max_failed_edit_share": -0.1}, {"tau": 1.0},
     {"tau": 0.0}],
)
def test_invalid_values_are_rejected(bad):
    with pytest.raises(ValueError, match="editgrpo"):
        EditRolloutConfig(**bad)


def test_from_trainer_config():
    config = OmegaConf.create({"editgrpo": {"scheme": "overwrite", "tau": 0.7, "models": {"rate_ner": "/m/ner"}}})
    cfg = EditRolloutConfig.from_trainer_config(config)
    assert cfg.scheme == "overwrite" and cfg.tau == 0.7 and cfg.models == {"rate_ner": "/m/ner"}
    assert EditRolloutConfig.from_trainer_config(OmegaConf.create({})) == EditRolloutConfig()
    with pytest.raises(ValueError, match="unknown keys"):
        EditRolloutConfig.from_trainer_config(OmegaConf.create({"editgrpo": {"taus": 0.7}}))


def test_edits_per_group():
    assert [EditRolloutConfig().edits_per_group(n) for n in (1, 2, 5, 10)] == [0, 1, 2, 5]
    assert EditRolloutConfig(scheme="none").edits_per_group(10) == 0
    assert EditRolloutConfig(level="paragraph").edits_per_group(10) == 1
    assert EditRolloutConfig(num_edits=9).edits_per_group(10) == 5  # never more than half the group


def test_plan_paper_scheme():
    plan = plan_group(EditRolloutConfig(), 10, random.Random(0))
    assert plan.sampled == tuple(range(5)) and plan.pairs == tuple((k, 5 + k) for k in range(5))
    odd = plan_group(EditRolloutConfig(), 5, random.Random(0))
    assert odd.sampled == (0, 1, 2) and odd.pairs == ((0, 3), (1, 4))
    para = plan_group(EditRolloutConfig(level="paragraph"), 4, random.Random(0))
    assert para.sampled == (0, 1, 2) and len(para.pairs) == 1 and para.pairs[0][1] == 3 and para.pairs[0][0] < 3


def test_plan_overwrite_scheme_matches_the_authors_pairing():
    for seed in range(20):
        plan = plan_group(EditRolloutConfig(scheme="overwrite"), 5, random.Random(seed))
        assert plan.sampled == tuple(range(5)) and len(plan.pairs) == 2
        sources, targets = {s for s, _ in plan.pairs}, {t for _, t in plan.pairs}
        assert not sources & targets and len(sources | targets) == 4
    para = plan_group(EditRolloutConfig(scheme="overwrite", level="paragraph"), 5, random.Random(1))
    assert len(para.pairs) == 1 and para.pairs[0][0] == para.pairs[0][1]


def test_plan_none_scheme_and_determinism():
    assert plan_group(EditRolloutConfig(scheme="none"), 4, random.Random(0)).pairs == ()
    a = plan_group(EditRolloutConfig(scheme="overwrite"), 8, random.Random(3))
    assert a == plan_group(EditRolloutConfig(scheme="overwrite"), 8, random.Random(3))


def test_custom_analyzer_by_path_and_process_cache():
    cfg = EditRolloutConfig(analyzer=KEYWORD_ANALYZER)
    analyzer = build_analyzer(cfg)
    (analysis,) = analyzer.analyze(["No effusion. Mild edema."])
    assert [len(s.entities) for s in analysis.sentences] == [1, 1]
    assert get_analyzer(cfg) is get_analyzer(EditRolloutConfig(analyzer=KEYWORD_ANALYZER))


def test_model_backed_analyzers_need_local_paths():
    with pytest.raises(ValueError, match="editgrpo.models.rate_ner"):
        build_analyzer(EditRolloutConfig(analyzer="rate"))
    with pytest.raises(ValueError, match="editgrpo.models.radgraph_cache"):
        build_analyzer(EditRolloutConfig(analyzer="radgraph"))


def test_batcher_merges_concurrent_requests():
    calls = []

    class Recorder:
        def analyze(self, texts):
            calls.append(list(texts))
            return [f"A({t})" for t in texts]

    batcher = AnalysisBatcher(Recorder, max_batch=100, wait_s=0.01)

    async def main():
        return await asyncio.gather(batcher.analyze(["a", "b"]), batcher.analyze(["b", "c"]), batcher.analyze(["d"]))

    results = asyncio.run(main())
    assert results == [["A(a)", "A(b)"], ["A(b)", "A(c)"], ["A(d)"]]
    assert calls == [["a", "b", "c", "d"]]  # one call, duplicates analysed once


def test_batcher_splits_large_batches_and_propagates_errors():
    sizes = []

    class Recorder:
        def analyze(self, texts):
            sizes.append(len(texts))
            if "boom" in texts:
                raise RuntimeError("model failed")
            return list(texts)

    async def main(batcher, requests):
        return await asyncio.gather(*(batcher.analyze(r) for r in requests), return_exceptions=True)

    out = asyncio.run(main(AnalysisBatcher(Recorder, max_batch=3, wait_s=0.0), [[str(i) for i in range(7)]]))
    assert out == [[str(i) for i in range(7)]] and sizes == [3, 3, 1]
    # one failing text fails only the request that asked for it (the batch is retried text by text)
    sizes.clear()
    out = asyncio.run(main(AnalysisBatcher(Recorder, max_batch=10, wait_s=0.01), [["x"], ["boom"], ["y", "x"]]))
    assert out[0] == ["x"] and out[2] == ["y", "x"] and isinstance(out[1], RuntimeError)
    assert sizes == [3, 1, 1, 1]
    # per text: return_exceptions hands back the error in the failing text's place

    async def per_text():
        return await AnalysisBatcher(Recorder, max_batch=10, wait_s=0.0).analyze(["a", "boom"], return_exceptions=True)

    a, boom = asyncio.run(per_text())
    assert a == "a" and isinstance(boom, RuntimeError)


def test_batcher_factory_failure_fails_every_request_once():
    built = []

    def factory():
        built.append(1)
        raise FileNotFoundError("/nonexistent")

    async def main(batcher):
        return await asyncio.gather(batcher.analyze(["a"]), batcher.analyze(["b"]), return_exceptions=True)

    out = asyncio.run(main(AnalysisBatcher(factory, max_batch=10, wait_s=0.01)))
    assert all(isinstance(o, FileNotFoundError) for o in out) and len(built) == 1
