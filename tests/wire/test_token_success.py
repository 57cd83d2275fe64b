"""Tokens for every client authentication method and every registered subject parameter."""

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.wire.client import WireClient, assert_token_response, verified_token
from tests.wire.material import WirePKI

pytestmark = pytest.mark.wire

# (client_id, the certificate it presents, the scope it registered)
CLIENTS = [
    ("dn-client", "dn-client", "read write"),
    ("dns-client", "dns-client", "read"),
    ("uri-client", "uri-client", "read"),
    ("ipv4-client", "ipv4-client", "read"),
    # IPv6 in two textual forms: registered 2001:db8::1, certificate made from
    # 2001:0db8:0:0:0:0:0:1; and registered 2001:0DB8:0000:...:0001, certificate from 2001:db8::1.
    ("ipv6-short-client", "ipv6-short-client", "read"),
    ("ipv6-long-client", "ipv6-long-client", "read"),
    ("email-client", "email-client", "read"),
    ("self-signed-client", "self-signed-client", "read write"),
    ("two-certs-client", "two-certs-client", "read"),
    ("two-certs-client", "two-certs-client-b", "read"),
    ("self-signed-ca-client", "self-signed-ca-client", "read"),
]


@pytest.mark.parametrize(("client_id", "cert", "scope"), CLIENTS, ids=[f"{c[0]}:{c[1]}" for c in CLIENTS])
def test_token_is_issued_and_bound_to_the_presented_certificate(
    wire: WireClient, pki: WirePKI, jwks: dict[str, Any], client_id: str, cert: str, scope: str
) -> None:
    before = int(time.time())
    body = assert_token_response(wire.token(pki[cert], client_id))
    assert body["scope"] == scope  # no scope requested: every registered scope
    header, claims = verified_token(body["access_token"], jwks)
    assert header == {"alg": "ES256", "typ": "at+jwt", "kid": jwks["keys"][0]["kid"]}
    issuer = wire.server.base_url
    assert claims["iss"] == issuer and claims["aud"] == issuer
    assert claims["sub"] == client_id and claims["client_id"] == client_id
    assert claims["scope"] == scope
    assert before - 1 <= claims["iat"] <= time.time() + 1
    assert claims["exp"] == claims["iat"] + body["expires_in"]
    assert len(claims["jti"]) >= 16
    assert claims["cnf"] == {"x5t#S256": pki[cert].thumbprint}


def test_requested_scopes_are_granted(wire: WireClient, pki: WirePKI, jwks: dict[str, Any]) -> None:
    body = assert_token_response(wire.token(pki["dn-client"], "dn-client", scope="write"))
    assert body["scope"] == "write"
    assert verified_token(body["access_token"], jwks)[1]["scope"] == "write"


def test_unbound_client_gets_a_token_without_cnf(wire: WireClient, pki: WirePKI, jwks: dict[str, Any]) -> None:
    body = assert_token_response(wire.token(pki["unbound-client"], "unbound-client"))
    claims = verified_token(body["access_token"], jwks)[1]
    assert claims["client_id"] == "unbound-client"
    assert "cnf" not in claims


def test_every_token_has_its_own_jti(wire: WireClient, pki: WirePKI, jwks: dict[str, Any]) -> None:
    tokens = [assert_token_response(wire.token(pki["self-signed-client"], "self-signed-client"))
              for _ in range(2)]
    first, second = (verified_token(t["access_token"], jwks)[1] for t in tokens)
    assert first["jti"] != second["jti"]


def test_concurrent_clients_each_get_their_own_token(wire: WireClient, pki: WirePKI, jwks: dict[str, Any]) -> None:
    # Tokens requested in the same event-loop turn are signed together
    # (authz.tokens.signature_batch): none may reach another request.
    requests = [("dn-client", "dn-client"), ("self-signed-client", "self-signed-client"),
                ("two-certs-client", "two-certs-client-b"), ("ipv4-client", "ipv4-client")] * 4
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        bodies = list(pool.map(lambda r: assert_token_response(wire.token(pki[r[1]], r[0])), requests))
    jtis = set()
    for (client_id, cert), body in zip(requests, bodies, strict=True):
        claims = verified_token(body["access_token"], jwks)[1]
        assert claims["client_id"] == client_id
        assert claims["cnf"] == {"x5t#S256": pki[cert].thumbprint}
        jtis.add(claims["jti"])
    assert len(jtis) == len(requests)


def test_metadata_and_jwks_are_served(wire: WireClient) -> None:
    metadata = wire.get("/.well-known/oauth-authorization-server")
    assert metadata.status == 200
    document = metadata.json()
    issuer = wire.server.base_url
    assert document["issuer"] == issuer
    assert document["token_endpoint"] == issuer + "/token"
    assert document["jwks_uri"] == issuer + "/jwks"
    assert document["token_endpoint_auth_methods_supported"] == ["tls_client_auth", "self_signed_tls_client_auth"]
    assert document["tls_client_certificate_bound_access_tokens"] is True
    jwks = wire.get("/jwks").json()
    assert [(k["kty"], k["crv"], k["alg"], k["use"]) for k in jwks["keys"]] == [("EC", "P-256", "ES256", "sig")]
    assert all("d" not in k for k in jwks["keys"])
