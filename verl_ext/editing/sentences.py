"""Sentence splitting as exact character spans, so kept sentences can be spliced back byte-identically.

``split_sentences(text)`` returns ``[(start, end), ...]``: ordered, non-overlapping spans whose ends are
non-whitespace (spans are "stripped"), such that every non-whitespace character of ``text`` lies in exactly one
span. Whitespace between spans is the separator and is never part of a sentence.

A sentence ends:
  * after terminal punctuation (``. ! ? … 。 ！ ？``, plus closing quotes/brackets) followed by whitespace or the end
    of the text, except after a known abbreviation ("Dr.", "e.g.", "i.e.", "vs.", "approx.", ...) or a list marker
    at the start of a sentence ("1.", "a.", "iv."); an abbreviation that can close a sentence ("a.m.", "p.m.",
    "etc.") ends it when the next word is capitalised ("at 3 p.m. The lungs are clear.");
    decimals ("1.5 cm") never split, because no whitespace follows their point;
    spaced punctuation as in IU-Xray's preprocessed text ("the lungs are clear . no effusion .") splits normally;
  * at a blank line;
  * at a single line break, unless the next line continues the sentence: it starts with a lower-case letter, a digit
    that is not a list marker, or ``, ; : ) ] }`` (hard-wrapped text such as raw MIMIC-CXR reports). A line ending
    with ":" ("FINDINGS:") always ends its sentence.
"""
from __future__ import annotations

import re

__all__ = ["split_sentences", "ABBREVIATIONS", "SENTENCE_FINAL_ABBREVIATIONS", "ends_with_terminal"]

#: Lower-cased tokens (without their final ".") after which a "." does not end a sentence.
ABBREVIATIONS: frozenset[str] = frozenset(
    {
        "dr", "mr", "mrs", "ms", "prof", "sr", "jr", "st", "mt",
        "e.g", "i.e", "eg", "ie", "vs", "v", "cf", "viz", "al",
        "approx", "appr", "incl", "fig", "figs", "ref", "refs", "resp",
        "a.m", "p.m", "etc", "b.i.d", "t.i.d", "q.d", "p.o", "n.b",
        "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    }
)

#: Abbreviations that also end sentences ("... at 3 p.m. The lungs are clear."): their "." ends the sentence when
#: the next word starts with an upper-case letter. Titles ("Dr. Smith") never do.
SENTENCE_FINAL_ABBREVIATIONS: frozenset[str] = frozenset({"a.m", "p.m", "etc", "b.i.d", "t.i.d", "q.d", "p.o"})

_TERMINALS = ".!?\u2026\u3002\uff01\uff1f\uff0e"
_CLOSERS = "\"')]}\u00bb\u201d\u2019\u300d\u300f\uff09"
_OPENERS = "\"'([{\u00ab\u201c\u2018"
_TERMINAL_RUN = re.compile(rf"[{re.escape(_TERMINALS)}]+[{re.escape(_CLOSERS)}]*(?=\s|$)")
# Full-width (CJK) terminals end a sentence even without following whitespace.
_CJK_TERMINAL_RUN = re.compile(rf"[\u3002\uff01\uff1f]+[{re.escape(_CLOSERS)}]*")
# A run of whitespace that contains at least one line break (str.splitlines' line boundaries).
_LINE_BREAK_CHARS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_LINE_BREAK_RUN = re.compile(rf"[^\S{_LINE_BREAK_CHARS}]*[{_LINE_BREAK_CHARS}]\s*")
_LIST_MARKER_TOKEN = re.compile(r"\(?(?:\d{1,3}|[a-z]|[ivx]{1,5})", re.IGNORECASE)
_LIST_MARKER_AHEAD = re.compile(r"\(?(?:\d{1,3}|[a-zA-Z]|[ivxIVX]{1,5})[.)](?:\s|$)")
_BULLETS = "-*\u2022\u00b7\u2013\u2014\u25aa\u25e6\u2023\u25cf\u25a0+>"
_CONTINUATION_PUNCT = ",;:)]}"


def _count_line_breaks(ws: str) -> int:
    # "\r\n" is one line break.
    return len(ws.replace("\r\n", "\n").translate({ord(c): "\n" for c in _LINE_BREAK_CHARS}).split("\n")) - 1


def _last_nonspace_before(text: str, pos: int) -> int:
    """Index of the last non-whitespace character before ``pos`` (or -1)."""
    i = pos - 1
    while i >= 0 and text[i].isspace():
        i -= 1
    return i


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Split ``text`` into sentence spans ``(start, end)`` with ``text[start:end]`` stripped and non-empty."""
    if not text:
        return []
    n = len(text)
    cuts: set[int] = set()

    # 1) Terminal punctuation followed by whitespace / end of text.
    for m in _TERMINAL_RUN.finditer(text):
        end = m.end()
        run = m.group()
        if run == "." or run.rstrip(_CLOSERS) == ".":
            p = m.start()
            # the token before the single ".": from the previous whitespace up to the point
            k = p
            while k > 0 and not text[k - 1].isspace():
                k -= 1
            token = text[k:p].lstrip(_OPENERS)
            low = token.lower()
            if low in ABBREVIATIONS and not (low in SENTENCE_FINAL_ABBREVIATIONS and _next_word_upper(text, end)):
                continue
            if token and _LIST_MARKER_TOKEN.fullmatch(token):
                # a list marker only when it opens its sentence: nothing but whitespace since the last cut
                prev = _last_nonspace_before(text, k)
                if prev < 0 or _opens_sentence(text, prev, k, cuts):
                    continue
        cuts.add(end)

    for m in _CJK_TERMINAL_RUN.finditer(text):
        cuts.add(m.end())

    # 2) Line breaks.
    for m in _LINE_BREAK_RUN.finditer(text):
        a, b = m.start(), m.end()
        if a == 0 or b >= n:
            continue  # leading / trailing whitespace: nothing to separate
        if _count_line_breaks(m.group()) >= 2:
            cuts.add(a)
            continue
        prev_char = text[a - 1]
        nxt = text[b]
        if prev_char == ":":
            cuts.add(a)
            continue
        if nxt.islower():
            continue
        if nxt.isdigit() and not _LIST_MARKER_AHEAD.match(text, b):
            continue
        if nxt in _CONTINUATION_PUNCT:
            continue
        cuts.add(a)

    # 3) Spans between cuts, stripped; empty pieces dropped.
    spans: list[tuple[int, int]] = []
    start = 0
    for cut in sorted(cuts) + [n]:
        if cut <= start:
            continue
        a, b = start, cut
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            spans.append((a, b))
        start = cut
    return spans


def _opens_sentence(text: str, prev: int, k: int, cuts: set[int]) -> bool:
    """Whether a token starting at ``k`` opens a sentence: the previous sentence already ended at ``prev`` (terminal
    punctuation, closer, a cut, a heading colon) or a line break lies between ``prev`` and ``k``."""
    if (prev + 1) in cuts:
        return True
    c = text[prev]
    if c in _TERMINALS or c in _CLOSERS or c == ":":
        return True
    return any(ch in _LINE_BREAK_CHARS for ch in text[prev + 1 : k])


def _next_word_upper(text: str, pos: int) -> bool:
    """Whether the first non-space character at or after ``pos`` (past opening quotes/brackets) is upper-case."""
    n = len(text)
    while pos < n and (text[pos].isspace() or text[pos] in _OPENERS):
        pos += 1
    return pos < n and text[pos].isupper()


def ends_with_terminal(sentence: str) -> bool:
    """Whether a sentence already ends like one: terminal punctuation (closers allowed after it), or a heading colon
    or semicolon."""
    s = sentence.rstrip().rstrip(_CLOSERS)
    return not s or s[-1] in _TERMINALS or s[-1] in ":;"
