"""``authz clients update``: a partial change keeps everything it does not name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import trustme
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from authz.cli.main import main
from tests.support.server import authz_cli


def _run(*args: str, data_dir: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--data-dir", str(data_dir)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def _show(client_id: str, data_dir: Path) -> dict[str, object]:
    code, out, err = _run("clients", "show", client_id, data_dir=data_dir)
    assert code == 0, err
    return dict(json.loads(out))


def test_scopes_and_resources_change_and_the_rest_stays(tmp_path: Path) -> None:
    assert _run("clients", "add", "svc", "--auth-method", "tls_client_auth", "--san-dns", "svc.example",
                "--scope", "read write", "--resource", "https://a.api.test", data_dir=tmp_path)[0] == 0
    code, out, err = _run("clients", "update", "svc", "--add-scope", "admin", "--remove-scope", "write",
                          "--add-resource", "https://b.api.test", data_dir=tmp_path)
    assert (code, out) == (0, "updated svc\n"), err
    metadata = _show("svc", tmp_path)
    assert metadata["scope"] == "read admin"
    assert metadata["allowed_resources"] == ["https://a.api.test", "https://b.api.test"]
    assert metadata["tls_client_auth_san_dns"] == "svc.example"  # not named: kept
    # The audit line (stderr of a real process: structlog binds the stream once per process)
    # names the CLI user and the change.
    err = authz_cli("clients", "update", "svc", "--add-scope", "audit", data_dir=tmp_path).stderr
    assert "client_registration_changed" in err and "action=updated" in err and "actor=cli:" in err


def test_certificates_are_added_and_removed_by_file_or_thumbprint(tmp_path: Path) -> None:
    ca = trustme.CA()
    paths = []
    for name in ("one", "two"):
        path = tmp_path / f"{name}.pem"
        ca.issue_cert(f"{name}.example").cert_chain_pems[0].write_to_path(str(path))
        paths.append(path)
    assert _run("clients", "add", "self", "--auth-method", "self_signed_tls_client_auth", "--cert", str(paths[0]),
                data_dir=tmp_path)[0] == 0
    assert _run("clients", "update", "self", "--add-cert", str(paths[1]), data_dir=tmp_path)[0] == 0
    keys = _show("self", tmp_path)["jwks"]["keys"]  # type: ignore[index]
    assert len(keys) == 2
    assert _run("clients", "update", "self", "--remove-cert", str(paths[0]), data_dir=tmp_path)[0] == 0
    assert len(_show("self", tmp_path)["jwks"]["keys"]) == 1  # type: ignore[index]
    code, _, err = _run("clients", "update", "self", "--remove-cert", "not-a-thumbprint", data_dir=tmp_path)
    assert code == 2 and "not registered for this client: not-a-thumbprint" in err


def test_a_change_that_makes_the_registration_invalid_is_refused(tmp_path: Path) -> None:
    _run("clients", "add", "svc", "--auth-method", "tls_client_auth", "--san-dns", "svc.example", data_dir=tmp_path)
    code, _, err = _run("clients", "update", "svc", "--add-resource", "not a uri", data_dir=tmp_path)
    assert code == 1 and "invalid client metadata after the change: allowed_resources[0]" in err
    assert "allowed_resources" not in _show("svc", tmp_path)
    code, _, err = _run("clients", "update", "nobody", "--add-scope", "x", data_dir=tmp_path)
    assert code == 1 and "no client 'nobody'" in err


def test_show_prints_thumbprints_and_validity_on_stderr(tmp_path: Path) -> None:
    ca = trustme.CA()
    path = tmp_path / "one.pem"
    ca.issue_cert("one.example").cert_chain_pems[0].write_to_path(str(path))
    _run("clients", "add", "self", "--auth-method", "self_signed_tls_client_auth", "--cert", str(path),
         data_dir=tmp_path)
    code, out, err = _run("clients", "show", "self", data_dir=tmp_path)
    assert code == 0 and json.loads(out)["client_id"] == "self"  # stdout: the JSON alone
    from cryptography import x509

    from authz.certificates.thumbprint import x5t_s256

    der = x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert f"certificate x5t#S256={x5t_s256(der)} sha256={hashlib.sha256(der).hexdigest()}" in err
    assert "(expires in " in err
