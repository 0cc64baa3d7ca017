"""Advantage estimation: Dr. GRPO (registered with verl as ``dr_grpo``) and DEER's DiTPO token weights.

Importing this package imports nothing heavy; `verl_ext.algorithms.advantages` registers its estimator when verl's
``core_algos`` is imported.
"""
