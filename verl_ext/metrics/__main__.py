"""``python -m verl_ext.metrics``: see ``verl_ext.metrics.evaluate``."""

import sys

from verl_ext.metrics.evaluate import main

sys.exit(main())
