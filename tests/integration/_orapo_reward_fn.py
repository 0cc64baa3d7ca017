"""Reward of the OraPO CPU integration test: every response to a ``hard`` prompt fails (0), every non-empty response
to an ``easy`` prompt earns its length in words / 20 (capped at 1), so the two groups are an all-zero group and a
group with non-zero rewards whatever the tiny random model samples."""


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    extra_info = extra_info or {}
    words = len(solution_str.split())
    score = 0.0 if data_source == "hard" else min(1.0, words / 20.0)
    return {"score": score, "is_oracle": float(bool(extra_info.get("orapo_oracle", False)))}
