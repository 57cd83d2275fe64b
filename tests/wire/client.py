"""Requests to a running server through a real TLS client (curl or httpx), one new
connection per request, and the assertions every wire test makes on the answer."""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from authz.certificates.rejection import RejectionReason
from tests.support.server import RunningServer
from tests.wire.material import Credentials

FORM = "application/x-www-form-urlencoded"
Form = dict[str, str] | Sequence[tuple[str, str]]


@dataclass(frozen=True)
class WireResponse:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes
    issuer: str
    events: list[dict[str, Any]]  # the server's JSON log lines written while it answered

    def json(self) -> Any:
        return json.loads(self.body)

    def failures(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == "client_authentication_failed"]


class WireClient:
    """``via`` is "curl" (the curl binary) or "httpx" (Python's ssl through httpx)."""

    def __init__(self, via: str, server: RunningServer, server_ca: Path) -> None:
        self.via = via
        self.server = server
        self.server_ca = server_ca

    def token(self, credentials: Credentials | None, client_id: str | None, **form: str) -> WireResponse:
        """POST /token with grant_type=client_credentials, the client_id and ``form``."""
        fields = {"grant_type": "client_credentials", **({"client_id": client_id} if client_id else {}), **form}
        return self.post("/token", credentials, fields)

    def post(self, path: str, credentials: Credentials | None, form: Form | None = None, *,
             body: bytes | None = None, content_type: str = FORM,
             headers: dict[str, str] | None = None) -> WireResponse:
        content = body if body is not None else urlencode(form or {}).encode()
        return self.request("POST", path, credentials, content, {"Content-Type": content_type, **(headers or {})})

    def get(self, path: str) -> WireResponse:
        return self.request("GET", path, None, None, {})

    def request(self, method: str, path: str, credentials: Credentials | None, content: bytes | None,
                headers: dict[str, str]) -> WireResponse:
        offset = self.server.log_offset()
        send = _curl if self.via == "curl" else _httpx
        status, response_headers, body = send(method, self.server.base_url + path, credentials, content, headers,
                                              self.server_ca)
        # The server writes its log line before it answers: it is in the file already.
        return WireResponse(status, response_headers, body, self.server.base_url, self.server.events(offset))


def curl_command(credentials: Credentials | None, server_ca: Path) -> list[str]:
    """curl, trusting the server's CA and presenting ``credentials`` (if any); add the rest."""
    command = ["/usr/bin/curl", "--silent", "--show-error", "--max-time", "15", "--cacert", str(server_ca)]
    if credentials is not None:
        command += ["--cert", str(credentials.cert), "--key", str(credentials.key)]
    return command


def _curl(method: str, url: str, credentials: Credentials | None, content: bytes | None,
          headers: dict[str, str], server_ca: Path) -> tuple[int, dict[str, str], bytes]:
    # "--request HEAD" would make curl wait for the body the headers announce.
    verb = ["--head"] if method == "HEAD" else ["--request", method]
    command = [*curl_command(credentials, server_ca), "--include", *verb, "--header", "Expect:"]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    if content is not None:
        command += ["--data-binary", "@-"]
    result = subprocess.run([*command, url], input=content or b"", capture_output=True, timeout=30)
    # Exit status 0: the handshake and the HTTP exchange completed, whatever the status code.
    assert result.returncode == 0, f"curl exited with {result.returncode}: {result.stderr.decode()}"
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    parsed = dict(line.split(":", 1) for line in lines)
    return int(status_line.split()[1]), {k.strip().lower(): v.strip() for k, v in parsed.items()}, body


def client_ssl_context(credentials: Credentials | None, server_ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server_ca))
    if credentials is not None:
        context.load_cert_chain(credentials.cert, credentials.key)
    return context


def _httpx(method: str, url: str, credentials: Credentials | None, content: bytes | None,
           headers: dict[str, str], server_ca: Path) -> tuple[int, dict[str, str], bytes]:
    with httpx.Client(verify=client_ssl_context(credentials, server_ca), timeout=15) as client:
        response = client.request(method, url, content=content, headers=headers)
    return response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content


# --- what the answers must be --------------------------------------------------------------

def assert_token_response(response: WireResponse) -> dict[str, Any]:
    """A successful token response (RFC 6749 §5.1); returns its body."""
    assert response.status == 200, (response.status, response.body)
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    assert isinstance(body["access_token"], str) and body["access_token"].count(".") == 2
    assert not response.failures()
    return body


def assert_oauth_error(response: WireResponse, status: int, error: str, description: str) -> None:
    assert (response.status, response.json()) == (status, {"error": error, "error_description": description})
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"


def assert_invalid_client(response: WireResponse, expected: RejectionReason | str, client_id: str | None, *,
                          challenge: str | None = None) -> None:
    """401 invalid_client, and one log line saying why. RFC 6749 §5.2: a ``WWW-Authenticate``
    challenge only when the client used the Authorization header, naming its ``challenge``
    scheme."""
    description = expected.public_description if isinstance(expected, RejectionReason) else expected
    assert_oauth_error(response, 401, "invalid_client", description)
    if challenge is None:
        assert "www-authenticate" not in response.headers
    else:
        assert response.headers["www-authenticate"] == (
            f'{challenge} realm="{response.issuer}", error="invalid_client", error_description="{description}"')
    [logged] = response.failures()
    assert logged["error_description"] == description
    assert logged.get("client_id") == client_id
    if isinstance(expected, RejectionReason):
        assert logged["reason"] == expected.name.lower()


def verified_token(access_token: str, jwks: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of an access token whose ES256 signature verifies with ``jwks``."""
    token = jwt.decode(access_token, KeySet.import_key_set(jwks), algorithms=["ES256"])  # type: ignore[arg-type]
    return dict(token.header), dict(token.claims)
