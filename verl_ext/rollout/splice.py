"""Token-level splicing of an edited report into the policy's sampled token ids (pure; needs only a tokenizer).

The edit engine works on text: it returns the edited report as pieces, each either *kept* (an exact character span
of the sampled report) or *inserted* (new text, usually a reference sentence). This module turns those pieces into
response token ids such that

* every kept piece reuses the **exact token ids the policy sampled** (never re-encoded; "TITO"): a kept character
  span is mapped to the largest run of sampled tokens lying entirely inside it, and the few characters of the span
  outside that run (a separator space the next sentence's first token carries, say) are re-encoded together with
  the neighbouring inserted text;
* only inserted text is encoded (``add_special_tokens=False``);
* the edited response ends with the model's real end-of-turn token (``<|im_end|>`` for Qwen2.5-VL-Instruct), not a
  pad token (the authors' release appends nothing and relies on pad being in the EOS list);
* the response length limit holds: content plus end-of-turn is cut to ``max_length`` tokens; an edit that does not
  fit is cut like an over-long sampled response (no end-of-turn token) and flagged ``truncated``.

Whitespace is never collapsed: the decoded edited report is exactly the concatenation of the pieces.

Character offsets: for byte-level BPE tokenizers (Qwen2/2.5, GPT-2, Llama-3 ...) every token's bytes are known, so
token boundaries map exactly onto the decoded text. A boundary inside a multi-byte character is simply not used as a
splice point. Other tokenizers fall back to prefix decoding, which is exact wherever a prefix decodes to a prefix
of the full text. Special tokens inside a response are zero-width (``skip_special_tokens`` semantics).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Optional, Union

logger = logging.getLogger(__name__)

__all__ = [
    "DecodedResponse",
    "Piece",
    "SpliceResult",
    "decode_response",
    "splice_pieces",
    "stop_token_ids",
]

#: ``("kept", (start, end))`` with a char span of ``DecodedResponse.text``, or ``("inserted", text)``.
Piece = tuple[str, Union[tuple[int, int], str]]


@dataclass(frozen=True)
class DecodedResponse:
    """A sampled response split into content and terminator, with the content's exact decoded text.

    Attributes:
        ids: the full sampled response ids.
        content_len: number of content tokens; ``ids[content_len:]`` is the terminator (end-of-turn / eos tokens).
        text: the decoded content (special tokens skipped).
        bounds: ``bounds[k]`` is the char offset in ``text`` after the first ``k`` content tokens, or ``None`` when
            that token boundary does not fall on a character boundary (a split multi-byte character). ``bounds[0]``
            is 0 and ``bounds[content_len]`` is ``len(text)``.
        byte_level: whether offsets came from byte-level token bytes (exact) or from prefix decoding.
    """

    ids: tuple[int, ...]
    content_len: int
    text: str
    bounds: tuple[Optional[int], ...]
    byte_level: bool

    @property
    def content_ids(self) -> tuple[int, ...]:
        return self.ids[: self.content_len]

    @property
    def terminator_ids(self) -> tuple[int, ...]:
        return self.ids[self.content_len :]


@dataclass(frozen=True)
class SpliceResult:
    """The edited response as token ids.

    Attributes:
        response_ids: content ids followed by the end-of-turn token (unless ``truncated``).
        text: decoded content of ``response_ids`` (without the end-of-turn token).
        kept: ``(src_start, src_end, dst_start)`` per reused run: ``response_ids[dst_start:dst_start+src_end-src_start]
            == sampled_ids[src_start:src_end]``.
        num_kept_tokens / num_inserted_tokens: content tokens reused / newly encoded (after truncation).
        truncated: the edit exceeded ``max_length`` and was cut (then there is no end-of-turn token).
        exact: ``text`` equals the concatenation of the requested pieces (False only if the tokenizer normalised
            inserted text, e.g. NFC, or a decode quirk; the ids are still self-consistent).
    """

    response_ids: list[int]
    text: str
    kept: tuple[tuple[int, int, int], ...]
    num_kept_tokens: int
    num_inserted_tokens: int
    truncated: bool
    exact: bool
    pieces: tuple[tuple[str, Any], ...] = field(default=())


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer helpers
# ----------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's ``bytes_to_unicode`` (the byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is None:
        return False
    name = type(decoder).__name__
    if name == "ByteLevel":
        return True
    # tokenizers >= 0.20 exposes a generic Decoder wrapper; look at its JSON form.
    try:
        import json

        return json.loads(backend.to_str())["decoder"]["type"] == "ByteLevel"
    except Exception:  # noqa: BLE001 - any failure means "not provably byte-level"
        return False


def _special_ids(tokenizer) -> frozenset[int]:
    return frozenset(int(i) for i in getattr(tokenizer, "all_special_ids", ()) or ())


def _added_tokens(tokenizer) -> dict[int, str]:
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    return {int(i): str(getattr(t, "content", t)) for i, t in decoder.items()}


def _token_bytes(tokenizer, ids: Sequence[int]) -> Optional[list[bytes]]:
    """Bytes of each token for byte-level BPE tokenizers (special tokens -> b""), or None if not byte-level."""
    if not _is_byte_level(tokenizer):
        return None
    specials = _special_ids(tokenizer)
    added = _added_tokens(tokenizer)
    inv = _byte_decoder()
    pieces = tokenizer.convert_ids_to_tokens(list(ids))
    out: list[bytes] = []
    for tid, piece in zip(ids, pieces):
        tid = int(tid)
        if tid in specials:
            out.append(b"")
        elif tid in added:
            out.append(added[tid].encode("utf-8"))
        elif piece is None:
            return None
        else:
            try:
                out.append(bytes(inv[ch] for ch in piece))
            except KeyError:
                return None
    return out


def _decode_utf8_with_bounds(chunks: Sequence[bytes]) -> tuple[str, list[Optional[int]]]:
    """Decode the concatenated ``chunks`` exactly like ``bytes.decode("utf-8", errors="replace")`` (Unicode's
    maximal-subpart replacement, as the tokenizers' byte-level decoder does) and return, for every chunk boundary,
    the char offset reached there, or None when the boundary splits a character."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    parts: list[str] = []
    length = 0
    bounds: list[Optional[int]] = [0]
    for chunk in chunks:
        piece = decoder.decode(chunk)
        parts.append(piece)
        length += len(piece)
        buffered, _flag = decoder.getstate()
        bounds.append(None if buffered else length)
    tail = decoder.decode(b"", final=True)
    parts.append(tail)
    if tail:  # an incomplete character at the very end becomes U+FFFD
        bounds[-1] = length + len(tail)
    return "".join(parts), bounds


def stop_token_ids(tokenizer, generation_config=None) -> tuple[int, ...]:
    """Token ids that end a turn: the generation config's eos ids (in order) then the tokenizer's eos id."""
    ids: list[int] = []
    eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    if isinstance(eos, int):
        eos = [eos]
    for i in list(eos or []) + [getattr(tokenizer, "eos_token_id", None)]:
        if i is not None and int(i) not in ids:
            ids.append(int(i))
    return tuple(ids)


# ----------------------------------------------------------------------------------------------------------------
# Decoding a sampled response
# ----------------------------------------------------------------------------------------------------------------


def decode_response(tokenizer, response_ids: Sequence[int], stop_ids: Iterable[int] = ()) -> DecodedResponse:
    """Split ``response_ids`` into content + trailing stop tokens and decode the content with token offsets."""
    ids = tuple(int(i) for i in response_ids)
    stops = {int(i) for i in stop_ids}
    content_len = len(ids)
    while content_len > 0 and ids[content_len - 1] in stops:
        content_len -= 1
    content = ids[:content_len]

    token_bytes = _token_bytes(tokenizer, content)
    if token_bytes is not None:
        text, bounds = _decode_utf8_with_bounds(token_bytes)
        return DecodedResponse(ids, content_len, text, tuple(bounds), byte_level=True)

    # Fallback: prefix decoding. A boundary counts only where the prefix decodes to a prefix of the full text.
    text = tokenizer.decode(list(content), skip_special_tokens=True)
    bounds = [0]
    for k in range(1, content_len + 1):
        prefix = tokenizer.decode(list(content[:k]), skip_special_tokens=True)
        bounds.append(len(prefix) if text.startswith(prefix) and "\ufffd" not in prefix[-1:] else None)
    bounds[-1] = len(text)
    return DecodedResponse(ids, content_len, text, tuple(bounds), byte_level=False)


# ----------------------------------------------------------------------------------------------------------------
# Splicing
# ----------------------------------------------------------------------------------------------------------------


def _token_run_inside(bounds: Sequence[Optional[int]], a: int, b: int) -> Optional[tuple[int, int]]:
    """Largest token range ``[k0, k1)`` with ``a <= bounds[k0]`` and ``bounds[k1] <= b`` (both defined), or None."""
    k0 = next((k for k, v in enumerate(bounds) if v is not None and v >= a), None)
    if k0 is None:
        return None
    k1 = next((k for k in range(len(bounds) - 1, -1, -1) if bounds[k] is not None and bounds[k] <= b), None)
    if k1 is None or k1 <= k0:
        return None
    # Zero-width tokens (special tokens) at the edges belong to neither side; leave them out.
    while k0 < k1 and bounds[k0 + 1] == bounds[k0]:
        k0 += 1
    while k1 > k0 and bounds[k1 - 1] == bounds[k1]:
        k1 -= 1
    return (k0, k1) if k1 > k0 else None


def splice_pieces(
    tokenizer,
    response: DecodedResponse,
    pieces: Sequence[Piece],
    *,
    end_token_id: int,
    max_length: int,
) -> SpliceResult:
    """Build the edited response's token ids from ``pieces`` (see module docstring).

    Args:
        tokenizer: the policy's tokenizer.
        response: the decoded sampled response the kept spans refer to.
        pieces: ``[("kept", (a, b)) | ("inserted", text), ...]`` in order; their concatenation (kept ->
            ``response.text[a:b]``) is the edited report.
        end_token_id: the end-of-turn token appended after the content.
        max_length: the rollout's response length limit (content + end-of-turn).
    """
    if max_length <= 0:
        raise ValueError(f"splice_pieces: max_length={max_length} must be positive")
    text = response.text
    content_ids = response.content_ids

    # 1) Map kept char spans onto sampled token runs; leftovers become inserted text.
    plan: list[tuple[str, Any]] = []  # ("kept", (k0, k1)) | ("inserted", str)

    def add_text(s: str) -> None:
        if not s:
            return
        if plan and plan[-1][0] == "inserted":
            plan[-1] = ("inserted", plan[-1][1] + s)
        else:
            plan.append(("inserted", s))

    wanted: list[str] = []
    for kind, value in pieces:
        if kind == "kept":
            a, b = value  # type: ignore[misc]
            if not (0 <= a <= b <= len(text)):
                raise ValueError(f"splice_pieces: kept span {(a, b)} outside the response text (len {len(text)})")
            wanted.append(text[a:b])
            run = _token_run_inside(response.bounds, a, b)
            if run is None:
                add_text(text[a:b])
                continue
            k0, k1 = run
            add_text(text[a : response.bounds[k0]])
            plan.append(("kept", (k0, k1)))
            add_text(text[response.bounds[k1] : b])
        elif kind == "inserted":
            wanted.append(str(value))
            add_text(str(value))
        else:
            raise ValueError(f"splice_pieces: unknown piece kind {kind!r} (expected 'kept' or 'inserted')")

    # 2) Emit ids: kept runs verbatim, inserted text encoded without special tokens.
    ids: list[int] = []
    kept: list[tuple[int, int, int]] = []
    is_kept: list[bool] = []
    for kind, value in plan:
        if kind == "kept":
            k0, k1 = value
            kept.append((k0, k1, len(ids)))
            ids.extend(content_ids[k0:k1])
            is_kept.extend([True] * (k1 - k0))
        else:
            new = list(tokenizer.encode(value, add_special_tokens=False))
            ids.extend(new)
            is_kept.extend([False] * len(new))

    # 3) End-of-turn token and the length limit.
    truncated = len(ids) + 1 > max_length
    if truncated:
        ids = ids[:max_length]
        is_kept = is_kept[:max_length]
        kept = [(s0, min(s1, s0 + max_length - d), d) for s0, s1, d in kept if d < max_length]
        response_ids = ids
    else:
        response_ids = ids + [int(end_token_id)]

    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    exact = (not truncated) and decoded == "".join(wanted)
    if not exact and not truncated:
        logger.debug("splice_pieces: decoded edit differs from the requested text (tokenizer normalisation)")
    num_kept = sum(is_kept)
    return SpliceResult(
        response_ids=response_ids,
        text=decoded,
        kept=tuple(kept),
        num_kept_tokens=num_kept,
        num_inserted_tokens=len(is_kept) - num_kept,
        truncated=truncated,
        exact=exact,
        pieces=tuple(plan),
    )
