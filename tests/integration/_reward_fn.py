"""A tiny custom reward for the CPU integration test: token-overlap F1 with the reference, plus what the edit step
passed through ``extra_info`` (verl's naive manager merges the trajectory's extra_fields into it)."""


def _f1(a: str, b: str) -> float:
    x, y = set(a.lower().split()), set(b.lower().split())
    if not x or not y:
        return 0.0
    common = len(x & y)
    if common == 0:
        return 0.0
    p, r = common / len(x), common / len(y)
    return 2 * p * r / (p + r)


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    extra_info = extra_info or {}
    analysis = extra_info.get("edit_analysis")
    return {
        "score": _f1(solution_str, ground_truth),
        "is_edited": float(bool(extra_info.get("is_edited", False))),
        "saw_analysis": float(isinstance(analysis, dict) and analysis.get("text") == solution_str),
    }
