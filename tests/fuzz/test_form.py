"""The form body of /token, /introspect and /revoke: ``read_form`` (framing headers, the body
read in chunks) and ``parse_form`` (the urlencoded parser).

Properties: any body is a form or ``MalformedForm``; where the body is well-formed the result is
``urllib.parse.parse_qsl``'s (blank values kept), which the docstring claims parity with, save
for the documented refusals (invalid UTF-8, a repeated name); what ``urlencode`` writes reads
back; no more than ``MAX_FORM_BYTES`` is ever read, whatever the headers say; and a form of
thousands of fields parses in linear time."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode

from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import Headers

from authz.oauth.request import MAX_FORM_BYTES, ClientDisconnected, MalformedForm, parse_form, read_form
from tests.fuzz.profiles import budget
from tests.fuzz.strategies import chance, large, long_digit_runs, text_of

# Bytes that matter to the parser, drawn often: separators, escapes, invalid UTF-8.
_FORM_PIECES = st.sampled_from([b"&", b"=", b"+", b"%", b"%2", b"%25", b"%26", b"%3D", b"%C3%A9", b"%ff", b"%c3",
                                b"%ED%A0%80", b"\xff", b"\xc3", b"\xc3\xa9", b"a", b"client_id", b"grant_type",
                                b" ", b";", b"\x00"])
_FIELD_NAMES = st.sampled_from([b"a", b"b", b"client_id", b"grant_type", b"", b"%61", b"a+b", b"a%20b"])
_FIELD_VALUES = st.lists(st.sampled_from([b"x", b"1", b"+", b"%20", b"%3D", b"%26", b"%C3%A9", b"=", b"%", b"%zz"])
                         | _FORM_PIECES, max_size=4).map(b"".join)


@st.composite
def _fields(draw: st.DrawFn) -> bytes:
    """name[=value] fields joined by "&": names from a small pool, so some repeat."""
    fields = [draw(_FIELD_NAMES) + (b"=" + draw(_FIELD_VALUES) if draw(chance(4, 5)) else b"")
              for _ in range(draw(st.integers(0, 6)))]
    return draw(st.sampled_from([b"&", b"&", b"&", b"&&"])).join(fields)


bodies = _fields() | _fields() | st.lists(_FORM_PIECES | st.binary(max_size=3), max_size=40).map(b"".join) \
    | st.binary(max_size=200)


def _parse(body: bytes) -> dict[str, str] | None:
    try:
        form = parse_form(body)
    except MalformedForm:
        return None
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in form.items())
    return form


@budget(600)
@given(bodies)
def test_any_body_is_a_form_or_malformed_and_agrees_with_parse_qsl(body: bytes) -> None:
    form = _parse(body)
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        assert form is None, body  # invalid UTF-8, raw or percent-encoded: refused, not replaced
        return
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        assert form is None, body  # a repeated parameter (RFC 6749 §3.2)
    else:
        assert form == dict(pairs), body


_NAMES = st.sampled_from(["grant_type", "client_id", "scope", "token", "token_type_hint", ""]) | st.text(max_size=12)


@budget(300)
@given(st.dictionaries(_NAMES, text_of(st.characters(exclude_categories=("Cs",)), max_size=30), max_size=8),
       st.booleans())
def test_what_urlencode_writes_reads_back(form: dict[str, str], quote_via_plus: bool) -> None:
    body = urlencode(form, quote_via=quote_plus if quote_via_plus else quote).encode("ascii")
    assert parse_form(body) == form


@budget(60)
@given(large(st.sampled_from(["a=1&", "a", "&", "=", "%41", "+", "x=%C3%A9&", "%", "a=b=c&"]), max_chars=MAX_FORM_BYTES)
       | st.integers(1, MAX_FORM_BYTES // 8).map(lambda n: "&".join(f"p{i}=v" for i in range(n))[:MAX_FORM_BYTES]))
def test_the_largest_forms_parse_in_linear_time(text: str) -> None:
    # Up to 16 KiB (the most read_form reads) and thousands of distinct fields, within the deadline.
    _parse(text.encode())


# --- read_form: the framing headers and the body as it arrives -----------------------------------

_FORM_TYPES = st.sampled_from([
    b"application/x-www-form-urlencoded", b"Application/X-WWW-Form-URLEncoded ", b"application/x-www-form-urlencoded;",
    b"application/x-www-form-urlencoded; charset=utf-8", b"application/x-www-form-urlencoded;charset=\"UTF8\"",
    b"application/x-www-form-urlencoded; charset=latin-1", b"application/x-www-form-urlencoded; charset",
    b"application/x-www-form-urlencoded; a=b; charset=utf-8; charset=x",
])
_OTHER_TYPES = st.sampled_from([b"application/json", b"multipart/form-data; boundary=x", b"text/plain", b"", b";",
                                b"\xff\x00"]) | st.binary(max_size=40)
_LENGTHS = st.integers(min_value=-5, max_value=10 * MAX_FORM_BYTES).map(lambda n: str(n).encode())
_ODD_LENGTHS = long_digit_runs.map(str.encode) | st.binary(max_size=12) | st.sampled_from(
    [b"\xb2", b"1_0", b" 1", b"+1"])
_TRANSFER_CODINGS = st.sampled_from([b"chunked", b"Chunked", b"", b",", b"chunked, "])
_OTHER_CODINGS = st.sampled_from([b"gzip", b"chunked, gzip", b"br", b"identity, gzip"]) | st.binary(max_size=12)


@st.composite
def framing(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    """Framing headers as an ASGI server hands them over (lowercase names), weighted towards
    what gets past the first checks (so that the later ones are reached), each sometimes
    absent or repeated, among unrelated ones."""

    def weighted(*choices: tuple[int, st.SearchStrategy[bytes] | None]) -> list[bytes]:
        roll = draw(st.integers(0, sum(weight for weight, _ in choices) - 1))
        for weight, strategy in choices:
            if roll < weight:
                return [] if strategy is None else [draw(strategy) for _ in range(draw(st.sampled_from([1, 1, 1, 2])))]
            roll -= weight
        raise AssertionError

    headers = [(b"content-type", v) for v in weighted((7, _FORM_TYPES), (2, _OTHER_TYPES), (1, None))]
    headers += [(b"content-length", v) for v in weighted((4, _LENGTHS), (4, _ODD_LENGTHS), (2, None))]
    headers += [(b"content-encoding", v) for v in weighted((6, None), (1, st.just(b"identity")), (3, _OTHER_CODINGS))]
    headers += [(b"transfer-encoding", v) for v in weighted((6, None), (2, _TRANSFER_CODINGS), (2, _OTHER_CODINGS))]
    headers += draw(st.lists(st.tuples(st.binary(min_size=1, max_size=10).map(bytes.lower), st.binary(max_size=20)),
                             max_size=3))
    return draw(st.permutations(headers))


@st.composite
def chunked(draw: st.DrawFn) -> list[bytes]:
    """A body (sometimes past the limit) cut into the chunks ASGI ``receive`` returns."""
    body = draw(bodies | large(st.sampled_from(["a=1&", "x"]), max_chars=3 * MAX_FORM_BYTES).map(str.encode))
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=6)))
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]


def _read(headers: list[tuple[bytes, bytes]], chunks: list[bytes], disconnect: bool) -> tuple[Any, int]:
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                                      for i, c in enumerate(chunks)]
    if disconnect:
        messages[-1]["more_body"] = True
    delivered = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not messages:
            return {"type": "http.disconnect"}
        message = messages.pop(0)
        delivered += len(message["body"])
        return message

    # receive() never suspends: the coroutine runs to its end on the first send, no loop needed.
    reading = read_form(Headers(raw=headers), receive)
    try:
        reading.send(None)
    except StopIteration as done:
        return done.value, delivered
    except (MalformedForm, ClientDisconnected) as refusal:
        return refusal, delivered
    raise AssertionError("read_form waited for something other than receive()")


@budget(300)
@given(framing(), chunked(), st.booleans())
def test_read_form_only_refuses_and_never_reads_past_the_limit(headers: list[tuple[bytes, bytes]],
                                                               chunks: list[bytes], disconnect: bool) -> None:
    result, delivered = _read(headers, chunks, disconnect)
    body = b"".join(chunks)
    largest_chunk = max(len(c) for c in chunks)
    # At most one chunk beyond the limit is ever taken in, whatever Content-Length claims.
    assert delivered <= MAX_FORM_BYTES + largest_chunk
    if isinstance(result, dict):
        assert len(body) <= MAX_FORM_BYTES and not disconnect
        assert result == parse_form(body)
    elif isinstance(result, ClientDisconnected):
        assert disconnect
    elif len(body) > MAX_FORM_BYTES and "exceeds" not in str(result):
        # Refused before the size was reached: for its headers, and saying so.
        assert any(word in str(result) for word in ("x-www-form-urlencoded", "UTF-8", "Encoding")), result


@budget(200)
@given(_LENGTHS | _ODD_LENGTHS, st.binary(max_size=40))
def test_any_content_length_of_a_form_is_read_or_refused(length: bytes, body: bytes) -> None:
    # One header at a time as well: in the mix above, a given odd value of each rarely meets
    # values of the others that let it be reached.
    headers = [(b"content-type", b"application/x-www-form-urlencoded"), (b"content-length", length)]
    result, _ = _read(headers, [body], False)
    if isinstance(result, MalformedForm):
        assert "exceeds" in str(result) or "UTF-8" in str(result) or "repeated" in str(result), result
