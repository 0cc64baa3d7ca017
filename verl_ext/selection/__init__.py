"""Training-data selection for RL: DDSampling (DEER Sec. 3.2), ``python -m verl_ext.selection.ddsampling``."""
