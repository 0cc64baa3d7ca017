"""``python -m verl_ext.metrics``: the evaluator's former entry point, kept as an alias of
``python -m verl_ext.eval.evaluate`` (the model-backed runner lives in ``verl_ext.eval``; this package is pure)."""

import sys

from verl_ext.eval.evaluate import main

sys.exit(main())
