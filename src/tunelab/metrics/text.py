"""Scores for generated answer text: normalised exact match, ROUGE-L, and mapping an answer to a label.

ROUGE-L comes from Google's ``rouge_score``. Ours is what no library does for us: the answer
normalisation used by exact match, and ``map_to_label``, which reads a class label out of a
free-form generated answer ("Positive.", "very positive - the reviewer loved it").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rouge_score.rouge_scorer import RougeScorer

# What an answer gets wrapped in: quotes, brackets, sentence marks, markdown emphasis. Signs and
# units ($ % + - #) are kept: "-5" and "5" are different answers.
_WRAPPING = " \t\r\n\f\v.,;:!?\"'`()[]{}<>*_~“”‘’«»„…"

# Letters and digits, any script. rouge_score's own tokenizer keeps only [a-z0-9], so a Russian or
# Chinese answer would score 0 against itself; on ASCII text this splits exactly as it does.
_WORD = re.compile(r"[^\W_]+")


def normalize_answer(text: str) -> str:
    """Casefold, collapse runs of whitespace, strip surrounding punctuation and quotes."""
    return " ".join(text.casefold().split()).strip(_WRAPPING)


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when both texts are equal after ``normalize_answer``, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


class _UnicodeWords:
    """A rouge_score tokenizer: lowercased letter/digit runs of any script, no stemming."""

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.casefold())


@cache
def _rouge_scorer() -> RougeScorer:
    # Imported on first use: ``tunelab`` imports every command module to build its parser.
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"], tokenizer=_UnicodeWords())


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (longest common subsequence of words), 0.0 when either side has no words."""
    return float(_rouge_scorer().score(reference, prediction)["rougeL"].fmeasure)


def _whole_word(phrase: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(phrase)}(?!\w)")


def _labels_longest_first(labels: Sequence[str]) -> list[tuple[str, str]]:
    """(label, normalised label) pairs, longest first, so "very positive" is tried before "positive"."""
    pairs = [(label, normalize_answer(label)) for label in labels]
    return sorted((pair for pair in pairs if pair[1]), key=lambda pair: len(pair[1]), reverse=True)


def _labels_present(answer: str, labels: list[tuple[str, str]]) -> list[str]:
    """Labels that occur as whole words, not counting an occurrence inside a longer label's match."""
    covered: list[tuple[int, int]] = []
    present = []
    for label, normalised in labels:
        spans = [match.span() for match in _whole_word(normalised).finditer(answer)]
        if any(not any(start <= s and e <= end for start, end in covered) for s, e in spans):
            present.append(label)
        covered.extend(spans)
    return present


def map_to_label(text: str, labels: Sequence[str]) -> str | None:
    """The label a generated answer names, or None when it names none or several.

    Tried in order, case-insensitively on normalised text: the answer equals a label; the answer
    starts with a label as a whole word ("positive, because ..."); exactly one label occurs as a
    whole word anywhere. Longer labels win over their prefixes ("very positive" over "positive").
    Negation is not understood: "not positive" maps to "positive".
    """
    answer = normalize_answer(text)
    candidates = _labels_longest_first(labels)
    for label, normalised in candidates:
        if answer == normalised:
            return label
    for label, normalised in candidates:
        if _whole_word(normalised).match(answer):
            return label
    present = _labels_present(answer, candidates)
    return present[0] if len(present) == 1 else None
