"""V1 trainer mode ``editgrpo`` (training metrics for sampled vs edited responses, DiTPO token weights).

Importing this package imports nothing heavy: `verl_ext.trainer.editgrpo_trainer` defines and registers its trainer
class when verl's ``verl.trainer.ppo.v1`` is imported. `verl_ext.trainer.edit_metrics` holds the pure metric math.
"""
