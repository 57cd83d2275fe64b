"""Strategies shared by the fuzz modules: any text (lone surrogates included, which
``st.text()`` leaves out and JSON can carry), bytes, and inputs grown large by repetition."""

from __future__ import annotations

import sys

from hypothesis import strategies as st

__all__ = ["any_char", "any_text", "chance", "json_values", "large", "long_digit_runs", "mutated", "text_of"]

# Every code point, surrogates too (json.loads('"\\ud800"') is a str Python cannot encode),
# with the troublesome ones drawn often: among 1.1 million code points hypothesis would
# rarely pick one of them.
any_char = st.characters(exclude_categories=()) | st.sampled_from(
    ["\ud800", "\udfff", "\x00", "\x7f", "\x85", "\xa0", "\u2028", "\u3000", "\ufeff", "\uffff", "\U0010ffff", "\u0130"]
)


def text_of(chars: st.SearchStrategy[str], *, min_size: int = 0, max_size: int | None = None) -> st.SearchStrategy[str]:
    """Strings of ``chars``. Not ``st.text(chars)``: it merges a union of character strategies
    into one set of code points, drawn uniformly, so the weight given above would be lost."""
    return st.lists(chars, min_size=min_size, max_size=max_size).map("".join)


any_text = text_of(any_char)

_JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63 - 2, max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | any_text | st.text()
)
# What json.loads can return: nested lists and objects of the above.
json_values = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4),
    max_leaves=12,
)


def large(fragments: st.SearchStrategy[str], *, max_chars: int) -> st.SearchStrategy[str]:
    """A short fragment repeated up to ``max_chars``: the large inputs at which a quadratic
    path misses its deadline (hypothesis alone makes short strings)."""
    return st.tuples(fragments.filter(bool), st.integers(min_value=1, max_value=max_chars)).map(
        lambda pair: (pair[0] * (pair[1] // len(pair[0]) + 1))[: pair[1]]
    )


# Numbers as text of any length, leading zeros included, often around the interpreter's limit:
# int() refuses strings of more than 4300 digits (ValueError), which a caller may not expect
# of "isdigit() then int()".
_LIMIT = sys.int_info.default_max_str_digits
_DIGIT_COUNTS = st.sampled_from([_LIMIT - 1, _LIMIT, _LIMIT + 1, 2 * _LIMIT]) | st.integers(1, 3 * _LIMIT)
long_digit_runs = st.tuples(_DIGIT_COUNTS, st.sampled_from("0123456789")).map(
    lambda pair: ("0" * (pair[0] - 1) + "1") if pair[1] == "0" else pair[1] * pair[0])


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[str], alphabet: st.SearchStrategy[str]) -> str:
    """A valid input with a few characters inserted, deleted or replaced: the near misses
    that reach deep into a parser before going wrong."""
    text = draw(valid)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        position = draw(st.integers(min_value=0, max_value=len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(alphabet)
        if action == "insert":
            text = text[:position] + piece + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + 1:]
        else:
            text = text[:position] + piece + text[position + 1:]
    return text


def chance(weight: int, out_of: int) -> st.SearchStrategy[bool]:
    """True about ``weight`` times in ``out_of``: ``sampled_from`` picks about uniformly, so
    repetition weighs (``st.integers`` leans towards its small values)."""
    return st.sampled_from([True] * weight + [False] * (out_of - weight))
