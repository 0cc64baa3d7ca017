"""The radiology reward for verl: reward-loop manager ``radiology``, components, batching scorer service.

Import-light: ``verl_ext.register`` imports ``verl_ext.reward.manager`` in every verl process; models load on first use.
"""
