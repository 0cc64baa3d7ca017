"""Gradient DiTPO weights produced by the radiology reward inside verl's reward loop, and the BLEU schedule."""
import numpy as np
import pytest

REF = "mild cardiomegaly. small left pleural effusion. bibasilar atelectasis."
RESPONSES = ["the heart is enlarged. small left pleural effusion.", "lungs are clear.", ""]


def _worker(make_config, **reward_kwargs):
    from omegaconf import OmegaConf
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    import verl_ext.reward.manager  # noqa: F401

    config = make_config(**reward_kwargs)
    OmegaConf.set_struct(config, False)
    config.ditpo = {"weighting": "gradient", "beta": 0.5}
    return RewardLoopWorker(config)


def test_weights_reach_the_channel_with_the_known_values(make_config, make_item, run, fresh_services, tokenizer):
    from verl import DataProto

    from verl_ext.algorithms.ditpo import align_max_by_char_spans
    from verl_ext.clinical.chexbert_saliency import chexbert_saliency
    from verl_ext.token_channel import CHANNEL_KEY, DITPO_WEIGHT, decode

    worker = _worker(make_config, components={"chexbert_micro_f1_14": 1.0})
    manager = worker.reward_manager
    assert manager.reward_config.token_weights == "chexbert_gradient" and manager.reward_config.ditpo_beta == 0.5
    items = [make_item(r, REF) for r in RESPONSES]
    outputs = run(worker.compute_score_batch(DataProto.concat(items)))
    scorer = manager.service.scorer
    labeler = scorer.clinical.chexbert
    targets = np.flatnonzero(labeler.labels([REF], "negative")[0]).tolist()  # DEER's T: class 1 only
    assert targets, "the tiny CheXbert finds no positive condition in the reference; pick another"
    for item, response, out in zip(items, RESPONSES, outputs):
        info = out["reward_extra_info"]
        n = int(item.non_tensor_batch["response_len"][0])
        channel = decode(info[CHANNEL_KEY])
        if not response:
            assert info["ditpo_weighted"] == 0 and channel.arrays == {}  # an empty response gets no weights
            continue
        assert info["ditpo_weighted"] == 1
        w = channel.arrays[DITPO_WEIGHT]
        assert w.shape == (n,)
        # independent recomputation: Eq. 9-11 per response, max over overlapping characters, 1 + beta * s
        ids = item.batch["responses"][0][:n].tolist()
        pieces = [tokenizer.decode(ids[: k + 1], skip_special_tokens=True) for k in range(n)]
        text = pieces[-1]
        spans = [(len(pieces[k - 1]) if k else 0, len(pieces[k])) for k in range(n)]
        (sal,) = chexbert_saliency(labeler.m, [text], [targets])
        expected = 1 + 0.5 * np.array(align_max_by_char_spans(sal.spans, sal.scores, spans))
        np.testing.assert_allclose(w, expected, rtol=1e-5)
        assert w[-1] == 1.0  # the end token has no characters: no CheXbert gradient
        assert np.all(w[:-1] > 1.0)  # every word of the report influences CheXbert's [CLS]
    assert scorer.counters["saliency_responses"] == 2


def test_no_positive_reference_condition_means_weight_one(scorer_paths):
    from verl_ext.clinical.models import load_chexbert
    from verl_ext.reward.token_weights import ditpo_gradient_channels

    chexbert = load_chexbert(str(scorer_paths.chexbert_checkpoint), str(scorer_paths.chexbert_bert), "cpu")
    channels, stats = ditpo_gradient_channels(chexbert, ["small left pleural effusion"], [[(0, 5), (6, 10), None]],
                                              [np.zeros(14, dtype=np.int64)], beta=1.0)
    assert channels[0].arrays["ditpo_weight"].tolist() == [1.0, 1.0, 1.0] and stats["max"] == 0.0


def test_two_phase_bleu_schedule(make_config, make_item, run, fresh_services):
    from verl import DataProto

    from verl_ext.metrics.bleu import bleu

    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    import verl_ext.reward.manager  # noqa: F401

    worker = RewardLoopWorker(make_config(components={"chexbert_micro_f1_14": 1.0, "bleu2": 0.0},
                                          component_schedules={"bleu2": [[0, 0.0], [5, 0.25]]}))
    response = "small left pleural effusion. heart is enlarged."
    items = [make_item(response, REF, global_steps=step) for step in (None, 1, 4, 5, 9)]
    outputs = run(worker.compute_score_batch(DataProto.concat(items)))
    f1 = outputs[0]["reward_extra_info"]["chexbert_micro_f1_14"]
    b2 = bleu(response, REF, n=2)
    assert b2 > 0
    got = [o["reward_score"] for o in outputs]
    assert got == pytest.approx([f1, f1, f1, f1 + 0.25 * b2, f1 + 0.25 * b2])


def test_schedule_errors_name_the_setting():
    from verl_ext.reward.config import RadiologyRewardConfig

    with pytest.raises(ValueError, match="not in components"):
        RadiologyRewardConfig(components={"bleu2": 1.0}, component_schedules={"ratescore": [[0, 1.0]]})
    with pytest.raises(ValueError, match="component_schedules.bleu2"):
        RadiologyRewardConfig(components={"bleu2": 1.0}, component_schedules={"bleu2": [3]})
    with pytest.raises(ValueError, match="token_weights"):
        RadiologyRewardConfig(token_weights="tfidf")


def test_target_set_counts_uncertain_as_negative_by_default(monkeypatch):
    """DEER's T is the reference's positive (class 1) conditions, as the DEER recipes always set; the component used
    the reward's chexbert_uncertain (default positive) before, so an uncertain finding joined T (issue 21)."""
    from types import SimpleNamespace

    import verl_ext.reward.token_weights as tw
    from verl_ext.reward.config import RadiologyRewardConfig
    from verl_ext.reward.scoring import RewardScorer, ScoreRequest

    classes = np.zeros(14, dtype=np.int64)
    classes[[1, 4, 9]] = [1, 3, 2]  # positive, uncertain, negative
    clinical = SimpleNamespace(chexbert_classes=lambda texts: [classes for _ in texts], chexbert=SimpleNamespace(m=None),
                               _rate=None)
    seen = []

    def capture(model, texts, spans, reference_labels, **kwargs):
        seen.append([np.flatnonzero(lab).tolist() for lab in reference_labels])
        return {}, {}

    monkeypatch.setattr(tw, "ditpo_gradient_channels", capture)
    request = ScoreRequest("small effusion", "small effusion, possible edema", token_spans=[(0, 5), (6, 14)])
    for kwargs, expected in (({}, [1]), ({"ditpo_uncertain": "positive"}, [1, 4]),
                             ({"chexbert_uncertain": "positive"}, [1])):
        cfg = RadiologyRewardConfig(components={"chexbert_example_f1": 1.0}, token_weights="chexbert_gradient",
                                    **kwargs)
        RewardScorer(cfg, clinical=clinical).score_batch([request])
        assert seen.pop() == [expected]

