"""The parquet row: one sample = one current study (+ its prior's images), readable by verl's RL and SFT datasets.

Columns (datasets.md §8, verl_integration.md §7 and §9):

* ``data_source`` (str): ``mimic_cxr`` | ``rexgradient`` | ``iu_xray`` | ``padchest_gr`` | ``chexpert_plus`` (the
  reward dispatch key);
* ``prompt`` (list of ``{role, content}``): one user message, the App. E prompt with one ``<image>`` per image
  (verl's ``RLHFDataset``, ``data.prompt_key=prompt``);
* ``messages`` (list of ``{role, content}``): the same user message plus ``{"role": "assistant", "content":
  findings}`` (verl's ``MultiTurnSFTDataset``, ``data.messages_key=messages``);
* ``images`` (list of structs, one per ``<image>`` in order): ``{"bytes", "path", "min_pixels", "max_pixels"}`` with
  the resized, encoded image (``--image-mode bytes``), or ``{"image", "min_pixels", "max_pixels"}`` with the
  absolute path of a resized copy (``--image-mode path``). ``min_pixels``/``max_pixels`` reach
  ``qwen_vl_utils.fetch_image``, which then leaves the already-resized image as it is;
* ``ability`` (str): ``radiology_report_generation``;
* ``reward_model`` (struct): ``{"style": "model", "ground_truth": findings}``;
* ``extra_info`` (struct): ``split, index, dataset, study_id, patient_id, study_date, has_prior, prior_study_id,
  n_images, image_roles, view_positions, image_ids, image_paths, source_split, indication, technique,
  comparison, findings, impression``. ``index`` is the study's ordinal in its split's plan: unique in the split,
  with gaps where studies were dropped;
* ``problem`` / ``answer`` (str): the prompt text and the findings again, for EasyR1-style loaders.

Every row of every shard has exactly this schema, so shards concatenate.
"""
from __future__ import annotations

import pyarrow as pa

ABILITY = "radiology_report_generation"

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
IMAGE_BYTES = pa.struct([("bytes", pa.binary()), ("path", pa.string()), ("min_pixels", pa.int64()),
                         ("max_pixels", pa.int64())])
IMAGE_PATH = pa.struct([("image", pa.string()), ("min_pixels", pa.int64()), ("max_pixels", pa.int64())])
REWARD_MODEL = pa.struct([("style", pa.string()), ("ground_truth", pa.string())])
EXTRA_INFO = pa.struct([
    ("split", pa.string()),
    ("index", pa.int64()),
    ("dataset", pa.string()),
    ("study_id", pa.string()),
    ("patient_id", pa.string()),
    ("study_date", pa.string()),
    ("has_prior", pa.bool_()),
    ("prior_study_id", pa.string()),
    ("n_images", pa.int64()),
    ("image_roles", pa.list_(pa.string())),
    ("view_positions", pa.list_(pa.string())),
    ("image_ids", pa.list_(pa.string())),
    ("image_paths", pa.list_(pa.string())),
    ("source_split", pa.string()),
    ("indication", pa.string()),
    ("technique", pa.string()),
    ("comparison", pa.string()),
    ("findings", pa.string()),
    ("impression", pa.string()),
])


def row_schema(image_mode: str) -> pa.Schema:
    """The arrow schema of every row for `image_mode` ``bytes`` or ``path``."""
    image = {"bytes": IMAGE_BYTES, "path": IMAGE_PATH}[image_mode]
    return pa.schema([
        ("data_source", pa.string()),
        ("prompt", pa.list_(MESSAGE)),
        ("messages", pa.list_(MESSAGE)),
        ("images", pa.list_(image)),
        ("ability", pa.string()),
        ("reward_model", REWARD_MODEL),
        ("extra_info", EXTRA_INFO),
        ("problem", pa.string()),
        ("answer", pa.string()),
    ])


def make_row(*, data_source: str, prompt_text: str, findings: str, images: list[dict], extra_info: dict) -> dict:
    """One row as a plain dict matching `row_schema`."""
    user = {"role": "user", "content": prompt_text}
    return {
        "data_source": data_source,
        "prompt": [user],
        "messages": [user, {"role": "assistant", "content": findings}],
        "images": images,
        "ability": ABILITY,
        "reward_model": {"style": "model", "ground_truth": findings},
        "extra_info": extra_info,
        "problem": prompt_text,
        "answer": findings,
    }
