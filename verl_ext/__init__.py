"""verl_ext: EditGRPO and related RL methods for radiology report generation, as verl 0.9.1 plugins.

Importing this package is cheap on purpose: verl imports `verl_ext.register` in every process.
"""

__version__ = "0.1.0"
