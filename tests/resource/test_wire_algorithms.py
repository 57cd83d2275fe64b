"""Algorithms and introspection answers over the wire: sample APIs over real TLS whose
authorization server is a ``StaticIssuer`` (real TLS too), which publishes keys the test
makes (RS256, PS256, EdDSA) and gives the introspection answers the test writes, such as
one without ``aud``, which ``authz serve`` never gives."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from tests.resource.fake_as import b64url, unsigned
from tests.resource.wire import API_AUDIENCE, Deployment, StaticIssuer, start_sample_api
from tests.support.server import RunningServer

pytestmark = pytest.mark.wire


class Setup:
    def __init__(self, deployment: Deployment, issuer: StaticIssuer) -> None:
        self.deployment = deployment
        self.issuer = issuer
        self.keys: dict[str, Key] = {}
        self.apis: dict[str, RunningServer] = {}

    def add_key(self, name: str, key: Key, alg: str | None) -> None:
        self.keys[name] = key
        self.issuer.publish(key, alg)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": self.issuer.url, "sub": "alice", "client_id": "alice", "aud": API_AUDIENCE, "iat": now,
                  "exp": now + 300, "jti": f"jti-{time.monotonic_ns()}", "scope": "accounts:read",
                  "cnf": {"x5t#S256": self.deployment.identities["alice"].thumbprint}}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, key_name: str, alg: str, **header: Any) -> str:
        key = self.keys[key_name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # EdDSA's name is deprecated (RFC 9864)
            return jwt.encode({"alg": alg, "typ": "at+jwt", "kid": key.thumbprint(), **header}, self.claims(), key,
                              algorithms=[alg])

    def call(self, api: str, token: str) -> Any:
        return self.deployment.call(api, "/accounts", who="alice", token=token)

    def refused(self, api: str, token: str, description: str) -> dict[str, Any]:
        """Asserts the 401 and its description; returns the API's log line for it."""
        server = self.deployment.apis[api]
        since = server.log_offset()
        response = self.call(api, token)
        assert response.status_code == 401, response.text
        assert response.json() == {"error": "invalid_token", "error_description": description}
        assert response.headers["www-authenticate"] == (
            f'Bearer realm="accounts", error="invalid_token", error_description="{description}"')
        [line] = [e for e in server.events(since) if e.get("event") == "bearer_token_refused"]
        assert line["error_description"] == description
        return line


@pytest.fixture(scope="module")
def setup(deployment: Deployment) -> Iterator[Setup]:
    tls = (deployment.directory / "server.crt", deployment.directory / "server.key")
    issuer = StaticIssuer(tls)
    result = Setup(deployment, issuer)
    rsa = RSAKey.generate_key(2048, private=True)
    result.add_key("rs256", rsa, "RS256")
    result.add_key("ps256", RSAKey.generate_key(2048, private=True), "PS256")
    result.add_key("eddsa", OKPKey.generate_key("Ed25519", private=True), "EdDSA")
    result.add_key("es256", ECKey.generate_key("P-256", private=True), "ES256")
    rs = deployment.identities["rs"]
    common: dict[str, Any] = {"issuer": issuer.url, "ca_file": deployment.ca_file, "tls": tls, "audience": API_AUDIENCE}
    try:
        result.apis["static-jwt"] = start_sample_api(
            deployment.directory, "api-static-jwt", **common,
            extra_args=["--algorithm", "RS256", "--algorithm", "PS256", "--algorithm", "EdDSA",
                        "--jwks-refresh-cooldown", "0.1"])
        result.apis["static-introspection"] = start_sample_api(
            deployment.directory, "api-static-introspection", **common,
            extra_args=["--introspection", "--client-cert", str(rs.cert), "--client-key", str(rs.key),
                        "--client-id", "rs", "--introspection-cache-ttl", "0"])
        deployment.apis.update(result.apis)
        yield result
    finally:
        for name, api in result.apis.items():
            deployment.apis.pop(name, None)
            api.stop()
        issuer.stop()


@pytest.mark.parametrize(("key", "alg"), [("rs256", "RS256"), ("ps256", "PS256"), ("eddsa", "EdDSA")])
def test_tokens_of_each_configured_algorithm_are_accepted(setup: Setup, key: str, alg: str) -> None:
    response = setup.call("static-jwt", setup.sign(key, alg))
    assert response.status_code == 200, response.text
    assert response.json()["client_id"] == "alice"


def test_an_algorithm_not_configured_is_refused_before_any_key_lookup(setup: Setup) -> None:
    setup.call("static-jwt", setup.sign("rs256", "RS256"))  # the keys are loaded
    fetched = setup.issuer.hits["/jwks"]
    time.sleep(0.2)  # past --jwks-refresh-cooldown: an unknown kid would be fetched again
    line = setup.refused("static-jwt", setup.sign("es256", "ES256", kid="not-published"),
                         "the access token's signing algorithm is not accepted (alg 'ES256'; accepted: EdDSA, "
                         "PS256, RS256)")
    assert line["reason"] == "algorithm_not_allowed"
    assert setup.issuer.hits["/jwks"] == fetched  # no key was looked up


@pytest.mark.parametrize("secret_form", ["pem", "jwk-json"])
def test_hs256_keyed_with_the_published_rsa_key(setup: Setup, secret_form: str) -> None:
    key = setup.keys["rs256"]
    published = next(k for k in setup.issuer.jwks["keys"] if k["kid"] == key.thumbprint())
    secret = key.as_pem(private=False) if secret_form == "pem" else json.dumps(published).encode()
    signing_input = ".".join([b64url(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": key.thumbprint()}).encode()),
                              b64url(json.dumps(setup.claims()).encode())])
    token = signing_input + "." + b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
    line = setup.refused("static-jwt", token, "the access token's signing algorithm is not accepted (alg 'HS256'; "
                                              "accepted: EdDSA, PS256, RS256)")
    assert line["reason"] == "algorithm_not_allowed"


def test_alg_none(setup: Setup) -> None:
    token = unsigned({"alg": "none", "typ": "at+jwt", "kid": setup.keys["rs256"].thumbprint()}, setup.claims())
    setup.refused("static-jwt", token, "the access token's signing algorithm is not accepted (alg 'none'; "
                                       "accepted: EdDSA, PS256, RS256)")


def test_a_key_published_for_rs256_does_not_verify_ps256(setup: Setup) -> None:
    line = setup.refused("static-jwt", setup.sign("rs256", "PS256"),
                         "the access token's algorithm does not match its key")
    assert line["reason"] == "algorithm_mismatch"
    assert line["detail"] == f"alg PS256, key {setup.keys['rs256'].thumbprint()!r} is for RS256"
    assert "client_id" not in line  # refused before its claims were read


def answer(setup: Setup, token: str, **overrides: Any) -> str:
    setup.issuer.answers[token] = {"active": True, "token_type": "Bearer", **setup.claims(**overrides)}
    return token


def test_an_introspection_answer_without_aud_is_refused(setup: Setup) -> None:
    token = answer(setup, "opaque-no-aud", aud=None)
    line = setup.refused("static-introspection", token,
                         "the access token is not meant for this resource server: the authorization server's "
                         f"introspection answer has no aud (expected {API_AUDIENCE})")
    assert line["reason"] == "wrong_audience" and line["client_id"] == "alice"
    assert line["detail"].startswith(f"introspection answer without aud, expected {API_AUDIENCE!r} (members ")
    assert line["detail"].endswith("the authorization server must include aud in its answers (optional in RFC 7662 "
                                   "section 2.2, required here)")


def test_an_introspection_answer_for_another_audience_is_refused(setup: Setup) -> None:
    token = answer(setup, "opaque-other-aud", aud=["https://payments.api.test"])
    line = setup.refused("static-introspection", token, "the access token is not meant for this resource server: "
                                                        f"its aud does not include {API_AUDIENCE}")
    assert line["detail"] == f"aud ['https://payments.api.test'] (introspection answer), expected {API_AUDIENCE!r}"


def test_an_introspection_answer_with_our_aud_is_accepted(setup: Setup) -> None:
    token = answer(setup, "opaque-two-auds", aud=["https://payments.api.test", API_AUDIENCE])
    assert setup.call("static-introspection", token).status_code == 200
    # active, aud and the binding are enough (RFC 7662 makes the rest optional)
    setup.issuer.answers["opaque-minimal"] = {"active": True, "aud": API_AUDIENCE, "scope": "accounts:read",
                                              "cnf": {"x5t#S256": setup.deployment.identities["alice"].thumbprint}}
    assert setup.call("static-introspection", "opaque-minimal").status_code == 200
