"""An authorization server double for in-process tests: metadata, JWKS and introspection
served through ``httpx.MockTransport``, with signing helpers and request counters."""

from __future__ import annotations

import base64
import json
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key

ISSUER = "https://as.test"
AUDIENCE = "https://api.test"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class FakeAuthorizationServer:
    keys: list[Key] = field(default_factory=lambda: [ECKey.generate_key("P-256", private=True)])
    # kid -> the alg its JWK names (None: no alg member) and tokens are signed with; ES256
    # for the keys not listed.
    algs: dict[str, str | None] = field(default_factory=dict)
    introspection: dict[str, dict[str, Any]] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    down: bool = False
    metadata_issuer: str = ISSUER
    introspection_forms: list[dict[str, list[str]]] = field(default_factory=list)
    jwks_path: str = "/jwks"

    @property
    def active(self) -> Key:
        return self.keys[0]

    def alg_of(self, key: Key) -> str | None:
        return self.algs.get(key.thumbprint(), "ES256")

    def publish(self, key: Key, alg: str | None) -> Key:
        """Add ``key`` to the JWK Set (after the active one), its JWK naming ``alg``."""
        self.keys.append(key)
        self.algs[key.thumbprint()] = alg
        return key

    def jwks(self) -> dict[str, Any]:
        entries = []
        for k in self.keys:
            alg = self.alg_of(k)
            entries.append({**k.as_dict(private=False), "kid": k.thumbprint(), "use": "sig",
                            **({"alg": alg} if alg else {})})
        return {"keys": entries}

    def rotate(self) -> ECKey:
        self.keys.insert(0, ECKey.generate_key("P-256", private=True))
        return self.keys[0]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.hits[request.url.path] += 1
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == "/.well-known/oauth-authorization-server":
            return httpx.Response(200, json={"issuer": self.metadata_issuer, "jwks_uri": ISSUER + self.jwks_path,
                                             "introspection_endpoint": ISSUER + "/introspect"})
        if request.url.path == self.jwks_path:
            return httpx.Response(200, json=self.jwks())
        if request.url.path == "/introspect" and request.method == "POST":
            form = parse_qs(request.content.decode())
            self.introspection_forms.append(form)
            # json.dumps, not json=: an answer may hold NaN/Infinity on purpose (httpx refuses them).
            answer = self.introspection.get(form["token"][0], {"active": False})
            return httpx.Response(200, content=json.dumps(answer).encode(),
                                  headers={"content-type": "application/json"})
        return httpx.Response(404, json={"error": "not_found"})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": ISSUER, "sub": "alice", "client_id": "alice", "aud": AUDIENCE,
                                  "iat": now, "exp": now + 600, "jti": f"jti-{time.monotonic_ns()}",
                                  "scope": "accounts:read"}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], *, key: Key | None = None, **header: Any) -> str:
        key = key or self.active
        full = {"alg": self.alg_of(key) or "ES256", "typ": "at+jwt", "kid": key.thumbprint(), **header}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # EdDSA: deprecated name (RFC 9864)
            return jwt.encode({k: v for k, v in full.items() if v is not None}, claims, key,
                              algorithms=[full["alg"]])

    def token(self, thumbprint: str | None, *, key: Key | None = None, **claims: Any) -> str:
        cnf = {"cnf": {"x5t#S256": thumbprint}} if thumbprint else {}
        return self.sign(self.claims(**cnf, **claims), key=key)


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()), b64url(signature)])
