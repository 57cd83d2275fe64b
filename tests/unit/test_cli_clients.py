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
], ids=["not-json", "not-an-object", "another-client-id"])
def test_a_corrupt_record_is_listed_under_its_key_with_the_others(data_dir: Path, stored: str, reason: str) -> None:
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


@pytest.mark.parametrize(("stored", "reason"), [
    ('{"jwks": "x", "client_id": "odd"}', "token_endpoint_auth_method must be one of"),
    ('{"scope": "read"}', "client_id must be a printable string"),
])
def test_unusable_registration_is_listed_as_unusable(data_dir: Path, stored: str, reason: str) -> None:
    _store_raw(data_dir, stored)
    code, out, _ = _run("clients", "list", data_dir=data_dir)
    assert code == 0
    good, odd = out.splitlines()  # in id order: "good" < "odd"
    assert good.startswith("good\ttls_client_auth\t")
    assert "\tUNUSABLE: " in odd and reason in odd


def test_show_warns_about_an_unusable_registration(data_dir: Path) -> None:
    _store_raw(data_dir, '{"jwks": "x", "client_id": "odd"}')
    code, out, err = _run("clients", "show", "odd", data_dir=data_dir)
    assert code == 0 and '"jwks": "x"' in out
    assert "registration is unusable: token_endpoint_auth_method must be one of" in err
