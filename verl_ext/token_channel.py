"""The per-token channel: per-trajectory values, aligned to the response tokens, carried from where they are known
(rollout, reward) to where they are used (advantage and loss).

verl 0.9.1 gives advantage estimators and policy losses token ids and masks only; it never hands them the decoded
text, CheXbert, or what the edit step did. Several algorithms need exactly that, per token or per sample:

* DEER's gradient-based DiTPO weights (Eq. 9-12) are computed in the reward path, where CheXbert and the decoded
  response already are (`verl_ext.reward.token_weights`);
* the edit step knows which tokens of an edited response were inserted from the reference (off-policy text with no
  sampled log-probs) — derived here from its ``edit_kept_runs`` extra field;
* OraPO's per-prompt mixing weight is one number per sample.

A ``Channel`` holds both kinds: ``arrays`` (name -> float32 vector with one value per response token) and
``scalars`` (name -> float). It travels inside the trajectory's ``extra_fields`` in TransferQueue, the one
per-trajectory dict verl already stores and hands to every stage:

* a producer on the rollout side puts it at ``extra_fields[CHANNEL_KEY]``;
* the reward manager (which can only return ``reward_extra_info``) puts it at
  ``extra_fields["reward_extra_info"][CHANNEL_KEY]``.

Both are stored as one compact string (`encode`): verl's validation metrics skip string values and verl's legacy
trainer turns every ``reward_extra_info`` key into a numpy column, which ragged lists would break. `read` merges
both places (and the inserted-token mask derived from the edit fields) into one ``Channel`` per trajectory;
`stack` pads a batch of them to ``(bs, L)`` tensors.

API (all pure; no verl import): ``Channel``, ``encode``/``decode``, ``put_reward_info``, ``read``, ``stack``,
``inserted_token_mask``. Names in use: ``ditpo_weight`` (array), ``inserted`` (array, 1.0 on inserted tokens).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

CHANNEL_KEY = "verl_ext_channel"
FORMAT_VERSION = 1
#: Array names produced by verl_ext (others may add their own).
DITPO_WEIGHT = "ditpo_weight"
INSERTED = "inserted"


@dataclass
class Channel:
    """Per-trajectory values: ``arrays[name]`` has one float per response token; ``scalars[name]`` one float."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    scalars: dict[str, float] = field(default_factory=dict)

    def put_array(self, name: str, values: Sequence[float]) -> "Channel":
        arr = np.asarray(values, dtype=np.float32).reshape(-1)
        if not np.isfinite(arr).all():
            raise ValueError(f"token channel array {name!r} has non-finite values")
        self.arrays[name] = arr
        return self

    def put_scalar(self, name: str, value: float) -> "Channel":
        value = float(value)
        if not np.isfinite(value):
            raise ValueError(f"token channel scalar {name!r} = {value} is not finite")
        self.scalars[name] = value
        return self

    def merge(self, other: "Channel") -> "Channel":
        clash = (set(self.arrays) & set(other.arrays)) | (set(self.scalars) & set(other.scalars))
        if clash:
            raise ValueError(f"token channel: {sorted(clash)} produced twice for one trajectory")
        self.arrays.update(other.arrays)
        self.scalars.update(other.scalars)
        return self


def encode(channel: Channel) -> str:
    """One JSON string; arrays as base64 of little-endian float32 (exact, ~5.3 characters per token)."""
    return json.dumps(
        {
            "v": FORMAT_VERSION,
            "a": {k: base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for k, v in channel.arrays.items()},
            "s": channel.scalars,
        },
        separators=(",", ":"),
    )


def decode(payload: Any) -> Channel:
    """Inverse of `encode`; ``None``/empty gives an empty channel."""
    if payload is None or payload == "":
        return Channel()
    if isinstance(payload, Channel):
        return payload
    if not isinstance(payload, str):
        raise TypeError(f"token channel payload must be a string from encode(), got {type(payload).__name__}")
    data = json.loads(payload)
    if data.get("v") != FORMAT_VERSION:
        raise ValueError(f"token channel payload version {data.get('v')!r}; this code reads {FORMAT_VERSION}")
    arrays = {k: np.frombuffer(base64.b64decode(v), dtype="<f4").astype(np.float32) for k, v in data["a"].items()}
    return Channel(arrays=arrays, scalars={k: float(v) for k, v in data["s"].items()})


def put_reward_info(reward_extra_info: dict, channel: Optional[Channel]) -> dict:
    """Store ``channel`` in a reward manager's ``reward_extra_info`` (always the key, so every sample has it)."""
    reward_extra_info[CHANNEL_KEY] = encode(channel) if channel is not None else ""
    return reward_extra_info


def inserted_token_mask(extra_fields: Mapping, response_length: int) -> Optional[np.ndarray]:
    """1.0 on the tokens of an edited response that were not sampled, 0.0 on kept sampled tokens; None if not edited.

    The edit step's ``edit_kept_runs`` lists ``[src_start, src_end, dst_start]`` runs of sampled ids kept at
    ``dst_start`` (verl_ext/rollout/edit_worker.py); everything else of the edited response (inserted reference text
    and the appended end-of-turn token) was written by the edit, not sampled by the policy.
    """
    if not extra_fields.get("is_edited", False):
        return None
    mask = np.ones(int(response_length), dtype=np.float32)
    for run in extra_fields.get("edit_kept_runs", []) or []:
        s0, s1, d = (int(x) for x in run)
        if s1 < s0 or d < 0 or d + (s1 - s0) > response_length:
            raise ValueError(f"edit_kept_runs entry {list(run)} does not fit a response of {response_length} tokens")
        mask[d : d + s1 - s0] = 0.0
    return mask


def read(extra_fields: Any, response_length: int) -> Channel:
    """The merged channel of one trajectory from its TransferQueue ``extra_fields``; checks every array's length."""
    extra = extra_fields if isinstance(extra_fields, Mapping) else {}
    channel = decode(extra.get(CHANNEL_KEY))
    info = extra.get("reward_extra_info")
    if isinstance(info, Mapping):
        channel.merge(decode(info.get(CHANNEL_KEY)))
    inserted = inserted_token_mask(extra, response_length)
    if inserted is not None and INSERTED not in channel.arrays:
        channel.put_array(INSERTED, inserted)
    for name, arr in channel.arrays.items():
        if arr.shape[0] != response_length:
            raise ValueError(
                f"token channel array {name!r} has {arr.shape[0]} values for a response of {response_length} tokens"
            )
    return channel


def stack(channels: Sequence[Channel], name: str, lengths: Sequence[int], width: int, fill: float):
    """``(bs, width)`` float32 torch tensor of array ``name``; ``fill`` where a trajectory lacks it or past its end.

    Returns (tensor, number of trajectories that carried the array).
    """
    import torch

    out = torch.full((len(channels), width), float(fill), dtype=torch.float32)
    present = 0
    for row, (ch, n) in enumerate(zip(channels, lengths)):
        arr = ch.arrays.get(name)
        if arr is None:
            continue
        present += 1
        out[row, : int(n)] = torch.from_numpy(np.ascontiguousarray(arr[: int(n)]))
    return out, present
