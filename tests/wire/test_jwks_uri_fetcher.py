"""One fetch of a jwks_uri (authz.clients.jwks_uri.fetcher) against real HTTPS servers on
loopback: the limits, the refusals, and the address pinning against DNS rebinding."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterator, Sequence

import pytest

from authz.clients.jwks_uri.destinations import AddressPolicy, IPAddress, parse_allow_list
from authz.clients.jwks_uri.fetcher import (
    DEFAULT_MAX_AGE,
    MAX_KEYS,
    JwksFetcher,
    JwksFetchFailed,
    Resolver,
    system_resolver,
    tls_context,
)
from authz.clients.model import jwk_for_certificate
from tests.support.jwks_server import JWKS_HOST, JwksPKI, JwksServer, Route, build_jwks_pki, jwk_set
from tests.support.pki import Issued, self_signed

pytestmark = pytest.mark.wire

# Generous, so that a loaded machine does not turn other failures into timeouts; the test of the
# limit itself uses SHORT_TIMEOUT.
TIMEOUT = 10.0
SHORT_TIMEOUT = 1.0
MAX_BYTES = 64 * 1024
LOOPBACK = ipaddress.ip_address("127.0.0.1")
INTERNAL = ipaddress.ip_address("127.0.0.2")  # stands for a service the server must not reach


@pytest.fixture(scope="module")
def jwks_pki(tmp_path_factory: pytest.TempPathFactory) -> JwksPKI:
    return build_jwks_pki(tmp_path_factory.mktemp("jwks-pki"))


@pytest.fixture(scope="module")
def server(jwks_pki: JwksPKI) -> Iterator[JwksServer]:
    with JwksServer(jwks_pki.cert, jwks_pki.key) as running:
        yield running


@pytest.fixture(scope="module")
def internal(jwks_pki: JwksPKI, server: JwksServer) -> Iterator[JwksServer]:
    """A server on 127.0.0.2, on the same port: where a rebound name would lead."""
    with JwksServer(jwks_pki.cert, jwks_pki.key, host=str(INTERNAL), port=server.port) as running:
        yield running


@pytest.fixture(scope="module")
def keys() -> tuple[Issued, Issued]:
    return self_signed("CN=jwks client A,O=authz tests"), self_signed("CN=jwks client B,O=authz tests")


class ScriptedDNS:
    """A DNS server under the test's control: answers ``answers[n]`` to the n-th question (the
    last one again after that), and counts the questions."""

    def __init__(self, *answers: Sequence[IPAddress]) -> None:
        self.answers = answers
        self.questions: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[IPAddress]:
        self.questions.append((host, port))
        return self.answers[min(len(self.questions), len(self.answers)) - 1]


def fetcher(jwks_pki: JwksPKI, allow: Sequence[str] = ("127.0.0.1/32",), *, test_ca: bool = True,
            resolver: Resolver = system_resolver, timeout: float = TIMEOUT) -> JwksFetcher:
    """A fetcher trusting the test CA (the system's CAs without ``test_ca``), allowing ``allow``."""
    return JwksFetcher(AddressPolicy(parse_allow_list(allow)),
                       ssl_context=tls_context(jwks_pki.ca_file if test_ca else None),
                       timeout=timeout, max_bytes=MAX_BYTES, resolver=resolver)


async def failure(fetch: JwksFetcher, uri: str) -> JwksFetchFailed:
    with pytest.raises(JwksFetchFailed) as raised:
        await fetch.fetch(uri)
    return raised.value


async def test_the_set_is_fetched_with_its_certificates(jwks_pki: JwksPKI, server: JwksServer,
                                                        keys: tuple[Issued, Issued]) -> None:
    route = server.route("/ok", Route(document=jwk_set(*keys)))
    fetched = await fetcher(jwks_pki).fetch(server.url("/ok"))
    assert fetched.certificates == {keys[0].der, keys[1].der}
    assert (fetched.keys, fetched.status, fetched.address, fetched.max_age) == (2, 200, "127.0.0.1", DEFAULT_MAX_AGE)
    [request] = route.requests
    assert request["host"] == f"127.0.0.1:{server.port}"
    assert request["accept-encoding"] == "identity"
    assert "application/jwk-set+json" in request["accept"]


@pytest.mark.parametrize(("cache_control", "max_age"), [
    (None, DEFAULT_MAX_AGE),
    ("max-age=600", 600.0),
    ("public, max-age=7200", 7200.0),
    ('max-age="900"', 900.0),
    ("max-age=10", 300.0),  # at least 5 minutes: a server cannot make us fetch on every request
    ("max-age=0", 300.0),
    ("no-cache", 300.0),
    ("no-store", 300.0),
    ("max-age=31536000", 86_400.0),  # at most a day: a set cannot pin itself for a year
    ("max-age=99999999999999999999999", 86_400.0),
    ("max-age=soon", DEFAULT_MAX_AGE),
])
async def test_max_age_follows_cache_control_within_bounds(jwks_pki: JwksPKI, server: JwksServer,
                                                           keys: tuple[Issued, Issued], cache_control: str | None,
                                                           max_age: float) -> None:
    headers = {"Cache-Control": cache_control} if cache_control else {}
    server.route("/cache", Route(document=jwk_set(keys[0]), headers=headers))
    assert (await fetcher(jwks_pki).fetch(server.url("/cache"))).max_age == max_age


async def test_loopback_without_the_allow_list_is_never_connected_to(jwks_pki: JwksPKI, server: JwksServer,
                                                                     keys: tuple[Issued, Issued]) -> None:
    route = server.route("/refused", Route(document=jwk_set(keys[0])))
    connections = server.connections
    refused = await failure(fetcher(jwks_pki, allow=()), server.url("/refused"))
    assert refused.reason == "destination_refused"
    assert refused.detail == "127.0.0.1: 127.0.0.1 is loopback; not in --jwks-uri-allow"
    # A name leading there is refused the same way.
    by_name = await failure(fetcher(jwks_pki, allow=(), resolver=ScriptedDNS([LOOPBACK])),
                            f"https://{JWKS_HOST}:{server.port}/refused")
    assert by_name.detail == f"{JWKS_HOST}: 127.0.0.1 is loopback; not in --jwks-uri-allow"
    assert server.connections == connections and route.count == 0


@pytest.mark.parametrize("host", ["127.1", "0x7f.0.0.1", "2130706433", "017700000001", "localhost", "[::1]",
                                  "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "0.0.0.0", "[::]"])
async def test_other_spellings_of_loopback_are_refused_as_resolved(jwks_pki: JwksPKI, host: str) -> None:
    # The system resolver (inet_aton) reads "127.1" or "2130706433" as 127.0.0.1: what is
    # checked is the address, after resolution, not the spelling.
    refused = await failure(fetcher(jwks_pki, allow=()), f"https://{host}:1/jwks")
    assert refused.reason == "destination_refused"
    assert any(f"is {what}" in refused.detail for what in ("loopback", "IPv4-mapped form of 127.0.0.1", "unspecified"))


async def test_every_address_of_the_name_must_be_acceptable(jwks_pki: JwksPKI, server: JwksServer,
                                                           keys: tuple[Issued, Issued]) -> None:
    route = server.route("/mixed", Route(document=jwk_set(keys[0])))
    connections = server.connections
    resolver = ScriptedDNS([LOOPBACK, ipaddress.ip_address("10.0.0.7")])
    refused = await failure(fetcher(jwks_pki, resolver=resolver), f"https://{JWKS_HOST}:{server.port}/mixed")
    assert (refused.reason, refused.detail) == (
        "destination_refused", f"{JWKS_HOST}: 10.0.0.7 is private (RFC 1918); not in --jwks-uri-allow")
    assert server.connections == connections and route.count == 0


async def test_dns_rebinding_cannot_reach_a_refused_address(jwks_pki: JwksPKI, server: JwksServer,
                                                            internal: JwksServer, keys: tuple[Issued, Issued]) -> None:
    # The name first resolves to an allowed address, then to a refused one: a client that
    # checked one answer and let the connection resolve again would reach 127.0.0.2.
    route = server.route("/rebind", Route(document=jwk_set(keys[0])))
    internal_route = internal.route("/rebind", Route(document=jwk_set(keys[1])))
    resolver = ScriptedDNS([LOOPBACK], [INTERNAL])
    fetched = await fetcher(jwks_pki, resolver=resolver).fetch(f"https://{JWKS_HOST}:{server.port}/rebind")
    assert fetched.certificates == {keys[0].der} and fetched.address == "127.0.0.1"
    assert resolver.questions == [(JWKS_HOST, server.port)]  # asked once
    assert internal.connections == 0 and internal_route.count == 0
    # TLS and HTTP still speak to the name: SNI, Host, and the certificate checked against it.
    assert JWKS_HOST in server.server_names
    assert route.requests[-1]["host"] == f"{JWKS_HOST}:{server.port}"
    # And once the name leads to the refused address, nothing goes there either.
    refused = await failure(fetcher(jwks_pki, resolver=resolver), f"https://{JWKS_HOST}:{server.port}/rebind")
    assert refused.reason == "destination_refused" and "127.0.0.2 is loopback" in refused.detail
    assert internal.connections == 0


async def test_the_server_certificate_is_checked_against_the_name(jwks_pki: JwksPKI, server: JwksServer,
                                                                  keys: tuple[Issued, Issued]) -> None:
    server.route("/name", Route(document=jwk_set(keys[0])))
    # The address is right, the name is not the certificate's.
    wrong_name = await failure(fetcher(jwks_pki, resolver=ScriptedDNS([LOOPBACK])),
                               f"https://other.test:{server.port}/name")
    assert wrong_name.reason == "tls_failed" and "other.test" in wrong_name.detail
    assert "certificate verify failed" in wrong_name.detail
    # The system's CAs do not know the test CA: --jwks-uri-ca is what makes it trusted.
    untrusted = await failure(fetcher(jwks_pki, test_ca=False), server.url("/name"))
    assert untrusted.reason == "tls_failed" and "unable to get local issuer certificate" in untrusted.detail


async def test_a_redirect_is_refused_and_not_followed(jwks_pki: JwksPKI, server: JwksServer,
                                                      keys: tuple[Issued, Issued]) -> None:
    target = server.route("/target", Route(document=jwk_set(keys[0])))
    server.route("/moved", Route(mode="redirect", location=server.url("/target")))
    refused = await failure(fetcher(jwks_pki), server.url("/moved"))
    assert refused.reason == "redirect_refused"
    assert refused.detail.startswith(f"HTTP 302 to {server.url('/target')}; redirects are not followed")
    assert target.count == 0


async def test_a_slow_answer_is_cut_at_the_time_limit(jwks_pki: JwksPKI, server: JwksServer,
                                                      keys: tuple[Issued, Issued]) -> None:
    # One byte every 0.1 s: each read is quick, only the whole-fetch limit stops it.
    route = server.route("/slow", Route(document=jwk_set(*keys), mode="slow", trickle=0.1))
    started = time.monotonic()
    refused = await failure(fetcher(jwks_pki, timeout=SHORT_TIMEOUT), server.url("/slow"))
    elapsed = time.monotonic() - started
    assert (refused.reason, refused.detail) == ("timeout", "no complete answer within 1 s")
    assert SHORT_TIMEOUT <= elapsed < SHORT_TIMEOUT + 1.5  # the slack is for a loaded machine
    await _eventually(lambda: bool(route.aborted))  # the connection was closed on the server


async def test_a_huge_answer_is_not_read_past_the_limit(jwks_pki: JwksPKI, server: JwksServer) -> None:
    route = server.route("/huge", Route(mode="huge", huge_bytes=256 * 1024 * 1024))
    started = time.monotonic()
    refused = await failure(fetcher(jwks_pki), server.url("/huge"))
    assert (refused.reason, refused.detail) == ("too_large", f"the answer is over {MAX_BYTES} bytes")
    assert time.monotonic() - started < 5  # well before the 256 MiB could have come
    await _eventually(lambda: bool(route.aborted))
    assert route.aborted[0] < 64 * 1024 * 1024  # what the socket buffers took, not the 256 MiB


async def test_a_declared_length_over_the_limit_is_refused_unread(jwks_pki: JwksPKI, server: JwksServer) -> None:
    server.route("/long", Route(mode="raw", body=b" " * (MAX_BYTES + 1)))
    refused = await failure(fetcher(jwks_pki), server.url("/long"))
    assert (refused.reason, refused.detail) == ("too_large",
                                                f"Content-Length {MAX_BYTES + 1} is over {MAX_BYTES} bytes")


def _jwk_without_x5c(issued: Issued) -> dict[str, object]:
    jwk = jwk_for_certificate(issued.cert)
    del jwk["x5c"]
    return jwk


ANSWERS = {
    "not-found": (Route(mode="status", status=404), "http_status", "HTTP 404"),
    "server-error": (Route(mode="status", status=503), "http_status", "HTTP 503"),
    "html": (Route(mode="raw", body=b"<html></html>", content_type="text/html"), "content_type",
             "Content-Type text/html; expected application/jwk-set+json or application/json"),
    "no-content-type": (Route(mode="raw", body=b"{}", content_type=""), "content_type", "Content-Type (none)"),
    "gzip": (Route(mode="raw", body=b"\x1f\x8b", content_type="application/json",
                   headers={"Content-Encoding": "gzip"}), "content_encoding", "Content-Encoding gzip"),
    "not-json": (Route(mode="raw", body=b"{keys: []}", content_type="application/json"), "not_json",
                 "JSONDecodeError"),
    "nested": (Route(mode="raw", body=b"[" * 60_000, content_type="application/json"), "not_json",
               "RecursionError"),
    "not-utf8": (Route(mode="raw", body=b'{"keys": "\xff"}', content_type="application/json"), "not_json",
                 "UnicodeDecodeError"),
    "no-answer": (Route(mode="close"), "http_failed", "RemoteProtocolError: Server disconnected"),
    "empty-set": (Route(document={"keys": []}), "invalid_jwks", "jwks must be a JWK Set with at least one key"),
    "not-a-set": (Route(mode="raw", body=b"[1]", content_type="application/json"), "invalid_jwks",
                  "jwks must be a JWK Set"),
}


@pytest.mark.parametrize(("name"), ANSWERS)
async def test_an_unusable_answer_is_a_failure_naming_the_problem(jwks_pki: JwksPKI, server: JwksServer,
                                                                  name: str) -> None:
    route, reason, fragment = ANSWERS[name]
    server.route(f"/answer-{name}", route)
    refused = await failure(fetcher(jwks_pki), server.url(f"/answer-{name}"))
    assert refused.reason == reason and fragment in refused.detail, refused


async def test_the_set_gets_the_validation_registered_jwks_get(jwks_pki: JwksPKI, server: JwksServer,
                                                               keys: tuple[Issued, Issued]) -> None:
    server.route("/no-x5c", Route(document={"keys": [jwk_for_certificate(keys[0].cert), _jwk_without_x5c(keys[1])]}))
    refused = await failure(fetcher(jwks_pki), server.url("/no-x5c"))
    assert (refused.reason, refused.detail) == ("invalid_jwks", "jwks.keys[1] has no x5c certificate")
    mismatched = jwk_for_certificate(keys[0].cert)
    mismatched["x5c"] = jwk_for_certificate(keys[1].cert)["x5c"]
    server.route("/mismatch", Route(document={"keys": [mismatched]}))
    refused = await failure(fetcher(jwks_pki), server.url("/mismatch"))
    assert refused.reason == "invalid_jwks" and "not the key of its x5c[0] certificate" in refused.detail


async def test_a_set_with_too_many_keys_is_refused_before_parsing_them(jwks_pki: JwksPKI, server: JwksServer,
                                                                      keys: tuple[Issued, Issued]) -> None:
    jwk = jwk_for_certificate(keys[0].cert)
    server.route("/many", Route(document={"keys": [jwk] * MAX_KEYS}))
    assert (await fetcher(jwks_pki).fetch(server.url("/many"))).keys == MAX_KEYS
    server.route("/too-many", Route(document={"keys": [{"x5c": ["not base64"]}] * (MAX_KEYS + 1)}))
    refused = await failure(fetcher(jwks_pki), server.url("/too-many"))
    assert (refused.reason, refused.detail) == ("too_many_keys",
                                                f"the set has {MAX_KEYS + 1} keys; at most {MAX_KEYS} are accepted")


async def test_names_that_do_not_resolve_and_ports_that_refuse(jwks_pki: JwksPKI) -> None:
    async def nxdomain(host: str, port: int) -> Sequence[IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    refused = await failure(fetcher(jwks_pki, resolver=nxdomain), "https://nowhere.test/jwks")
    assert (refused.reason, refused.detail) == ("dns_failed", "nowhere.test: [Errno -2] Name or service not known")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, not listening: the connection is refused
        refused = await failure(fetcher(jwks_pki), f"https://127.0.0.1:{port}/jwks")
    assert refused.reason == "connect_failed" and refused.detail.startswith("127.0.0.1 (127.0.0.1): ")


async def test_a_proxy_from_the_environment_is_not_used(jwks_pki: JwksPKI, server: JwksServer,
                                                        keys: tuple[Issued, Issued],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy would connect wherever it resolves the name to: the pinned address would be moot.
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    server.route("/proxied", Route(document=jwk_set(keys[0])))
    assert (await fetcher(jwks_pki).fetch(server.url("/proxied"))).certificates == {keys[0].der}


async def _eventually(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the condition did not come true"
        await asyncio.sleep(0.02)
