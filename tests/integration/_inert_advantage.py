"""A silently inert objective, for showing that ``test_learning_curves_cpu.py``'s learning guard fails on one.

verl imports this module in every process of the run (``VERL_USE_EXTERNAL_MODULES=_inert_advantage``, with this
folder on ``PYTHONPATH``). It wraps every advantage estimator in verl's registry (``dr_grpo`` and ``grpo`` included)
so that it returns zeros: rollouts, edits, rewards, the loss and the optimiser all run as usual, and nothing is
learnt. A wiring test passes on such a run; the learning guard must not.
"""
import verl_ext.register  # noqa: F401  (verl imports this module before its plugins: register them first)
from verl.trainer.ppo import core_algos


def _zeroed(estimator):
    def inert(*args, **kwargs):
        advantages, returns = estimator(*args, **kwargs)
        return advantages * 0.0, returns * 0.0

    return inert


for _name, _estimator in list(core_algos.ADV_ESTIMATOR_REGISTRY.items()):
    core_algos.ADV_ESTIMATOR_REGISTRY[_name] = _zeroed(_estimator)
if "dr_grpo" not in core_algos.ADV_ESTIMATOR_REGISTRY:
    raise RuntimeError("verl_ext's dr_grpo estimator is not registered: the inert control would not apply to it")
