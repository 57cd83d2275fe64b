"""A real deployment on loopback for the wire tests: ``authz serve`` (tests/support/server.py)
plus the sample API in JWT mode and in introspection mode (``python -m authz_resource.sample``,
the ``authz-sample-api`` command),
all over TLS with client certificates from tests/support/pki.py."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
from cryptography.x509.oid import ExtendedKeyUsageOID
from joserfc import jwt
from joserfc.jwk import ECKey, Key

from authz.certificates.thumbprint import x5t_s256
from authz.storage.sqlite import SQLiteRecordStore
from tests.support.pki import TestCA
from tests.support.server import RunningServer, authz_cli, free_port, start_server

REPO = Path(__file__).resolve().parents[2]
SAMPLE_API = [sys.executable, "-m", "authz_resource.sample"]
SCOPES = {"alice": "accounts:read accounts:write", "bob": "accounts:read", "carol": "accounts:read", "rs": ""}
# The sample APIs' identifier: the AS's default audience (its clients name no resource), a
# resource server whose tokens "rs" (the introspecting API's client) may introspect.
API_AUDIENCE = "https://accounts.api.test"


@dataclass(frozen=True)
class Identity:
    name: str
    cert: Path
    key: Path
    thumbprint: str


@dataclass
class Deployment:
    directory: Path
    ca_file: Path
    authz: RunningServer
    identities: dict[str, Identity]
    apis: dict[str, RunningServer] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return self.authz.base_url

    def ssl_context(self, who: str | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if who is not None:
            identity = self.identities[who]
            context.load_cert_chain(identity.cert, identity.key)
        return context

    def client(self, who: str | None) -> httpx.Client:
        return httpx.Client(verify=self.ssl_context(who), timeout=10.0, trust_env=False)

    def token(self, who: str, scope: str | None = None) -> str:
        form = {"grant_type": "client_credentials", "client_id": who, **({"scope": scope} if scope else {})}
        with self.client(who) as client:
            response = client.post(self.authz.token_url, data=form)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def revoke(self, who: str, token: str) -> None:
        with self.client(who) as client:
            response = client.post(self.issuer + "/revoke", data={"client_id": who, "token": token})
        assert response.status_code == 200, response.text

    def call(self, api: str, path: str, *, who: str | None, token: str | None = None, method: str = "GET",
             headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        sent = dict(headers or {})
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        with self.client(who) as client:
            return client.request(method, self.apis[api].base_url + path, headers=sent, **kwargs)

    def curl(self, api: str, path: str, *, who: str | None,
             token: str | None = None) -> tuple[int, dict[str, str], str]:
        """curl with the client certificate of ``who``: status, headers (lower-case names), body."""
        args = ["curl", "-sS", "--max-time", "10", "--cacert", str(self.ca_file), "-D", "-", "-o", "-"]
        if who is not None:
            args += ["--cert", str(self.identities[who].cert), "--key", str(self.identities[who].key)]
        if token is not None:
            args += ["-H", f"Authorization: Bearer {token}"]
        result = subprocess.run([*args, self.apis[api].base_url + path], capture_output=True, timeout=20)
        assert result.returncode == 0, result.stderr
        head, _, body = result.stdout.decode().partition("\r\n\r\n")
        status_line, *lines = head.split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        return int(status_line.split()[1]), headers, body

    def signing_key(self) -> tuple[str, ECKey]:
        """The AS's active signing key, read from its store: lets tests mint tokens with
        exactly the claims they need, signed by a key the AS really publishes."""

        async def read() -> dict[str, Any]:
            store = SQLiteRecordStore(self.authz.data_dir)
            await store.open()
            try:
                record = await store.find("signing_key", "active")
            finally:
                await store.close()
            assert record is not None
            return record

        record = asyncio.run(read())
        return str(record["kid"]), ECKey.import_key(record["jwk"])

    def mint(self, who: str = "alice", *, header: dict[str, Any] | None = None, **overrides: Any) -> str:
        kid, key = self.signing_key()
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "sub": who, "client_id": who, "aud": API_AUDIENCE, "iat": now,
                                  "exp": now + 300, "jti": f"minted-{time.monotonic_ns()}",
                                  "scope": "accounts:read", "cnf": {"x5t#S256": self.identities[who].thumbprint}}
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": kid, **(header or {})}, claims, key,
                          algorithms=["ES256"])


class StaticIssuer:
    """A stand-in authorization server over real TLS for what ``authz serve`` cannot be made to
    do: publish keys of other algorithms (the test signs with them) and give introspection
    answers the test writes (without aud, for another audience). Serves its metadata, ``jwks``
    (by default empty) and ``answers`` (token -> introspection answer; unknown tokens are
    inactive)."""

    def __init__(self, tls: tuple[Path, Path]) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.answers: dict[str, dict[str, Any]] = {}
        self.hits: Counter[str] = Counter()
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.hits[self.path] += 1
                if self.path == "/.well-known/oauth-authorization-server":
                    self._json({"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks",
                                "introspection_endpoint": issuer.url + "/introspect"})
                elif self.path == "/jwks":
                    self._json(issuer.jwks)
                else:
                    self._json({"error": "not_found"}, 404)

            def do_POST(self) -> None:
                issuer.hits[self.path] += 1
                form = parse_qs(self.rfile.read(int(self.headers.get("content-length", "0"))).decode())
                self._json(issuer.answers.get(form.get("token", [""])[0], {"active": False}))

            def _json(self, document: dict[str, Any], status: int = 200) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, key: Key, alg: str | None) -> str:
        """Publish ``key``'s public part, its JWK naming ``alg``; returns its kid."""
        kid = key.thumbprint()
        self.jwks["keys"].append({**key.as_dict(private=False), "kid": kid, "use": "sig",
                                  **({"alg": alg} if alg else {})})
        return kid

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_sample_api(directory: Path, name: str, *, issuer: str, ca_file: Path, tls: tuple[Path, Path] | None,
                     extra_args: Sequence[str] = (), timeout: float = 20.0, port: int | None = None,
                     audience: str | None = None) -> RunningServer:
    """The sample API on ``port`` (default: a free one); returns when it accepts requests.
    Without ``tls`` (proxy mode behind a TLS-terminating proxy, in ``extra_args``): plain HTTP.
    ``audience`` defaults to ``issuer``: the aud of an ``authz serve`` without --audience."""
    port = port or free_port()
    log_path = directory / f"{name}.log"
    tls_args = ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])] if tls else []
    args = [*SAMPLE_API, *tls_args, "--issuer", issuer, "--ca-file", str(ca_file), "--port", str(port),
            "--audience", audience or issuer, *extra_args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    with open(log_path, "wb") as log_file:
        # cwd outside the repository: the installed authz_resource is what runs.
        process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=directory)
    server = RunningServer(process, port, directory, log_path, ca_file, scheme="https" if tls else "http")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sample-api exited with {process.returncode}:\n{server.log()}")
        # uvicorn logs the application's start-up before it binds the port: wait for both.
        if "Application startup complete" in server.log():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return server
            except OSError:
                pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"sample-api did not start within {timeout}s:\n{server.log()}")


@contextlib.contextmanager
def deploy(directory: Path) -> Iterator[Deployment]:
    ca = TestCA("CN=Resource Tests CA,O=authz tests")
    ca_file = ca.write(directory / "ca.pem")
    server_tls = ca.issue("CN=localhost", san_dns=["localhost"], san_ip=["127.0.0.1"],
                          eku=[ExtendedKeyUsageOID.SERVER_AUTH]).write(directory, "server")
    identities: dict[str, Identity] = {}
    data_dir = directory / "authz-data"
    for name, scope in SCOPES.items():
        issued = ca.issue(f"CN={name},O=authz tests")
        cert, key = issued.write(directory, name)
        identities[name] = Identity(name, cert, key, x5t_s256(issued.der))
        extra = ["--unbound-tokens"] if name == "carol" else []
        authz_cli("clients", "add", name, "--auth-method", "tls_client_auth", "--subject-dn",
                  f"CN={name},O=authz tests", "--scope", scope, *extra, data_dir=data_dir)
    # "mallory" is known to no one: a certificate from the same CA, never registered.
    issued = ca.issue("CN=mallory,O=authz tests")
    cert, key = issued.write(directory, "mallory")
    identities["mallory"] = Identity("mallory", cert, key, x5t_s256(issued.der))

    authz_cli("resources", "add", API_AUDIENCE, "--scope", "accounts:read accounts:write", "--introspector", "rs",
              data_dir=data_dir)
    authz = start_server(tls_cert=server_tls[0], tls_key=server_tls[1], ca_file=ca_file, data_dir=data_dir,
                         log_path=directory / "authz.log", trust_anchors=[ca_file],
                         extra_args=["--audience", API_AUDIENCE])
    deployment = Deployment(directory, ca_file, authz, identities)
    try:
        common = {"issuer": authz.base_url, "ca_file": ca_file, "tls": server_tls, "audience": API_AUDIENCE}
        deployment.apis["jwt"] = start_sample_api(directory, "api-jwt", **common,  # type: ignore[arg-type]
                                                  extra_args=["--jwks-refresh-cooldown", "0.2"])
        rs = identities["rs"]
        deployment.apis["introspection"] = start_sample_api(
            directory, "api-introspection", **common,  # type: ignore[arg-type]
            extra_args=["--introspection", "--client-cert", str(rs.cert), "--client-key", str(rs.key),
                        "--client-id", "rs", "--introspection-cache-ttl", "1"])
        yield deployment
    finally:
        for api in deployment.apis.values():
            api.stop()
        authz.stop()
