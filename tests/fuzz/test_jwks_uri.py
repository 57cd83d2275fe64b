"""A registered jwks_uri is what the fetcher can use: every URL ``jwks_uri_problem`` accepts
parses with httpx (which fetches it) as https, with a host, no userinfo and no fragment; every
other value gets a reason, never an exception."""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from authz.clients.jwks_uri.uri import jwks_uri_problem
from tests.fuzz.profiles import budget
from tests.fuzz.strategies import any_text, json_values


def _rarely(usual: st.SearchStrategy[str], other: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``other`` one time in ten (``a | b`` would draw each half the time)."""
    return st.integers(0, 9).flatmap(lambda n: other if n == 0 else usual)


# Each piece is mostly valid, so that most examples have one thing wrong, or none, and reach
# the checks behind the first ones.
_PIECES = {
    "scheme": st.sampled_from(["https://"] * 6 + ["HTTPS://", "http://", "https:", "https:/", "//", "", "file://",
                                                  "https:\\\\"]),
    "userinfo": st.sampled_from([""] * 8 + ["user@", "user:pass@", "@", "a%40b@", "good.example\\@"]),
    "host": _rarely(st.sampled_from(["keys.example", "KEYS.example", "127.0.0.1", "[::1]", "[2001:db8::1]", "[::1",
                                     "::1", "xn--bcher-kva.example", "bücher.example", "", "a..b", "-x-.example",
                                     "[v1.x]", "256.1.1.1", "1.2.3.4.5", "[::1%25eth0]", "0x7f.1", "%6b.example",
                                     "keys.example."]), any_text),
    "port": st.sampled_from([""] * 4 + [":443", ":8443", ":0", ":65536", ":-1", ":x", ":", ": 1"]),
    "path": _rarely(st.sampled_from(["", "/", "/jwks", "/jwks.json", "/a b", "/%zz", "/é", "\\x"]), any_text),
    "query": st.sampled_from(["", "", "?client=1", "?", "?a=#"]),
    "fragment": st.sampled_from([""] * 8 + ["#", "#x"]),
}


@st.composite
def uris(draw: st.DrawFn) -> str:
    return "".join(draw(_PIECES[name]) for name in _PIECES)


@budget(1000)
@given(uris() | any_text | json_values)
def test_an_accepted_jwks_uri_is_an_https_url_httpx_fetches_as_checked(value: Any) -> None:
    problem = jwks_uri_problem(value)
    if problem is not None:
        assert isinstance(problem, str) and problem
        return
    url = httpx.URL(value)  # raises if the fetcher could not use it
    assert url.scheme == "https"
    assert url.raw_host and not url.userinfo and not url.fragment
    assert url.port is None or 0 < url.port < 65536
