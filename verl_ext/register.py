"""verl plugin entry point: importing this module registers every verl_ext component with verl's registries.

verl imports it at `import verl` (entry-point group `verl.plugins`, or `VERL_USE_EXTERNAL_MODULES=verl_ext.register`)
in every process. It must stay import-light: the modules below only define classes and run decorators; models are
loaded lazily by the components themselves. verl swallows plugin import errors, so `tests/test_register.py`
asserts that the names below are present after a plain `import verl`.
"""
import importlib

PLUGIN_MODULES = (
    "verl_ext.algorithms.advantages",  # advantage estimators: dr_grpo, ditpo
    "verl_ext.algorithms.offpolicy",  # policy losses: inserted_masked, inserted_luffy
    "verl_ext.reward.manager",  # reward-loop manager: radiology
    "verl_ext.trainer.editgrpo_trainer",  # V1 trainer mode: editgrpo (training metrics sampled vs edited)
    "verl_ext.trainer.orapo_trainer",  # V1 trainer mode: orapo (oracle-educated GRPO/DPO mixing)
    "verl_ext.trainer.position_ids",  # guard: equal-length batches' mRoPE position_ids (verl maybe_fix_3d_position_ids)
    "verl_ext.cpu.register",  # CPU debug profile: platform "cpu", FSDP engine on cpu, vLLM-CPU weight sync
    "verl_ext.wandb_teardown",  # W&B service stopped at verl's Tracking.finish (no atexit traceback in Ray actors)
)

for _module in PLUGIN_MODULES:
    importlib.import_module(_module)
