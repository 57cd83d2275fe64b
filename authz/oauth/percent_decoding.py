"""Percent-decoding of one ``application/x-www-form-urlencoded`` name or value.

``urllib.parse.unquote_plus`` gives the same result, but it splits the text with a regular
expression into ASCII and non-ASCII runs and decodes each through a generator: about 1.5 µs
for a resource URI such as ``https%3A%2F%2Fapi.example``, and several more inside a loaded
server (allocations, cold caches), where it made ``resource=`` requests measurably slower than
requests without it (issue 12 asks for at least 0.95 x). This does one ``split`` and one table
look-up per escape, and remembers the last short values it decoded: the same few resource
identifiers come back on almost every request, and a hit costs a dictionary look-up instead
of about 2 µs. ``tests/unit/test_form_parsing.py`` checks it against the standard library's
parser on generated input, refusals included.
"""

from __future__ import annotations

import functools

__all__ = ["percent_decoded"]

_HEX_DIGITS = "0123456789abcdefABCDEF"
# Every two-character escape, in any letter case, and its byte.
_BYTE_OF_ESCAPE = {high + low: bytes.fromhex(high + low) for high in _HEX_DIGITS for low in _HEX_DIGITS}

# The values remembered: anyone can send them, so both their number and their length are
# bounded (at most 256 x 512 characters, about 0.3 MB with the results). Longer values, rare in
# token requests, are decoded each time; so are refused ones (an exception is not remembered).
_REMEMBERED_VALUES = 256
_REMEMBERED_CHARS = 512


def percent_decoded(text: str) -> str:
    """``text`` with "+" as a space and each "%XX" as its byte, the bytes read as UTF-8.

    A "%" not followed by two hexadecimal digits stays as it is (as in the WHATWG parser).
    Raises ``UnicodeDecodeError`` when the decoded bytes are not UTF-8.
    """
    if len(text) <= _REMEMBERED_CHARS:
        return _remembered_decoding(text)
    return _decoded(text)


def _decoded(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    first, *escaped = text.split("%")
    decoded = [first.encode()]
    for piece in escaped:
        byte = _BYTE_OF_ESCAPE.get(piece[:2])
        if byte is None:
            decoded.append(b"%" + piece.encode())
        else:
            decoded.append(byte)
            decoded.append(piece[2:].encode())
    return b"".join(decoded).decode("utf-8")


_remembered_decoding = functools.lru_cache(maxsize=_REMEMBERED_VALUES)(_decoded)
