"""Tokens for a given API (RFC 8707 resource indicators, RFC 9068 aud) and who may introspect
them, over real TLS: resource servers registered with ``authz resources add``, clients allowed
some of them with ``authz clients add --resource``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.server import RunningServer, authz_cli, authz_cli_all
from tests.wire.client import WireClient, WireResponse, assert_oauth_error, assert_token_response, verified_token
from tests.wire.conftest import StartServer
from tests.wire.material import WirePKI, registrations

pytestmark = pytest.mark.wire

API_A = "https://a.api.test/"
API_B = "https://b.api.test/v1"
DEFAULT_AUDIENCE = "https://default.api.test"


@pytest.fixture(scope="module")
def audience_server(start_wire_server: StartServer, pki: WirePKI, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[RunningServer]:
    data_dir = tmp_path_factory.mktemp("audience-data")
    every = registrations(pki)

    def client(client_id: str, scope: str, *resources: str) -> list[str]:
        # The suite's registration of client_id (its certificate), with these scopes and resources.
        arguments = [a for a in every[client_id]]
        arguments[arguments.index("--scope") + 1] = scope
        return ["clients", "add", client_id, *arguments, *(f"--resource={r}" for r in resources)]

    authz_cli("resources", "add", API_A, "--scope", "read write", "--introspector", "dns-client",
              data_dir=data_dir)
    authz_cli_all([
        ["resources", "add", API_B, "--scope", "write admin"],
        client("dn-client", "read write", API_A),  # one resource: the default
        client("self-signed-client", "read write admin", API_A, API_B),  # several: must name one
        client("dns-client", "read"),  # API A's own client: introspects its tokens
        client("email-client", "read"),  # neither
    ], data_dir=data_dir)
    server = start_wire_server(data_dir, ["--audience", DEFAULT_AUDIENCE])
    yield server
    server.stop()


@pytest.fixture
def wire(audience_server: RunningServer, pki: WirePKI) -> WireClient:
    return WireClient("httpx", audience_server, pki.server_ca)


def eventually(request: Callable[[], WireResponse], status: int, within: float = 5.0,
               until: Callable[[WireResponse], bool] = lambda response: True) -> WireResponse:
    """Repeat ``request`` until it answers ``status`` (and ``until`` holds): the store's change
    reaches the server within its poll interval, 1 s."""
    deadline = time.monotonic() + within
    while True:
        response = request()
        if (response.status == status and until(response)) or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def claims_of(wire: WireClient, response_body: dict[str, object]) -> dict[str, object]:
    jwks = wire.get("/jwks").json()
    return verified_token(str(response_body["access_token"]), jwks)[1]


def test_a_client_allowed_one_resource_gets_it_by_default(wire: WireClient, pki: WirePKI) -> None:
    body = assert_token_response(wire.token(pki["dn-client"], "dn-client"))
    assert claims_of(wire, body)["aud"] == API_A
    assert body["scope"] == "read write"


def test_resource_selects_the_audience_and_cuts_the_scopes(wire: WireClient, pki: WirePKI) -> None:
    body = assert_token_response(wire.token(pki["self-signed-client"], "self-signed-client", resource=API_B))
    # Registered "read write admin"; API B owns "write admin": the token carries those.
    assert (claims_of(wire, body)["aud"], body["scope"]) == (API_B, "write admin")


def test_several_resources_make_an_audience_list(wire: WireClient, pki: WirePKI) -> None:
    form = [("grant_type", "client_credentials"), ("client_id", "self-signed-client"),
            ("resource", API_A), ("resource", API_B), ("scope", "read admin")]
    body = assert_token_response(wire.post("/token", pki["self-signed-client"], form))
    assert (claims_of(wire, body)["aud"], body["scope"]) == ([API_A, API_B], "read admin")


def test_a_client_allowed_several_must_name_one(wire: WireClient, pki: WirePKI) -> None:
    response = wire.token(pki["self-signed-client"], "self-signed-client")
    assert_oauth_error(response, 400, "invalid_target", "this client may get tokens for several resources: name "
                                                        "the one(s) wanted with the resource parameter (RFC 8707)")


@pytest.mark.parametrize(("resource", "description"), [
    (API_B, f"resource not allowed for this client: {API_B}"),
    ("https://unknown.api.test", "unknown resource: https://unknown.api.test"),
    ("not a uri", "resource not a uri contains characters a URI cannot (spaces, controls, non-ASCII: "
                  "percent-encode them)"),
    ("https://a.api.test/#frag", "resource https://a.api.test/#frag has a fragment, which RFC 8707 section 2 "
                                 "forbids"),
    ("api-a", "resource api-a is not an absolute URI (RFC 8707 section 2)"),
    ("https://[::1", "resource https://[::1 is not a valid URI (Invalid IPv6 URL)"),
])
def test_a_resource_the_client_cannot_have_is_invalid_target(wire: WireClient, pki: WirePKI, resource: str,
                                                              description: str) -> None:
    response = wire.token(pki["dn-client"], "dn-client", resource=resource)
    assert_oauth_error(response, 400, "invalid_target", description)
    [line] = [e for e in response.events if e.get("event") == "request_refused"]
    assert (line["error"], line["error_description"], line["client_id"], line["resource"]) == (
        "invalid_target", description, "dn-client", [resource])


def test_a_scope_outside_the_requested_resource_is_invalid_scope(wire: WireClient, pki: WirePKI) -> None:
    response = wire.token(pki["self-signed-client"], "self-signed-client", resource=API_B, scope="read")
    assert_oauth_error(response, 400, "invalid_scope", "scope not part of the requested resource: read")


def test_a_client_allowed_no_resource_gets_the_default_audience(wire: WireClient, pki: WirePKI) -> None:
    body = assert_token_response(wire.token(pki["email-client"], "email-client"))
    assert claims_of(wire, body)["aud"] == DEFAULT_AUDIENCE
    response = wire.token(pki["email-client"], "email-client", resource=API_A)
    assert_oauth_error(response, 400, "invalid_target", f"resource not allowed for this client: {API_A}")


def introspect(wire: WireClient, pki: WirePKI, who: str, token: str) -> dict[str, object]:
    response = wire.post("/introspect", pki[who], {"client_id": who, "token": token})
    assert response.status == 200, response.body
    return dict(response.json())


def test_introspection_by_the_token_s_client_or_its_api_s_introspectors_only(wire: WireClient,
                                                                             pki: WirePKI) -> None:
    token = str(assert_token_response(wire.token(pki["dn-client"], "dn-client"))["access_token"])
    assert introspect(wire, pki, "dn-client", token)["active"] is True  # its own client
    seen = introspect(wire, pki, "dns-client", token)  # API A's introspector
    assert (seen["active"], seen["aud"], seen["client_id"]) == (True, API_A, "dn-client")
    response = wire.post("/introspect", pki["email-client"], {"client_id": "email-client", "token": token})
    assert response.json() == {"active": False}  # RFC 7662 §4: nothing to anyone else
    [refused] = [e for e in response.events if e.get("event") == "introspection_refused"]
    assert (refused["client_id"], refused["token_client_id"], refused["aud"]) == ("email-client", "dn-client",
                                                                                   [API_A])


def test_tokens_for_the_default_audience_are_introspected_by_their_client_only(wire: WireClient,
                                                                                pki: WirePKI) -> None:
    token = str(assert_token_response(wire.token(pki["email-client"], "email-client"))["access_token"])
    assert introspect(wire, pki, "email-client", token)["active"] is True
    assert introspect(wire, pki, "dns-client", token) == {"active": False}


def test_a_resource_server_removed_is_no_longer_a_target(wire: WireClient, pki: WirePKI,
                                                         audience_server: RunningServer) -> None:
    authz_cli("resources", "add", "https://temporary.api.test", "--scope", "read", data_dir=audience_server.data_dir)
    authz_cli("clients", "add", "uri-client", *[a for a in registrations(pki)["uri-client"]],
              "--resource", "https://temporary.api.test", "--replace", data_dir=audience_server.data_dir)
    eventually(lambda: wire.token(pki["uri-client"], "uri-client"), 200)
    authz_cli("resources", "remove", "https://temporary.api.test", data_dir=audience_server.data_dir)
    refused = eventually(lambda: wire.token(pki["uri-client"], "uri-client"), 400)
    assert_oauth_error(refused, 400, "invalid_target", "unknown resource: https://temporary.api.test")


def test_removing_a_client_ends_its_tokens(wire: WireClient, pki: WirePKI, audience_server: RunningServer) -> None:
    data_dir = audience_server.data_dir
    authz_cli("clients", "add", "ipv4-client", *registrations(pki)["ipv4-client"], f"--resource={API_A}",
              data_dir=data_dir)
    token = str(assert_token_response(eventually(lambda: wire.token(pki["ipv4-client"], "ipv4-client"), 200)
                                      )["access_token"])
    assert introspect(wire, pki, "dns-client", token)["active"] is True  # API A's introspector
    authz_cli("clients", "remove", "ipv4-client", data_dir=data_dir)
    assert eventually(lambda: wire.post("/introspect", pki["dns-client"], {"client_id": "dns-client", "token": token}),
                      200, until=lambda r: r.json() == {"active": False}).json() == {"active": False}
    eventually(lambda: wire.token(pki["ipv4-client"], "ipv4-client"), 401)
