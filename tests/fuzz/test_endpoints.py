"""/token, /introspect and /revoke end to end in process, with the client certificate injected as
the ASGI TLS extension: any method, headers, body (whole or in chunks) and certificate.

Properties: never a 500; every 4xx is JSON with an OAuth ``error`` and an ``error_description``
in RFC 6749 §5.2 characters, not cacheable, and a 401 carries a challenge; a 200 is what its
endpoint promises (a token only for a registered client presenting its certificate)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode

from cryptography.hazmat.primitives import serialization
from hypothesis import example, given
from hypothesis import strategies as st

from authz.app import create_app
from authz.clients.model import jwk_for_certificate
from authz.context import ServerContext
from authz.settings import Settings
from tests.fuzz.asgi import QUERIES, Answer, check_error_answer, exchange, require_seen
from tests.fuzz.profiles import budget
from tests.fuzz.strategies import any_text, chance, long_digit_runs
from tests.support.pki import TestCA, self_signed

ISSUER = "https://as.example"
_CA = TestCA()
_PKI = _CA.issue("CN=pki,O=t")
_SELF = self_signed("CN=self,O=t")
_STRANGER = _CA.issue("CN=stranger,O=t")


def _pem(der_or_cert: Any) -> str:
    return der_or_cert.public_bytes(serialization.Encoding.PEM).decode()


_CHAINS = st.sampled_from([
    [_pem(_PKI.cert)], [_pem(_PKI.cert)], [_pem(_PKI.cert)], [_pem(_SELF.cert)], [_pem(_SELF.cert)],
    [_pem(_STRANGER.cert)], [], None,
    ["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"], [_pem(_PKI.cert), _pem(_CA.cert)], ["x"],
])
_FORM_VALUES: dict[str, st.SearchStrategy[str]] = {
    "grant_type": st.sampled_from(["client_credentials"] * 8 + ["password", "authorization_code", "",
                                                                 "urn:ietf:params:oauth:grant-type:jwt-bearer"]),
    "client_id": st.sampled_from(["pki", "pki", "self", "dns", "stranger", "", "PKI", "pki "]),
    "scope": st.sampled_from(["read", "write", "read write", "admin", "read  write", "read\twrite", "", '"\\']),
    "token": st.sampled_from(["<token>", "<token>", "<other-token>", "<mangled-token>", "a.b.c", "", "x" * 9000]),
    "token_type_hint": st.sampled_from(["access_token", "refresh_token", "bogus"]),
    "client_secret": st.just("s"),
    "client_assertion_type": st.just("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
}


@st.composite
def forms(draw: st.DrawFn, tokens: dict[str, str], path: str, who: str | None) -> bytes:
    """A urlencoded body: mostly plausible parameters (any of them sometimes any text), now and
    then raw bytes. /revoke gets tokens of its own, so that the others stay active."""
    if path == "/revoke":
        tokens = {**tokens, "<token>": tokens["<revocable-token>"], "<other-token>": tokens["<revocable-token>"]}
    if draw(chance(1, 20)):
        return draw(st.binary(max_size=100))
    fields: list[tuple[str, str]] = []
    for name, values in _FORM_VALUES.items():
        if draw(chance(9, 10) if name in ("grant_type", "client_id", "token") else chance(1, 20)):
            if name == "client_id" and who is not None:
                value = who
            elif draw(chance(9, 10)):
                value = draw(values)
            else:
                value = draw(any_text.map(lambda t: t.encode("utf-8", "replace").decode()))
            fields.append((name, tokens.get(value, value)))
    if draw(chance(1, 20)):  # a repeated parameter
        fields.append(draw(st.sampled_from(fields)) if fields else ("client_id", "pki"))
    if draw(chance(1, 5)):  # unknown parameters, which are ignored
        fields += draw(st.lists(st.tuples(st.text(max_size=8).map("x-".__add__), st.text(max_size=8)), max_size=2,
                                unique_by=lambda pair: pair[0]))
    return urlencode(fields, quote_via=draw(st.sampled_from([quote, quote_plus]))).encode()


@st.composite
def requests(draw: st.DrawFn, tokens: dict[str, str]) -> dict[str, Any]:
    path = draw(st.sampled_from(["/token", "/introspect", "/revoke"] * 6 + ["/token/", "/jwks", "/nowhere", "/"]))
    # Half the time a registered client with its own certificate, so that the examples get
    # past client authentication; otherwise client_id and certificate are drawn apart.
    who = draw(st.sampled_from(["pki", "pki", "self", None, None, None]))
    body = draw(forms(tokens, path, who))
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    headers: list[tuple[bytes, bytes]] = []
    # Weights by repetition: sampled_from picks about uniformly.
    content_type = draw(st.sampled_from([b"application/x-www-form-urlencoded"] * 16 + [
        b"application/x-www-form-urlencoded; charset=UTF-8", b"application/json", b"text/plain",
        b"application/x-www-form-urlencoded; charset=latin1", None]))
    if content_type is not None:
        headers.append((b"content-type", content_type))
    length = draw(st.sampled_from(["exact", "exact", "none", "none", "odd"]))
    if length == "exact":
        headers.append((b"content-length", str(len(body)).encode()))
    elif length == "odd":
        headers.append((b"content-length", draw(long_digit_runs.map(str.encode) | st.binary(max_size=8))))
    if draw(chance(1, 20)):
        headers.append((b"authorization", draw(st.sampled_from([b"Basic cGtpOnM=", b"Bearer x", b"\xff"]))))
    if draw(chance(1, 5)):
        headers += draw(st.lists(st.tuples(st.binary(min_size=1, max_size=8).map(bytes.lower),
                                           st.binary(max_size=16)), max_size=2))
    return {
        "method": draw(st.sampled_from(["POST"] * 16 + ["GET", "PUT", "DELETE", "OPTIONS"])),
        "path": path,
        "headers": draw(st.permutations(headers)),
        "chunks": chunks or [b""],
        "query": draw(QUERIES) if draw(chance(1, 5)) else b"",
        "tls": {"client_cert_chain": [_pem((_PKI if who == "pki" else _SELF).cert)]} if who else
        (lambda chain: None if chain is None else {"client_cert_chain": chain})(draw(_CHAINS)),
    }


def _check(request: dict[str, Any], answer: Answer) -> str:
    """Checks the answer; returns what kind it was."""
    assert answer.status < 500, (request, answer.status, answer.body)
    if answer.status >= 400:
        document = check_error_answer(answer)
        if answer.status == 401:
            # RFC 6749 §5.2: a challenge exactly when the client used the Authorization header.
            used_header = any(name.lower() == b"authorization" for name, _ in request["headers"])
            assert bool(answer.headers.get(b"www-authenticate")) == used_header, answer.headers
        return f"{answer.status} {document['error']}: {document['error_description'][:50]}"
    assert answer.status == 200, answer.status
    document = answer.json()
    if request["method"] == "POST" and request["path"] == "/token":
        # A token only for a registered client that presented its own certificate.
        form = dict(parse_qsl(b"".join(request["chunks"]).decode(), keep_blank_values=True))
        assert form.get("client_id") in ("pki", "self"), form
        assert request["tls"]["client_cert_chain"][0] == _pem((_PKI if form["client_id"] == "pki" else _SELF).cert)
        assert document["token_type"] == "Bearer" and document["access_token"].count(".") == 2
        return "200 token"
    if request["method"] == "POST" and request["path"] == "/introspect":
        assert isinstance(document.get("active"), bool), document
        return f"200 active={document['active']}"
    return f"200 {request['method']} {request['path']}"


def test_no_request_makes_the_authorization_server_answer_500(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", issuer=ISSUER, trust_anchors=[_CA.write(tmp_path / "ca.pem")],
                        log_level="error")
    with asyncio.Runner() as runner:
        context = ServerContext.build(settings)
        app = create_app(settings, context)
        runner.run(context.start())
        try:
            runner.run(_register(context))
            tokens = runner.run(_tokens(app))
            seen: Counter[str] = Counter()

            # The answers the properties check for their content, whatever hypothesis generates
            # (it seeds generation with the project's own literals too, so any change of code can
            # change which examples come up).
            @example(_request("/token", "grant_type=client_credentials&client_id=pki&scope=read"))
            @example(_request("/introspect", f"client_id=pki&token={tokens['<token>']}"))
            @example(_request("/revoke", f"client_id=pki&token={tokens['<revocable-token>']}"))
            @example(_request("/token", "grant_type=password&client_id=pki"))
            @budget(800, deadline_ms=2000)
            @given(requests(tokens))
            def check(request: dict[str, Any]) -> None:
                seen[_check(request, runner.run(exchange(app, **request)))] += 1

            check()
        finally:
            runner.run(context.stop())
    # Not vacuous: the examples reached tokens, introspection, revocation and the refusals of
    # each layer (the printed counts show how often).
    require_seen(seen, ("200 token", "200 active=True", "200 POST /revoke", "401 invalid_client", "400 invalid_request",
                        "400 unsupported_grant_type", "404 ", "405 "))


def _request(path: str, form: str) -> dict[str, Any]:
    return {"method": "POST", "path": path, "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
            "chunks": [form.encode()], "query": b"", "tls": {"client_cert_chain": [_pem(_PKI.cert)]}}


async def _register(context: ServerContext) -> None:
    await context.clients.register({"client_id": "pki", "token_endpoint_auth_method": "tls_client_auth",
                                    "tls_client_auth_subject_dn": "CN=pki,O=t", "scope": "read write"})
    await context.clients.register({"client_id": "self", "token_endpoint_auth_method": "self_signed_tls_client_auth",
                                    "jwks": {"keys": [jwk_for_certificate(_SELF.cert)]}})
    await context.clients.register({"client_id": "dns", "token_endpoint_auth_method": "tls_client_auth",
                                    "tls_client_auth_san_dns": "dns.example"})


async def _tokens(app: Any) -> dict[str, str]:
    """Real access tokens to introspect and revoke (each example may revoke them: that is fine)."""
    issued = []
    for _ in range(3):
        answer = await exchange(app, method="POST", path="/token",
                                headers=[(b"content-type", b"application/x-www-form-urlencoded")],
                                chunks=[b"grant_type=client_credentials&client_id=pki"],
                                tls={"client_cert_chain": [_pem(_PKI.cert)]})
        assert answer.status == 200, answer.body
        issued.append(json.loads(answer.body)["access_token"])
    header, payload, signature = issued[1].split(".")
    mangled = f"{header}.{payload}.{signature[::-1]}"
    return {"<token>": issued[0], "<other-token>": issued[1], "<revocable-token>": issued[2],
            "<mangled-token>": mangled}
