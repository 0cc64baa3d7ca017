"""Convert iu_xray into verl RL/SFT parquet shards + stats.json. See `python data_prep/iu_xray.py --help`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout too

from verl_ext.data.cli import main  # noqa: E402

if __name__ == "__main__":
    main("iu_xray")
