"""Advantage and loss formulas: Dr. GRPO (verl estimator ``dr_grpo``), DEER's DiTPO token weights and DDSampling,
and the inserted-token policy losses (verl losses ``inserted_masked`` / ``inserted_luffy``).

Importing this package imports nothing heavy; `verl_ext.algorithms.advantages` registers its estimator when verl's
``core_algos`` is imported.
"""
