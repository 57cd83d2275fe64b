"""RFC 6750 §3 rendering: header syntax stays valid whatever the description holds."""

from __future__ import annotations

import json
import re

import pytest

from authz_resource import InsufficientScope, InvalidRequest, InvalidToken, NoToken, VerificationUnavailable
from authz_resource.challenge import check_realm, render

# RFC 6750 §3: auth-param values are quoted strings of %x20-21 / %x23-5B / %x5D-7E.
QUOTED = r'"[\x20\x21\x23-\x5b\x5d-\x7e]*"'
CHALLENGE = re.compile(rf"Bearer realm={QUOTED}(, (error|error_description|scope)={QUOTED})*")


def headers_of(refusal: object) -> dict[bytes, bytes]:
    _, headers, _ = render(refusal, "api")  # type: ignore[arg-type]
    return dict(headers)


@pytest.mark.parametrize("refusal", [
    NoToken("r", "no token"),
    InvalidRequest("r", 'quote " backslash \\ newline \n and é'),
    InvalidToken("r", "x" * 1000),
    InsufficientScope(frozenset({"a:b", "c"}), frozenset()),
])
def test_challenges_are_well_formed(refusal: object) -> None:
    value = headers_of(refusal)[b"www-authenticate"].decode("ascii")
    assert CHALLENGE.fullmatch(value), value


def test_body_keeps_the_full_description() -> None:
    status, headers, body = render(InvalidToken("r", 'has "quotes"'), "api")
    assert status == 401 and json.loads(body) == {"error": "invalid_token", "error_description": 'has "quotes"'}
    assert dict(headers)[b"content-length"] == str(len(body)).encode()


def test_unavailable_has_no_challenge() -> None:
    status, headers, _ = render(VerificationUnavailable("r", "later"), "api")
    assert status == 503 and b"www-authenticate" not in dict(headers) and dict(headers)[b"retry-after"] == b"1"


@pytest.mark.parametrize("realm", ["", 'a"b', "a\\b", "é", "a\nb"])
def test_realm_must_be_quotable(realm: str) -> None:
    with pytest.raises(ValueError, match="realm"):
        check_realm(realm)
