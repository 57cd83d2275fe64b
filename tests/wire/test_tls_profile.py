"""The TLS profile over the wire (authz.tls.tls_profile), seen by ``openssl s_client``:
the key-exchange groups and TLS 1.2 suites the server negotiates, the signature algorithms
it requests for client certificates, and no session resumption."""

from pathlib import Path

import pytest

from tests.support.s_client import s_client
from tests.support.server import RunningServer

pytestmark = pytest.mark.wire

# s_client's "Server Temp Key" for each group of the profile.
ACCEPTED_GROUPS = {"X25519": "X25519, 253 bits", "P-256": "ECDH, prime256v1, 256 bits",
                   "P-384": "ECDH, secp384r1, 384 bits"}
# Finite-field groups (DHEat), and the curves the profile leaves out.
REFUSED_GROUPS = ["ffdhe2048", "ffdhe3072", "ffdhe8192", "ffdhe2048:ffdhe3072:ffdhe4096:ffdhe6144:ffdhe8192",
                  "P-521", "X448"]
# The server's certificate is ECDSA: these are its AEAD suites.
ACCEPTED_TLS12_SUITES = ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                         "ECDHE-ECDSA-CHACHA20-POLY1305"]
REFUSED_TLS12_SUITES = [
    # CBC suites Python's default list offered before (LUCKY13 in testssl.sh's words)...
    "ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384",
    # ... and older CBC ones.
    "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA",
    # Everything this OpenSSL has but the profile's suites, at once.
    "ALL:@SECLEVEL=0:!ECDHE-ECDSA-AES128-GCM-SHA256:!ECDHE-ECDSA-AES256-GCM-SHA384:!ECDHE-ECDSA-CHACHA20-POLY1305"
    ":!ECDHE-RSA-AES128-GCM-SHA256:!ECDHE-RSA-AES256-GCM-SHA384:!ECDHE-RSA-CHACHA20-POLY1305",
]
# What the server asks clients to sign their CertificateVerify with, in s_client's names.
REQUESTED_SIGNATURE_ALGORITHMS = {
    "ECDSA+SHA256", "ECDSA+SHA384", "ECDSA+SHA512", "ed25519", "ed448",
    "RSA-PSS+SHA256", "RSA-PSS+SHA384", "RSA-PSS+SHA512", "rsa_pss_pss_sha256", "rsa_pss_pss_sha384",
    "rsa_pss_pss_sha512", "RSA+SHA256", "RSA+SHA384", "RSA+SHA512",
}


@pytest.mark.parametrize("group", ACCEPTED_GROUPS)
def test_the_profile_groups_are_negotiated(server: RunningServer, group: str) -> None:
    # TLS 1.3 only: in TLS 1.2 the client's groups must also name the curve of the server's
    # ECDSA key (P-256), so a client offering X25519 or P-384 alone gets no handshake there.
    result = s_client(server.port, "-tls1_3", "-groups", group, ca_file=server.ca_file)
    assert result.established, result.output
    assert result.field("Server Temp Key") == ACCEPTED_GROUPS[group]


@pytest.mark.parametrize("groups", REFUSED_GROUPS)
def test_a_client_offering_only_other_groups_gets_no_handshake(server: RunningServer, groups: str) -> None:
    # No version given: TLS 1.3 and TLS 1.2 are both offered, and neither may complete.
    result = s_client(server.port, "-groups", groups, ca_file=server.ca_file)
    assert not result.established, result.output
    assert result.connections == [("New", "(NONE)", "(NONE)")], result.output


@pytest.mark.parametrize("suite", ACCEPTED_TLS12_SUITES)
def test_the_profile_tls12_suites_are_negotiated(server: RunningServer, suite: str) -> None:
    result = s_client(server.port, "-tls1_2", "-cipher", suite, ca_file=server.ca_file)
    assert result.connections == [("New", "TLSv1.2", suite)], result.output


@pytest.mark.parametrize("suites", REFUSED_TLS12_SUITES, ids=[s.split(":")[0] for s in REFUSED_TLS12_SUITES])
def test_a_tls12_client_offering_only_other_suites_gets_no_handshake(server: RunningServer, suites: str) -> None:
    result = s_client(server.port, "-tls1_2", "-cipher", suites, ca_file=server.ca_file)
    assert result.connections == [("New", "(NONE)", "(NONE)")], result.output


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_client_certificate_signature_algorithms(server: RunningServer, version: str) -> None:
    result = s_client(server.port, version, ca_file=server.ca_file)
    assert result.established, result.output
    requested = result.field("Requested Signature Algorithms")
    shared = result.field("Shared Requested Signature Algorithms")
    assert requested is not None and shared is not None, result.output
    # No SHA-1, SHA-224 or DSA; everything real clients sign with.
    assert set(requested.split(":")) == REQUESTED_SIGNATURE_ALGORITHMS
    assert set(shared.split(":")) == REQUESTED_SIGNATURE_ALGORITHMS


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_reconnecting_resumes_no_session(server: RunningServer, version: str) -> None:
    result = s_client(server.port, version, "-reconnect", ca_file=server.ca_file)
    assert result.established, result.output
    assert [kind for kind, _, _ in result.connections] == ["New"] * 6, result.output


def test_no_tls12_session_is_handed_out(server: RunningServer, tmp_path: Path) -> None:
    session = tmp_path / "session.pem"
    result = s_client(server.port, "-tls1_2", "-sess_out", str(session), ca_file=server.ca_file)
    assert result.established, result.output
    # No session ID and no ticket: nothing to resume with (the session cache is off) ...
    assert result.field("Session-ID") == "", result.output
    assert "TLS session ticket" not in result.output
    # ... so s_client, which saves only a session it could resume, saved none for -sess_in.
    assert not session.exists()


@pytest.mark.parametrize(("offered", "selected"), [
    ("h2,http/1.1", "http/1.1"),  # what curl, Go and Node offer: HTTP/1.1, said explicitly
    ("http/1.1", "http/1.1"),
])
def test_alpn_selects_http11(server: RunningServer, offered: str, selected: str) -> None:
    result = s_client(server.port, "-alpn", offered, ca_file=server.ca_file)
    assert result.established, result.output
    assert result.field("ALPN protocol") == selected, result.output


def test_a_client_offering_only_h2_still_gets_a_handshake_without_alpn(server: RunningServer) -> None:
    # The server cannot speak h2; it says nothing rather than failing the handshake.
    result = s_client(server.port, "-alpn", "h2", ca_file=server.ca_file)
    assert result.established, result.output
    assert "No ALPN negotiated" in result.output, result.output
