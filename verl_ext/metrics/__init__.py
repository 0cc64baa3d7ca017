"""Evaluation metrics (paper Table 1) and their pure math; see ``verl_ext.metrics.evaluate`` for the runner/CLI."""
