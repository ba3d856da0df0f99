"""Decoding: greedy and batched beam search over the model contract, and `translate` for raw text."""

from nmt.decoding.search import (
    SearchResult,
    Translations,
    beam_search,
    greedy_search,
    length_penalty,
    translate,
)

__all__ = ["SearchResult", "Translations", "beam_search", "greedy_search", "length_penalty", "translate"]
