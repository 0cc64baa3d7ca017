"""split_sentences: exact spans; abbreviations, decimals, lists, newlines, unicode; coverage of every character."""
import random

import pytest

from verl_ext.editing import split_sentences


def pieces(text):
    return [text[a:b] for a, b in split_sentences(text)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The heart is normal. No effusion.", ["The heart is normal.", "No effusion."]),
        ("A 1.5 cm nodule. Dr. Smith was notified, e.g. by phone. Done!",
         ["A 1.5 cm nodule.", "Dr. Smith was notified, e.g. by phone.", "Done!"]),
        ("Stable vs. prior, i.e. unchanged. Approx. 2 cm.", ["Stable vs. prior, i.e. unchanged.", "Approx. 2 cm."]),
        ("1. Cardiomegaly. 2. Small left effusion.\n3. No pneumothorax.",
         ["1. Cardiomegaly.", "2. Small left effusion.", "3. No pneumothorax."]),
        ("Findings\n1. Cardiomegaly\n2. Effusion", ["Findings", "1. Cardiomegaly", "2. Effusion"]),
        ("a. first. b. second.", ["a. first.", "b. second."]),
        ("FINDINGS:\nThe lungs are clear\nNo effusion\n\nIMPRESSION: normal.",
         ["FINDINGS:", "The lungs are clear", "No effusion", "IMPRESSION: normal."]),
        ("there is a small\nleft effusion. heart is normal .", ["there is a small\nleft effusion.", "heart is normal ."]),
        ("measures\n2 cm in size.", ["measures\n2 cm in size."]),
        ("the lungs are clear . no pleural effusion .", ["the lungs are clear .", "no pleural effusion ."]),
        ("  Lead.  \n", ["Lead."]),
        ("Héart — normal… Next. 心脏正常。肺清晰。", ["Héart — normal…", "Next.", "心脏正常。", "肺清晰。"]),
        ("Hepatitis B. Next (see fig. 2).", ["Hepatitis B.", "Next (see fig. 2)."]),
        ('"No effusion." Next.', ['"No effusion."', "Next."]),
        ("- No effusion\n- No pneumothorax", ["- No effusion", "- No pneumothorax"]),
        ("Is there effusion? No! Really?!", ["Is there effusion?", "No!", "Really?!"]),
        ("Line one\r\nLine two\u2028Line three", ["Line one", "Line two", "Line three"]),
        ("Value 3.14159 and v1.2.3 stay.", ["Value 3.14159 and v1.2.3 stay."]),
        ("Portable film taken at 3 p.m. The lungs are clear.",
         ["Portable film taken at 3 p.m.", "The lungs are clear."]),
        ("Seen at 7 a.m. on the ward. Stable.", ["Seen at 7 a.m. on the ward.", "Stable."]),
        ("Devices, lines, etc. The heart is normal.", ["Devices, lines, etc.", "The heart is normal."]),
        ("Dr. Smith. Mr. Jones was told.", ["Dr. Smith.", "Mr. Jones was told."]),
        ("", []),
        (" \n\t ", []),
    ],
)
def test_examples(text, expected):
    assert pieces(text) == expected


def _check_cover(text):
    spans = split_sentences(text)
    covered = [0] * len(text)
    prev_end = 0
    for a, b in spans:
        assert prev_end <= a < b <= len(text)
        assert not text[a].isspace() and not text[b - 1].isspace()
        for k in range(a, b):
            covered[k] += 1
        prev_end = b
    for k, ch in enumerate(text):
        assert covered[k] <= 1 and (ch.isspace() or covered[k] == 1), (text, k)


def test_every_non_whitespace_char_in_exactly_one_span_fuzz():
    rng = random.Random(0)
    alphabet = list("abcXYZ019 .!?:;,-()\"'\n\r\t\u00a0é…。🙂") + ["Dr.", "e.g.", "1.", " ", "\n\n", "1.5"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        _check_cover(text)


def test_long_text_linear_enough():
    text = "The heart is normal. " * 5000
    spans = split_sentences(text)
    assert len(spans) == 5000
