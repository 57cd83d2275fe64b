"""Self-signed clients registered with jwks_uri, end to end: ``authz serve`` fetches their sets
from a real HTTPS server run by the test (its CA given with --jwks-uri-ca, loopback allowed with
--jwks-uri-allow), and clients get tokens over real TLS, through curl and httpx."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from authz.certificates.rejection import RejectionReason
from authz.clients.directory import ClientDirectory
from authz.storage.sqlite import SQLiteRecordStore
from tests.support.jwks_server import JwksPKI, JwksServer, Route, build_jwks_pki, jwk_set
from tests.support.pki import Issued, self_signed
from tests.support.server import RunningServer, authz_cli
from tests.wire.client import (
    WireClient,
    WireResponse,
    assert_invalid_client,
    assert_token_response,
    verified_token,
)
from tests.wire.conftest import StartServer
from tests.wire.material import Credentials, WirePKI

pytestmark = pytest.mark.wire

COOLDOWN = 2.0  # --jwks-uri-refresh-cooldown
FETCH_TIMEOUT = 1.0  # --jwks-uri-timeout
UNAVAILABLE = RejectionReason.JWKS_URI_UNAVAILABLE
# Each client's route on the JWKS server ("/<client_id>"), and what it answers at first.
ROUTES: dict[str, Route] = {}


@dataclass
class Setup:
    jwks: JwksServer
    allowed: RunningServer  # --jwks-uri-allow 127.0.0.1/32
    refusing: RunningServer  # the same store, no allow-list
    keys: dict[str, Issued]
    credentials: dict[str, Credentials]
    server_ca: Path

    def client(self, server: RunningServer | None = None, via: str = "httpx") -> WireClient:
        return WireClient(via, server or self.allowed, self.server_ca)


def _credentials(issued: Issued, directory: Path, name: str) -> Credentials:
    cert, key = issued.write(directory, name)
    return Credentials(cert, key, issued.der)


@pytest.fixture(scope="module")
def setup(start_wire_server: StartServer, pki: WirePKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("jwks-uri")
    jwks_pki: JwksPKI = build_jwks_pki(directory)
    keys = {name: self_signed(f"CN=jwks {name},O=authz tests") for name in
            ("a", "b", "rotated", "concurrent", *(f"random-{n}" for n in range(5)))}
    credentials = {name: _credentials(issued, directory, name) for name, issued in keys.items()}
    ROUTES.clear()
    ROUTES.update({
        "jwks-curl": Route(document=jwk_set(keys["a"])),
        "jwks-httpx": Route(document=jwk_set(keys["a"])),
        "jwks-rotating": Route(document=jwk_set(keys["a"])),
        "jwks-failing": Route(document=jwk_set(keys["a"])),
        "jwks-never": Route(mode="status", status=500),
        "jwks-slow": Route(document=jwk_set(keys["a"]), mode="slow", trickle=0.1),
        "jwks-huge": Route(mode="huge"),
        "jwks-redirect": Route(mode="redirect"),
        "jwks-concurrent": Route(document=jwk_set(keys["concurrent"]), delay=0.5),
        "jwks-loopback": Route(document=jwk_set(keys["a"])),
        "jwks-target": Route(document=jwk_set(keys["a"])),  # where jwks-redirect points
    })
    with JwksServer(jwks_pki.cert, jwks_pki.key) as jwks:
        for client_id, route in ROUTES.items():
            jwks.route(f"/{client_id}", route)
        ROUTES["jwks-redirect"].location = jwks.url("/jwks-target")
        data_dir = directory / "data"
        clients = [client_id for client_id in ROUTES if client_id != "jwks-target"]
        # One through the CLI (its --jwks-uri end to end), the others in-process: quicker.
        authz_cli("clients", "add", clients[0], "--auth-method", "self_signed_tls_client_auth",
                  "--jwks-uri", jwks.url(f"/{clients[0]}"), "--scope", "read", data_dir=data_dir)
        asyncio.run(_register(data_dir, {client_id: jwks.url(f"/{client_id}") for client_id in clients[1:]}))
        common = ["--jwks-uri-ca", str(jwks_pki.ca_file), "--jwks-uri-timeout", str(FETCH_TIMEOUT),
                  "--jwks-uri-refresh-cooldown", str(COOLDOWN), "--jwks-uri-max-bytes", "65536"]
        allowed = start_wire_server(data_dir, [*common, "--jwks-uri-allow", "127.0.0.1/32"])
        refusing = start_wire_server(data_dir, common)
        yield Setup(jwks, allowed, refusing, keys, credentials, pki.server_ca)
        allowed.stop()
        refusing.stop()


async def _register(data_dir: Path, uris: dict[str, str]) -> None:
    store = SQLiteRecordStore(data_dir)
    await store.open()
    try:
        for client_id, uri in uris.items():
            await ClientDirectory(store).register({
                "client_id": client_id, "token_endpoint_auth_method": "self_signed_tls_client_auth",
                "jwks_uri": uri, "scope": "read"})
    finally:
        await store.close()


def events(response: WireResponse, name: str) -> list[dict[str, Any]]:
    return [e for e in response.events if e.get("event") == name]


@pytest.mark.parametrize("via", ["curl", "httpx"])
def test_a_jwks_uri_client_gets_a_token_bound_to_its_certificate(setup: Setup, via: str) -> None:
    client_id = f"jwks-{via}"
    route = ROUTES[client_id]
    response = setup.client(via=via).token(setup.credentials["a"], client_id)
    body = assert_token_response(response)
    claims = verified_token(body["access_token"], setup.client().get("/jwks").json())[1]
    assert claims["client_id"] == client_id
    assert claims["cnf"] == {"x5t#S256": setup.credentials["a"].thumbprint}
    [fetched] = events(response, "jwks_uri_fetched")
    assert {k: fetched[k] for k in ("client_id", "uri", "keys", "status", "address")} == {
        "client_id": client_id, "uri": setup.jwks.url(f"/{client_id}"), "keys": 1, "status": 200,
        "address": "127.0.0.1"}
    assert fetched["ms"] < FETCH_TIMEOUT * 1000
    assert route.count == 1
    # The next token comes from the cached set.
    assert_token_response(setup.client(via=via).token(setup.credentials["a"], client_id))
    assert route.count == 1


def test_a_rotated_certificate_gets_a_token_after_the_refresh_within_the_rate_limit(setup: Setup) -> None:
    route = ROUTES["jwks-rotating"]
    client = setup.client()
    assert_token_response(client.token(setup.credentials["a"], "jwks-rotating"))
    fetched_at = time.monotonic()
    route.document = jwk_set(setup.keys["rotated"])  # the client rotates: a out, "rotated" in

    # Within the cooldown the new certificate cannot make the server fetch: refused.
    early = client.token(setup.credentials["rotated"], "jwks-rotating")
    assert time.monotonic() - fetched_at < COOLDOWN, "the machine is too slow for this test's cooldown"
    assert_invalid_client(early, RejectionReason.NOT_REGISTERED, "jwks-rotating")
    [skipped] = events(early, "jwks_uri_refresh_skipped")
    assert (skipped["reason"], skipped["client_id"], skipped["cached_keys"]) == ("cooldown", "jwks-rotating", 1)
    # Nor can any number of made-up certificates.
    for n in range(5):
        assert_invalid_client(client.token(setup.credentials[f"random-{n}"], "jwks-rotating"),
                              RejectionReason.NOT_REGISTERED, "jwks-rotating")
    assert route.count == 1

    time.sleep(max(0.0, fetched_at + COOLDOWN + 0.2 - time.monotonic()))
    rotated = client.token(setup.credentials["rotated"], "jwks-rotating")
    body = assert_token_response(rotated)
    assert events(rotated, "jwks_uri_fetched")[0]["keys"] == 1
    assert route.count == 2
    # The certificate rotated out is refused, and its refusal fetches nothing (cooldown).
    assert_invalid_client(client.token(setup.credentials["a"], "jwks-rotating"), RejectionReason.NOT_REGISTERED,
                          "jwks-rotating")
    assert route.count == 2
    assert body["token_type"] == "Bearer"


def test_while_the_uri_fails_the_last_good_set_is_used(setup: Setup) -> None:
    route = ROUTES["jwks-failing"]
    client = setup.client()
    assert_token_response(client.token(setup.credentials["a"], "jwks-failing"))
    fetched_at = time.monotonic()
    route.mode, route.status = "status", 503
    time.sleep(max(0.0, fetched_at + COOLDOWN + 0.2 - time.monotonic()))
    # An unknown certificate makes the server try again; the URI fails.
    unknown = client.token(setup.credentials["b"], "jwks-failing")
    assert_invalid_client(unknown, RejectionReason.NOT_REGISTERED, "jwks-failing")
    [failed] = events(unknown, "jwks_uri_fetch_failed")
    assert {k: failed[k] for k in ("client_id", "reason", "detail", "kept_keys", "level")} == {
        "client_id": "jwks-failing", "reason": "http_status", "detail": "HTTP 503", "kept_keys": 1,
        "level": "warning"}
    assert route.count == 2
    # The registered certificate still works, from the set kept.
    assert_token_response(client.token(setup.credentials["a"], "jwks-failing"))


def _refused_unavailable(setup: Setup, client_id: str, server: RunningServer | None = None,
                         ) -> tuple[WireResponse, dict[str, Any], float]:
    started = time.monotonic()
    response = setup.client(server).token(setup.credentials["a"], client_id)
    elapsed = time.monotonic() - started
    assert_invalid_client(response, UNAVAILABLE, client_id)
    [failed] = events(response, "jwks_uri_fetch_failed")
    assert failed["client_id"] == client_id and failed["kept_keys"] == 0
    assert response.failures()[0]["detail"].startswith("no certificate set could be fetched from https://")
    return response, failed, elapsed


def test_a_client_whose_set_was_never_fetched_is_refused_not_failed(setup: Setup) -> None:
    _, failed, _ = _refused_unavailable(setup, "jwks-never")
    assert (failed["reason"], failed["detail"]) == ("http_status", "HTTP 500")
    # Within the cooldown, the next request waits for nothing and fetches nothing.
    response = setup.client().token(setup.credentials["a"], "jwks-never")
    assert_invalid_client(response, UNAVAILABLE, "jwks-never")
    assert events(response, "jwks_uri_refresh_skipped")[0]["reason"] == "cooldown"
    assert ROUTES["jwks-never"].count == 1


def test_a_slow_uri_costs_the_request_no_more_than_the_time_limit(setup: Setup) -> None:
    _, failed, elapsed = _refused_unavailable(setup, "jwks-slow")
    assert (failed["reason"], failed["detail"]) == ("timeout", "no complete answer within 1 s")
    assert FETCH_TIMEOUT <= elapsed < FETCH_TIMEOUT + 2  # the slack is for a loaded machine


def test_a_huge_answer_is_cut_at_the_size_limit(setup: Setup) -> None:
    _, failed, _ = _refused_unavailable(setup, "jwks-huge")
    assert (failed["reason"], failed["detail"]) == ("too_large", "the answer is over 65536 bytes")
    deadline = time.monotonic() + 5
    while not ROUTES["jwks-huge"].aborted:  # the server sees its connection closed
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert ROUTES["jwks-huge"].aborted[0] < ROUTES["jwks-huge"].huge_bytes


def test_a_redirect_is_refused_and_not_followed(setup: Setup) -> None:
    _, failed, _ = _refused_unavailable(setup, "jwks-redirect")
    assert failed["reason"] == "redirect_refused"
    assert failed["detail"].startswith(f"HTTP 302 to {setup.jwks.url('/jwks-target')}")
    assert ROUTES["jwks-target"].count == 0


def test_loopback_is_refused_without_the_allow_list_and_never_contacted(setup: Setup) -> None:
    connections = setup.jwks.connections
    _, failed, _ = _refused_unavailable(setup, "jwks-loopback", setup.refusing)
    assert (failed["reason"], failed["detail"]) == (
        "destination_refused", "127.0.0.1: 127.0.0.1 is loopback; not in --jwks-uri-allow")
    assert setup.jwks.connections == connections
    assert ROUTES["jwks-loopback"].count == 0


def test_concurrent_requests_share_one_fetch(setup: Setup) -> None:
    # The set takes 0.5 s to come: every request arrives while it is on its way.
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: setup.client().token(setup.credentials["concurrent"], "jwks-concurrent"),
                                  range(8)))
    for response in responses:
        assert_token_response(response)
    assert ROUTES["jwks-concurrent"].count == 1
