"""Answer normalisation, exact match, ROUGE-L and mapping a generated answer to a label."""

from __future__ import annotations

import pytest

from tunelab.metrics.text import exact_match, map_to_label, normalize_answer, rouge_l


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('  "Paris."  ', "paris"),
        ("The   Eiffel\n Tower!", "the eiffel tower"),
        ("**Yes**", "yes"),
        ("“Ja”", "ja"),
        ("(B)", "b"),
        ("-5", "-5"),  # a sign is part of the answer
        ("50%.", "50%"),
        ("", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_compares_normalised_text():
    assert exact_match("Paris.", "paris") == 1.0
    assert exact_match(" 'PARIS' ", "Paris") == 1.0
    assert exact_match("Paris, France", "Paris") == 0.0
    assert exact_match("-5", "5") == 0.0


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        # LCS "the cat on mat" = 4 of 6 words each: P = R = F = 4/6
        ("the cat sat on the mat", "the cat is on a mat", 2 / 3),
        # LCS "cat sat" = 2: P = 2/3, R = 2/6, F = 2 * (2/3) * (1/3) / (2/3 + 1/3) = 4/9
        ("a cat sat", "the cat sat on the mat", 4 / 9),
        # same words, case and punctuation aside: LCS 3 of 3
        ("The Cat, sat!", "the cat sat", 1.0),
        # Cyrillic words count (rouge_score's own tokenizer drops them): LCS 2, P = 2/3, R = 2/2, F = 0.8
        ("Париж столица Франции", "столица Франции", 0.8),
        ("", "the cat", 0.0),
    ],
)
def test_rouge_l_is_the_lcs_f_measure(prediction, reference, expected):
    assert rouge_l(prediction, reference) == pytest.approx(expected)


LABELS = ["positive", "negative", "very positive", "neutral"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Positive.", "positive"),  # equal after normalisation
        ('"NEUTRAL"', "neutral"),
        ("**Negative**", "negative"),
        ("very positive - the reviewer loved it", "very positive"),  # starts with; the longer label wins
        ("positive, because the plot is good", "positive"),  # starts with, as a whole word
        ("positively great", None),  # "positive" is not a whole word here
        ("I think it is negative overall", "negative"),  # the one label in the answer
        ("The answer: very positive", "very positive"),  # "positive" inside it does not count twice
        ("It is neutral, not negative", None),  # two labels anywhere: ambiguous
        ("positive or negative", "positive"),  # starting with a label wins over the second one
        ("I cannot tell", None),
        ("", None),
    ],
)
def test_map_to_label(text, expected):
    assert map_to_label(text, LABELS) == expected


def test_map_to_label_returns_the_label_as_spelled_in_labels():
    assert map_to_label("yes, it is", ["Yes", "No"]) == "Yes"
    assert map_to_label("The sentiment is very positive, not positive", LABELS) is None  # both occur on their own
