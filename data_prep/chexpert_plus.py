"""Convert chexpert_plus into verl RL/SFT parquet shards + stats.json.

See `python data_prep/chexpert_plus.py --help`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout too

from verl_ext.data.cli import main  # noqa: E402

if __name__ == "__main__":
    main("chexpert_plus")
