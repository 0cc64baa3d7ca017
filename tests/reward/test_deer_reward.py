"""DEER's diagnostic reward component (PromptMRG example-based F1, positive = CheXbert class 1)."""
import numpy as np
import pytest


def test_chexbert_example_f1_known_answer():
    from sklearn.metrics import f1_score

    from verl_ext.reward.components import PairData, get_component

    hyp = np.zeros(14, dtype=np.int64)
    ref = np.zeros(14, dtype=np.int64)
    hyp[1], hyp[9], hyp[4] = 1, 3, 2  # cardiomegaly positive, effusion uncertain, edema negative
    ref[1], ref[9] = 1, 1
    pair = PairData(response="r", reference="y", chexbert_response_classes=hyp, chexbert_reference_classes=ref)
    value = get_component("chexbert_example_f1").fn(pair, None)
    # uncertain is not positive (label == 1): tp 1, fp 0, fn 1 -> 1 / (1 + 0.5)
    assert value == pytest.approx(2 / 3)
    assert value == pytest.approx(f1_score([(ref == 1).astype(int)], [(hyp == 1).astype(int)], average="samples"))
    none = PairData(response="r", reference="y", chexbert_response_classes=np.zeros(14, dtype=np.int64),
                    chexbert_reference_classes=np.full(14, 2, dtype=np.int64))
    assert get_component("chexbert_example_f1").fn(none, None) == 0.0


def test_component_through_the_scorer(scorer_paths, fresh_services):
    from verl_ext.metrics.chexbert import binarize, sample_micro_f1
    from verl_ext.reward.config import RadiologyRewardConfig
    from verl_ext.reward.scoring import RewardScorer, ScoreRequest

    cfg = RadiologyRewardConfig(components={"chexbert_example_f1": 1.0}, models=scorer_paths.as_dict(), device="cpu")
    scorer = RewardScorer(cfg)
    resp, ref = "small left pleural effusion. mild cardiomegaly.", "mild cardiomegaly. bibasilar atelectasis."
    (out,) = scorer.score_batch([ScoreRequest(response=resp, reference=ref)])
    classes = scorer.clinical.chexbert_classes([resp, ref])
    expected = sample_micro_f1(binarize(classes[0], "negative"), binarize(classes[1], "negative"))
    assert out["reward_score"] == pytest.approx(expected)
