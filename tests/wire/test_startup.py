"""``authz serve`` refuses to start on an unusable configuration, and says which setting
and which file are wrong."""

import subprocess
from pathlib import Path

import pytest

from tests.support.server import authz_cli, free_port
from tests.wire.material import WirePKI

pytestmark = pytest.mark.wire


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``authz serve ARGS``; it must exit by itself (a server that starts is a failure)."""
    return authz_cli("serve", "--port", str(free_port()), *args, data_dir=tmp_path / "data", check=False, timeout=30)


@pytest.fixture(params=["text", "private-key"])
def not_a_certificate(request: pytest.FixtureRequest, pki: WirePKI, tmp_path: Path) -> Path:
    if request.param == "private-key":
        return pki.server_key
    path = tmp_path / "anchor.pem"
    path.write_text("this is not a certificate\n")
    return path


@pytest.mark.parametrize(("option", "setting"), [("--trust-anchor", "trust_anchors"),
                                                 ("--intermediate", "intermediates")])
def test_file_that_is_not_a_certificate(tmp_path: Path, pki: WirePKI, not_a_certificate: Path, option: str,
                                        setting: str) -> None:
    result = serve(tmp_path, "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
                   "--trust-anchor", str(pki.trust_anchor), option, str(not_a_certificate))
    assert result.returncode != 0
    assert f"Error: {setting}: {not_a_certificate} holds no PEM certificate" in result.stderr


def test_missing_trust_anchor_file(tmp_path: Path, pki: WirePKI) -> None:
    missing = tmp_path / "missing.pem"
    result = serve(tmp_path, "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
                   "--trust-anchor", str(missing))
    assert result.returncode != 0
    assert f"Error: trust_anchors: cannot read {missing}: No such file or directory" in result.stderr


def test_missing_tls_key_names_the_option_and_its_variable(tmp_path: Path, pki: WirePKI) -> None:
    result = serve(tmp_path, "--tls-cert", str(pki.server_cert), "--trust-anchor", str(pki.trust_anchor))
    assert result.returncode != 0
    assert "Error: invalid settings: --tls-key (AUTHZ_TLS_KEY) is required with --tls-cert" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_invalid_value_names_the_option_and_its_variable(tmp_path: Path, pki: WirePKI) -> None:
    result = authz_cli("serve", "--port", "70000", "--tls-cert", str(pki.server_cert), "--tls-key",
                       str(pki.server_key), data_dir=tmp_path / "data", check=False, timeout=30)
    assert result.returncode != 0
    assert "Error: invalid settings: --port (AUTHZ_PORT): Input should be less than or equal to 65535" in result.stderr


def test_missing_tls_certificate_and_key(tmp_path: Path, pki: WirePKI) -> None:
    result = serve(tmp_path, "--trust-anchor", str(pki.trust_anchor))
    assert result.returncode != 0
    assert "Error: --tls-cert and --tls-key are required (or AUTHZ_TLS_CERT and AUTHZ_TLS_KEY)" in result.stderr



def test_a_trust_anchor_that_is_not_a_ca_is_refused(tmp_path: Path, pki: WirePKI) -> None:
    # With a leaf as anchor, whoever holds its key would pass tls_client_auth for its subject.
    leaf = pki["dn-client"].cert
    result = serve(tmp_path, "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
                   "--trust-anchor", str(leaf))
    assert result.returncode != 0
    assert f"Error: trust_anchors: {leaf} holds a certificate that is not a CA" in result.stderr
    assert "self_signed_tls_client_auth" in result.stderr


def test_a_store_that_is_not_sqlite_is_reported_and_the_process_exits(tmp_path: Path, pki: WirePKI) -> None:
    # authz_cli's timeout fails the test if the process hangs after reporting the error.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "authz.sqlite3").write_text("this is not a database\n")
    for args in (("clients", "list"),
                 ("serve", "--port", str(free_port()), "--tls-cert", str(pki.server_cert),
                  "--tls-key", str(pki.server_key), "--trust-anchor", str(pki.trust_anchor))):
        result = authz_cli(*args, data_dir=tmp_path / "data", check=False, timeout=30)
        assert result.returncode != 0, args
        assert "cannot open the store" in result.stderr, args


def test_a_jwks_uri_ca_that_cannot_be_loaded_stops_the_start(tmp_path: Path, pki: WirePKI) -> None:
    missing = tmp_path / "jwks-ca.pem"
    result = serve(tmp_path, "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
                   "--trust-anchor", str(pki.trust_anchor), "--jwks-uri-ca", str(missing))
    assert result.returncode != 0
    assert f"Error: jwks_uri_ca: cannot load {missing} as PEM CA certificates: " in result.stderr
    assert "Traceback" not in result.stderr
