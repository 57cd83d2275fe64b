"""A tls_client_auth client pinned to one CA (``tls_client_auth_ca_spki_sha256``): another
trusted CA issuing the same subject cannot authenticate as it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from authz.certificates.chain import ChainValidator
from authz.certificates.check import check_client_certificate
from authz.certificates.path import spki_sha256
from authz.certificates.presented import PresentedCertificate, presented_certificate
from authz.certificates.rejection import CertificateRejected, RejectionReason
from authz.cli.main import main
from authz.clients.model import CA_PIN_PARAMETER, InvalidClientMetadata, RegisteredClient
from tests.support.pki import Issued, TestCA, self_signed

DN = "CN=pinned,O=authz tests"


def presented(issued: Issued) -> PresentedCertificate:
    chain = [c.public_bytes(serialization.Encoding.PEM).decode() for c in [issued.cert, *issued.chain]]
    found = presented_certificate({"extensions": {"tls": {"client_cert_chain": chain}}})
    assert found is not None
    return found


def client(pin: bytes | None, **extra: Any) -> RegisteredClient:
    metadata: dict[str, Any] = {"client_id": "pinned", "token_endpoint_auth_method": "tls_client_auth",
                                "tls_client_auth_subject_dn": DN, **extra}
    if pin is not None:
        metadata[CA_PIN_PARAMETER] = pin.hex().upper()  # any case; stored in lower case
    return RegisteredClient.from_metadata(metadata)


@pytest.fixture(scope="module")
def cas() -> tuple[TestCA, TestCA, TestCA]:
    """Two trusted roots, and an intermediate under the first."""
    first = TestCA("CN=Pin Root A,O=authz tests")
    return first, TestCA("CN=Pin Root B,O=authz tests"), TestCA("CN=Pin Issuing A,O=authz tests", parent=first)


def test_the_pin_is_stored_in_lower_case_hex(cas: tuple[TestCA, TestCA, TestCA]) -> None:
    pin = spki_sha256(cas[0].cert)
    registered = client(pin)
    assert registered.pinned_ca_spki_sha256 == pin
    assert registered.metadata[CA_PIN_PARAMETER] == pin.hex()
    assert client(None).pinned_ca_spki_sha256 is None


@pytest.mark.parametrize("value", ["ab" * 31, "zz" * 32, 1234, "ab" * 33, ""])
def test_a_malformed_pin_is_refused(value: object) -> None:
    with pytest.raises(InvalidClientMetadata, match=CA_PIN_PARAMETER):
        client(None, **{CA_PIN_PARAMETER: value})


def test_a_pin_applies_to_tls_client_auth_only() -> None:
    from authz.clients.model import jwk_for_certificate

    metadata = {"client_id": "s", "token_endpoint_auth_method": "self_signed_tls_client_auth",
                "jwks": {"keys": [jwk_for_certificate(self_signed().cert)]}, CA_PIN_PARAMETER: "ab" * 32}
    with pytest.raises(InvalidClientMetadata, match="only applies to tls_client_auth"):
        RegisteredClient.from_metadata(metadata)


@pytest.mark.parametrize(("pinned", "issuer", "accepted"), [
    ("root A", "root A", True),
    ("root A", "issuing A", True),  # the anchor is on the path
    ("issuing A", "issuing A", True),
    ("issuing A", "root A", False),  # the pinned intermediate is not on the path
    ("root A", "root B", False),  # another trusted CA, the same subject DN
    ("issuing A", "root B", False),
])
def test_the_path_must_go_through_the_pinned_ca(cas: tuple[TestCA, TestCA, TestCA], pinned: str, issuer: str,
                                                accepted: bool) -> None:
    by_name = {"root A": cas[0], "root B": cas[1], "issuing A": cas[2]}
    validator = ChainValidator([cas[0].cert, cas[1].cert])
    certificate = presented(by_name[issuer].issue(DN))
    registered = client(spki_sha256(by_name[pinned].cert))
    if accepted:
        check_client_certificate(registered, certificate, validator)
        return
    with pytest.raises(CertificateRejected) as info:
        check_client_certificate(registered, certificate, validator)
    assert info.value.reason is RejectionReason.CA_PIN_MISMATCH
    assert info.value.public_description == "the client certificate was not issued by the CA this client is pinned to"
    # The operator sees the CAs of the path the certificate came with, and the pin.
    anchor = "CN=Pin Root B" if issuer == "root B" else "CN=Pin Root A"
    path_cas = info.value.log_fields["path_cas"]
    assert isinstance(path_cas, list) and path_cas[-1].startswith(f"{anchor},O=authz tests (spki sha256 ")
    assert spki_sha256(by_name[pinned].cert).hex() in info.value.detail
    # Without the pin the same certificate authenticates the client: the pin is what refused it.
    check_client_certificate(client(None), certificate, validator)


def _run(*args: str, data_dir: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--data-dir", str(data_dir)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_the_cli_pins_a_client_to_a_ca_file(tmp_path: Path, cas: tuple[TestCA, TestCA, TestCA]) -> None:
    ca_file = cas[2].write(tmp_path / "issuing.pem")
    code, _, err = _run("clients", "add", "pinned", "--auth-method", "tls_client_auth", "--subject-dn", DN,
                        "--pin-ca", str(ca_file), data_dir=tmp_path)
    assert code == 0, err
    code, out, err = _run("clients", "show", "pinned", data_dir=tmp_path)
    assert json.loads(out)[CA_PIN_PARAMETER] == spki_sha256(cas[2].cert).hex()
    code, out, err = _run("clients", "list", data_dir=tmp_path)
    assert f"tls_client_auth_subject_dn={DN}" in out
    # Moved to the other root, then unpinned; the rest stays.
    other = cas[1].write(tmp_path / "root-b.pem")
    assert _run("clients", "update", "pinned", "--pin-ca", str(other), data_dir=tmp_path)[0] == 0
    shown = json.loads(_run("clients", "show", "pinned", data_dir=tmp_path)[1])
    assert shown[CA_PIN_PARAMETER] == spki_sha256(cas[1].cert).hex()
    assert _run("clients", "update", "pinned", "--no-pin-ca", data_dir=tmp_path)[0] == 0
    shown = json.loads(_run("clients", "show", "pinned", data_dir=tmp_path)[1])
    assert CA_PIN_PARAMETER not in shown and shown["tls_client_auth_subject_dn"] == DN


def test_the_cli_refuses_to_pin_what_is_no_ca(tmp_path: Path, cas: tuple[TestCA, TestCA, TestCA]) -> None:
    leaf_file, _ = cas[0].issue(DN).write(tmp_path, "leaf")
    code, _, err = _run("clients", "add", "pinned", "--auth-method", "tls_client_auth", "--subject-dn", DN,
                        "--pin-ca", str(leaf_file), data_dir=tmp_path)
    assert code == 2 and "is not a CA certificate" in err
    ca_file = cas[0].write(tmp_path / "root.pem")
    code, _, err = _run("clients", "add", "self", "--auth-method", "self_signed_tls_client_auth",
                        "--cert", str(leaf_file), "--pin-ca", str(ca_file), data_dir=tmp_path)
    assert code == 2 and "--pin-ca is for tls_client_auth clients" in err


def test_the_registration_api_keeps_the_pin(cas: tuple[TestCA, TestCA, TestCA]) -> None:
    from authz.registration.metadata import public_metadata, requested_metadata

    pin = spki_sha256(cas[0].cert).hex()
    body = {"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": DN, CA_PIN_PARAMETER: pin}
    stored = requested_metadata(body, "api-client")
    assert stored[CA_PIN_PARAMETER] == pin
    # What a GET shows, a PUT may send back: the pin survives the round trip.
    assert public_metadata(stored)[CA_PIN_PARAMETER] == pin
    with pytest.raises(InvalidClientMetadata, match=CA_PIN_PARAMETER):
        requested_metadata({**body, CA_PIN_PARAMETER: "not hex"}, "api-client")
