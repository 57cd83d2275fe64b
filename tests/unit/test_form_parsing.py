"""The token endpoints' form parser against the standard library's, on generated input."""

import random
import re
from urllib.parse import parse_qsl, quote_plus, unquote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import Headers

from authz.oauth.percent_decoding import percent_decoded
from authz.oauth.request import MalformedForm, parse_form, read_form

FORM = "application/x-www-form-urlencoded"

_ALPHABET = ["a", "b", "=", "&", "+", "%", "%2", "%41", "%3D", "%26", "%C3%A9", "%ZZ", "é", " ", "_", "grant_type"]


def _reference(body: bytes) -> dict[str, str]:
    """parse_qsl in the mode the WHATWG parser matches, plus RFC 6749's refusals."""
    pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise MalformedForm("repeated")
        form[name] = value
    return form


def _outcome(parse: object, body: bytes) -> object:
    try:
        return parse(body)  # type: ignore[operator]
    except (MalformedForm, UnicodeDecodeError):
        return "refused"


def test_generated_forms_parse_as_the_standard_library_does() -> None:
    rng = random.Random(8705)
    for _ in range(20000):
        body = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 12))).encode()
        assert _outcome(parse_form, body) == _outcome(_reference, body), body


def _decoding(decode: object, text: str) -> object:
    try:
        return decode(text)  # type: ignore[operator]
    except UnicodeDecodeError:
        return "refused"


# Escapes valid and not (any case, stray "%", truncated), UTF-8 sequences whole and cut,
# raw non-ASCII text, "+".
_PIECES = st.sampled_from(["%", "%2", "%2f", "%2F", "%3A", "%zz", "%C3", "%A9", "%c3%a9", "%E2%82%AC", "%FF",
                           "%00", "%25", "+", "é", "€", "a", "/", " "])


@given(st.lists(_PIECES, max_size=12).map("".join))
def test_percent_decoding_is_the_standard_librarys(text: str) -> None:
    assert _decoding(percent_decoded, text) == _decoding(lambda t: unquote_plus(t, errors="strict"), text)


@pytest.mark.parametrize(("text", "expected"), [
    ("https%3A%2F%2Fapi.example%2Fv1", "https://api.example/v1"),
    ("read+write", "read write"),
    ("100%", "100%"),
    ("%c3%A9t%C3%a9", "été"),
    ("%", "%"),
])
def test_percent_decoding(text: str, expected: str) -> None:
    assert percent_decoded(text) == expected


@pytest.mark.parametrize(("body", "expected"), [
    (b"grant_type=client_credentials&client_id=pki", {"grant_type": "client_credentials", "client_id": "pki"}),
    (b"scope=read+write&client_id=a%2Bb", {"scope": "read write", "client_id": "a+b"}),
    (b"a=1&&b=2&", {"a": "1", "b": "2"}),
    (b"flag&x==y", {"flag": "", "x": "=y"}),
    (("name=" + quote_plus("é & ü")).encode(), {"name": "é & ü"}),
    (b"", {}),
])
def test_forms(body: bytes, expected: dict[str, str]) -> None:
    assert parse_form(body) == expected


@pytest.mark.parametrize(("body", "message"), [
    (b"client_id=\xff", "not valid URL-encoded UTF-8"),
    (b"client_id=%FF", "not valid URL-encoded UTF-8"),
    (b"%FF=x", "not valid URL-encoded UTF-8"),
    (b"client_id=a&client_id=a", "parameter client_id is repeated"),
    (b"client_id=a&client%5Fid=b", "parameter client_id is repeated"),
])
def test_refused_forms(body: bytes, message: str) -> None:
    with pytest.raises(MalformedForm, match=message):
        parse_form(body)


async def _read(headers: dict[str, str], body: bytes = b"grant_type=client_credentials") -> dict[str, str]:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    return await read_form(Headers(headers), receive)


@pytest.mark.parametrize(("headers", "message"), [
    ({"content-type": f"{FORM}; charset=utf-16"}, "the form must be UTF-8 (charset=utf-8, or no charset)"),
    ({"content-type": f"{FORM}; charset=ISO-8859-1"}, "the form must be UTF-8 (charset=utf-8, or no charset)"),
    ({"content-type": FORM, "content-encoding": "gzip"},
     "Content-Encoding is not supported: send the form uncompressed"),
    ({"content-type": FORM, "transfer-encoding": "gzip, chunked"},
     "Transfer-Encoding other than chunked is not supported"),
], ids=["utf-16", "latin-1", "gzip", "te-gzip"])
async def test_bodies_that_would_be_misread_are_refused(headers: dict[str, str], message: str) -> None:
    with pytest.raises(MalformedForm, match=f"^{re.escape(message)}$"):
        await _read(headers)


@pytest.mark.parametrize("headers", [
    {"content-type": f'{FORM}; charset="UTF-8"'},
    {"content-type": f"{FORM};charset=utf8"},
    {"content-type": FORM, "content-encoding": "identity", "transfer-encoding": "chunked"},
], ids=["quoted", "utf8", "identity-chunked"])
async def test_bodies_read_as_sent(headers: dict[str, str]) -> None:
    assert await _read(headers) == {"grant_type": "client_credentials"}
