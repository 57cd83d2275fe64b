"""``authz clients list/show`` on a store holding registrations the server cannot use: a
clear message naming the record, never a traceback."""

import asyncio
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from authz.cli.main import main
from authz.clients.directory import ClientDirectory
from authz.storage.sqlite import SQLiteRecordStore
from tests.support.pki import self_signed

GOOD = {"client_id": "good", "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_san_dns": "good.example", "scope": "read"}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    async def register() -> None:
        store = SQLiteRecordStore(tmp_path)
        await store.open()
        await ClientDirectory(store).register(GOOD)
        await store.upsert("client", "odd", {})
        await store.close()

    asyncio.run(register())
    return tmp_path


def _store_raw(data_dir: Path, value: str) -> None:
    with sqlite3.connect(data_dir / "authz.sqlite3") as db:
        db.execute("UPDATE records SET value = ? WHERE kind = 'client' AND id = 'odd'", (value,))


def _run(*args: str, data_dir: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--data-dir", str(data_dir)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_corrupt_record_is_named_with_the_way_out(data_dir: Path) -> None:
    _store_raw(data_dir, "{not json")
    code, _, err = _run("clients", "show", "odd", data_dir=data_dir)
    assert code == 1
    assert "record client/odd is not valid JSON" in err
    assert "authz clients remove odd" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("stored", "reason"), [
    ("{not json", "record client/odd is not valid JSON"),
    ("[1, 2]", "record client/odd is not a JSON object"),
    ('{"client_id": "good2", "token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_dns": "g.example"}',
     "the record stored as 'odd' names client_id 'good2'"),
    ('{"jwks": "x", "client_id": "odd"}', "token_endpoint_auth_method must be one of"),
    ('{"scope": "read"}', "client_id must be a printable string"),
], ids=["not-json", "not-an-object", "another-client-id", "invalid-method", "no-client-id"])
def test_an_unusable_record_is_listed_under_its_key_with_the_others(data_dir: Path, stored: str, reason: str) -> None:
    _store_raw(data_dir, stored)
    code, out, _ = _run("clients", "list", data_dir=data_dir)
    assert code == 0
    good, odd = out.splitlines()  # in key order: "good" < "odd"
    assert good.startswith("good\ttls_client_auth\t")
    assert odd.startswith("odd\tUNUSABLE: ") and reason in odd and "authz clients remove odd" in odd


def test_corrupt_record_can_be_removed(data_dir: Path) -> None:
    _store_raw(data_dir, "{not json")
    assert _run("clients", "remove", "odd", data_dir=data_dir)[:2] == (0, "removed odd\n")
    code, out, _ = _run("clients", "list", data_dir=data_dir)
    assert code == 0
    assert out.splitlines() == ["good\ttls_client_auth\ttls_client_auth_san_dns=good.example\tscope='read'"]


def test_show_warns_about_an_unusable_registration(data_dir: Path) -> None:
    _store_raw(data_dir, '{"jwks": "x", "client_id": "odd"}')
    code, out, err = _run("clients", "show", "odd", data_dir=data_dir)
    assert code == 0 and '"jwks": "x"' in out
    assert "registration is unusable: token_endpoint_auth_method must be one of" in err


@pytest.mark.parametrize("command", [("clients", "list"), ("clients", "show", "x"), ("clients", "remove", "x"),
                                     ("keys", "list")])
def test_a_read_command_does_not_create_a_store(tmp_path: Path, command: tuple[str, ...]) -> None:
    # A mistyped --data-dir must not look like an empty server.
    missing = tmp_path / "typo"
    code, _, err = _run(*command, data_dir=missing)
    assert code == 1 and f"no store at {missing / 'authz.sqlite3'}" in err
    assert not missing.exists()


@pytest.mark.parametrize(("content", "what"), [
    (b"", "is empty"),
    (b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n", "is a private key, not a certificate"),
    (b"\x30\x03\x02\x01\x01", "is not a PEM or DER certificate"),
], ids=["empty", "private-key", "garbage-der"])
def test_a_cert_file_that_is_no_certificate_is_named_for_what_it_is(tmp_path: Path, content: bytes,
                                                                   what: str) -> None:
    cert = tmp_path / "client.pem"
    cert.write_bytes(content)
    code, _, err = _run("clients", "add", "c", "--auth-method", "self_signed_tls_client_auth", "--cert", str(cert),
                        data_dir=tmp_path / "data")
    assert code == 2 and f"{cert} {what}" in err


# --- --jwks-uri ------------------------------------------------------------------------------

def test_a_self_signed_client_registered_with_jwks_uri_is_listed_with_it(tmp_path: Path) -> None:
    code, out, _ = _run("clients", "add", "u", "--auth-method", "self_signed_tls_client_auth",
                        "--jwks-uri", "https://keys.example/u.json", "--scope", "read", data_dir=tmp_path)
    assert (code, out) == (0, "registered u (self_signed_tls_client_auth)\n")
    code, out, _ = _run("clients", "list", data_dir=tmp_path)
    assert out == "u\tself_signed_tls_client_auth\tjwks_uri=https://keys.example/u.json\tscope='read'\n"
    code, out, _ = _run("clients", "show", "u", data_dir=tmp_path)
    assert '"jwks_uri": "https://keys.example/u.json"' in out and '"jwks"' not in out


@pytest.mark.parametrize(("arguments", "message"), [
    (["--auth-method", "self_signed_tls_client_auth", "--jwks-uri", "https://k.example/", "--cert", "CERT"],
     "--cert and --jwks-uri exclude each other"),
    (["--auth-method", "tls_client_auth", "--san-dns", "c.example", "--jwks-uri", "https://k.example/"],
     "--jwks-uri is for self_signed_tls_client_auth clients"),
    (["--auth-method", "self_signed_tls_client_auth"], "needs at least one --cert, or --jwks-uri"),
    (["--auth-method", "self_signed_tls_client_auth", "--jwks-uri", "http://k.example/"],
     "Invalid value for --jwks-uri: jwks_uri must be an https URL (got scheme 'http')"),
    (["--auth-method", "self_signed_tls_client_auth", "--jwks-uri", "https://k.example/#x"],
     "Invalid value for --jwks-uri: jwks_uri must not have a fragment"),
], ids=["with-cert", "tls-client-auth", "neither", "http", "fragment"])
def test_jwks_uri_mistakes_are_refused_before_anything_is_written(tmp_path: Path, arguments: list[str],
                                                                  message: str) -> None:
    cert = tmp_path / "client.pem"
    cert.write_bytes(self_signed("CN=c").pem)
    data_dir = tmp_path / "data"
    code, _, err = _run("clients", "add", "c", *[str(cert) if a == "CERT" else a for a in arguments],
                        data_dir=data_dir)
    assert code == 2 and message in err
    assert not data_dir.exists()
