"""One PKI and one ``authz serve`` for the interop suite, and the client libraries it runs:
Node's openid-client (``npm ci`` in tests/interop/node), Go's x/oauth2 (Debian's packages,
built once per session) and the Python ones (the ``test`` extra).

Every module runs the README's recipe for its library (tests/interop/recipes, node/recipe.mjs,
go/recipe.go) with each client authentication method, and with a certificate the server
refuses: another registered client's, for this client_id.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from authz.certificates.rejection import RejectionReason
from tests.support.debian import require_command, require_package
from tests.support.server import RunningServer, start_server
from tests.wire.client import client_ssl_context, verified_token
from tests.wire.material import Credentials, WirePKI, build_wire_pki, register_clients

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
GO_DIR = HERE / "go"
RECIPES = HERE / "recipes"

# A client of each authentication method (tests/wire/material.py registers them).
CLIENT_OF_METHOD = {"tls_client_auth": "dn-client", "self_signed_tls_client_auth": "self-signed-client"}
# The refusal every library is shown: the tls_client_auth client's certificate, presented for
# the self-signed client (registered with another certificate).
REFUSED_CLIENT_ID = "self-signed-client"
REFUSED_CERTIFICATE = "dn-client"
REFUSAL = RejectionReason.NOT_REGISTERED
REFUSAL_BODY = {"error": "invalid_client", "error_description": REFUSAL.public_description}

GOPATH = Path("/usr/share/gocode")  # where Debian's golang-*-dev packages put their sources
GO_OAUTH2 = GOPATH / "src/golang.org/x/oauth2"


@dataclass(frozen=True)
class RecipeFiles:
    """The files every recipe takes: the client's certificate (leaf first) and key, and the
    CA of the server's certificate."""

    cert: str
    key: str
    ca: str


@dataclass(frozen=True)
class Interop:
    server: RunningServer
    pki: WirePKI
    jwks: dict[str, Any]

    @property
    def issuer(self) -> str:
        return self.server.base_url

    def files(self, certificate_of: str) -> RecipeFiles:
        credentials = self.pki[certificate_of]
        return RecipeFiles(str(credentials.cert), str(credentials.key), str(self.pki.server_ca))

    def assert_bound_token(self, access_token: str, client_id: str) -> dict[str, Any]:
        """The access token is ours (signature, client) and bound to the client's certificate:
        ``cnf.x5t#S256`` is the thumbprint computed here from the certificate file's leaf."""
        credentials: Credentials = self.pki[client_id]
        _, claims = verified_token(access_token, self.jwks)
        assert claims["client_id"] == client_id
        assert claims["cnf"] == {"x5t#S256": credentials.thumbprint}
        return claims

    @contextlib.contextmanager
    def refusal_logged(self) -> Iterator[None]:
        """The block makes one request that the server refuses as REFUSAL, and logs so."""
        offset = self.server.log_offset()
        yield
        # The server writes its log line before it answers: it is in the file already.
        failures = [e for e in self.server.events(offset) if e.get("event") == "client_authentication_failed"]
        assert [(f["client_id"], f["reason"]) for f in failures] == [(REFUSED_CLIENT_ID, REFUSAL.name.lower())]


@pytest.fixture(scope="session")
def interop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Interop]:
    pki = build_wire_pki(tmp_path_factory.mktemp("interop-pki"))
    data_dir = tmp_path_factory.mktemp("interop-data")
    register_clients(pki, data_dir, list(CLIENT_OF_METHOD.values()))
    server = start_server(tls_cert=pki.server_cert, tls_key=pki.server_key, ca_file=pki.server_ca,
                          data_dir=data_dir, log_path=tmp_path_factory.mktemp("interop-log") / "authz.log",
                          trust_anchors=[pki.trust_anchor])
    try:
        with httpx.Client(verify=client_ssl_context(None, pki.server_ca)) as client:
            jwks: dict[str, Any] = client.get(server.base_url + "/jwks").raise_for_status().json()
        yield Interop(server, pki, jwks)
    finally:
        # A response the tests let go of can still hold its kept-alive connection, in a cycle
        # through an exception's traceback (requests closes a session's connections, not those
        # its responses hold). The server's graceful shutdown waits for every connection, up to
        # 30 s for a TLS one whose peer is silent: let the collector close them first.
        gc.collect()
        server.stop()


@pytest.fixture(params=sorted(CLIENT_OF_METHOD))
def client_id(request: pytest.FixtureRequest) -> str:
    """A registered client of each authentication method, by turns."""
    return CLIENT_OF_METHOD[request.param]


# --- Node: openid-client ---------------------------------------------------------------------

def _command(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is missing: the interop suite needs Node.js >= 20.18.1 and npm")
    return path


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """tests/interop/node/node_modules as package-lock.json pins it: ``npm ci`` when the lock
    changed since the last install (or there was none)."""
    lock = hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()
    stamp = NODE_DIR / "node_modules" / ".authz-package-lock.sha256"
    if not (stamp.is_file() and stamp.read_text() == lock):
        result = subprocess.run([_command("npm"), "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                                cwd=NODE_DIR, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"npm ci failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        stamp.write_text(lock)
    return NODE_DIR / "node_modules"


def run_node(node_modules: Path, *args: str) -> dict[str, Any]:
    """``node harness.mjs ARGS``: the one JSON line it prints."""
    result = subprocess.run([_command("node"), str(NODE_DIR / "harness.mjs"), *args], cwd=NODE_DIR,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    output: dict[str, Any] = json.loads(result.stdout)
    return output


# --- Go: golang.org/x/oauth2/clientcredentials -----------------------------------------------

@pytest.fixture(scope="session")
def go_build_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this session's Go programs and their build cache go."""
    return tmp_path_factory.mktemp("go-build")


def go_build(build: Path, name: str, source_dir: Path, *files: str) -> Path:
    """``go build`` of ``files`` in ``source_dir`` into ``build/name``: GOPATH mode against
    Debian's sources (no module proxy), with the session's own build cache."""
    go = require_command("go", "golang-go")
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOCACHE": str(build / "cache"),
           "GOFLAGS": "", "GOPROXY": "off"}
    binary = build / name
    result = subprocess.run([go, "build", "-o", str(binary), *files], cwd=source_dir, env=env,
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"go build failed ({result.returncode}):\n{result.stderr}")
    return binary


@pytest.fixture(scope="session")
def go_harness(go_build_directory: Path) -> Path:
    """tests/interop/go built against Debian's x/oauth2 sources."""
    require_package("golang-golang-x-oauth2-dev", GO_OAUTH2)
    return go_build(go_build_directory, "harness", GO_DIR, "recipe.go", "harness.go")


def run_go(harness: Path, issuer: str, client_id: str, files: RecipeFiles) -> dict[str, Any]:
    result = subprocess.run([str(harness), issuer, client_id, files.cert, files.key, files.ca], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    output: dict[str, Any] = json.loads(result.stdout)
    return output
