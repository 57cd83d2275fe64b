"""What the TLS layer must do for RFC 8705: finish the handshake whatever certificate the
client sends (the application decides and answers in JSON), and keep the client's chain."""

import json
import socket
import ssl
import subprocess
from urllib.parse import urlencode

import httpx
import pytest

from authz.certificates.rejection import RejectionReason as R
from tests.support.server import RunningServer
from tests.wire.client import FORM, client_ssl_context, curl_command
from tests.wire.material import WirePKI

pytestmark = pytest.mark.wire

TLS_VERSIONS = {"tls1.2": ["--tlsv1.2", "--tls-max", "1.2"], "tls1.3": ["--tlsv1.3"]}
# Certificates OpenSSL's own verification would refuse (self-signed, unknown issuer, expired),
# and none at all (an empty Certificate message).
UNACCEPTABLE = [
    (None, "dn-client", R.NO_CERTIFICATE),
    ("unregistered-self-signed", "self-signed-client", R.NOT_REGISTERED),
    ("unregistered-self-signed", "dn-client", R.SELF_SIGNED),
    ("untrusted-ca", "dn-client", R.UNTRUSTED_CHAIN),
    ("expired", "dn-client", R.EXPIRED),
]


@pytest.mark.parametrize("tls", TLS_VERSIONS)
@pytest.mark.parametrize(("cert", "client_id", "reason"), UNACCEPTABLE, ids=[f"{c}:{i}" for c, i, _ in UNACCEPTABLE])
def test_handshake_completes_and_the_refusal_is_json(server: RunningServer, pki: WirePKI, tls: str,
                                                     cert: str | None, client_id: str, reason: R) -> None:
    form = f"grant_type=client_credentials&client_id={client_id}"
    credentials = pki[cert] if cert else None
    result = subprocess.run([*curl_command(credentials, pki.server_ca), *TLS_VERSIONS[tls], "--data", form,
                             "--write-out", r"\n%{http_code} %{content_type}", server.token_url],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"curl failed (no HTTP answer): {result.stderr}"
    body, _, status = result.stdout.rpartition("\n")
    assert status == "401 application/json"
    assert json.loads(body) == {"error": "invalid_client", "error_description": reason.public_description}


def _post_token(server: RunningServer, context: ssl.SSLContext, client_id: str,
                session: ssl.SSLSession | None = None) -> tuple[int, ssl.SSLSession | None, bool]:
    """One request on a new connection (resuming ``session`` if given): the status, the TLS
    session and whether it was resumed."""
    body = urlencode({"grant_type": "client_credentials", "client_id": client_id})
    request = (f"POST /token HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: {FORM}\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls:
        tls.sendall(request)
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
        return int(response.split(b" ", 2)[1]), tls.session, bool(tls.session_reused)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def test_sessions_are_not_resumed(server: RunningServer, pki: WirePKI, version: ssl.TLSVersion) -> None:
    # A resumed session would only remember the client's leaf, and OpenSSL's session cache
    # would hold every client's whole chain (see authz.tls.tls_profile).
    context = client_ssl_context(pki["intermediate-client"], pki.server_ca)
    context.minimum_version = context.maximum_version = version
    status, session, _ = _post_token(server, context, "intermediate-client")
    assert status == 200
    status, _, resumed = _post_token(server, context, "intermediate-client", session)
    assert (status, resumed) == (200, False)


def test_every_request_on_a_kept_alive_connection_is_authenticated(server: RunningServer, pki: WirePKI) -> None:
    form = {"grant_type": "client_credentials"}
    offset = server.log_offset()
    with httpx.Client(verify=client_ssl_context(pki["dn-client"], pki.server_ca), timeout=15) as client:
        statuses = [client.post(server.token_url, data={**form, "client_id": client_id}).status_code
                    for client_id in ("dn-client", "dns-client", "dn-client")]
    assert statuses == [200, 401, 200]
    events = [e for e in server.events(offset) if e["event"] in ("token_issued", "client_authentication_failed")]
    assert [(e["event"], e["client_id"]) for e in events] == [
        ("token_issued", "dn-client"), ("client_authentication_failed", "dns-client"), ("token_issued", "dn-client")]
    assert events[1]["reason"] == "san_dns_mismatch"
    assert len({e["peer"] for e in events}) == 1  # one connection
