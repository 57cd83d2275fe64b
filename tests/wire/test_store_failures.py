"""A store that cannot be used (read-only file system, disk full, permission denied): the CLI
and ``authz serve`` print one line naming the file and the cause and exit non-zero at once
(aiosqlite's thread used to keep them alive after a traceback); a running server answers a
write it cannot make with 503 ``temporarily_unavailable`` and recovers by itself.

The failures are real: a small tmpfs, remounted read-only or filled up (mounting needs root:
the tests skip, saying why, where it is refused), and another user (65534, through setpriv)
for permissions, since root passes every permission check.
"""

import dataclasses
import errno
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.server import REPO, authz_cli, free_port
from tests.wire.client import WireClient, assert_token_response
from tests.wire.conftest import StartServer
from tests.wire.material import WirePKI, register_clients

pytestmark = pytest.mark.wire

# A process still running this long after it was started is taken as hanging.
EXIT_WITHIN = 10.0
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@dataclass
class SmallFileSystem:
    """A 512 KiB tmpfs: room for a store, and quickly full."""

    root: Path

    @property
    def filler(self) -> Path:
        return self.root / "filler"

    def fill(self) -> None:
        """Write until the file system has no byte left."""
        with open(self.filler, "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\0" * 65536)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        assert os.statvfs(self.root).f_bavail == 0

    def free(self) -> None:
        self.filler.unlink()

    def remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.root)], check=True, capture_output=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFileSystem]:
    root = tmp_path / "fs"
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs", str(root)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield SmallFileSystem(root)
    finally:
        # Lazy: a process of a failed test may still hold a file; the mount goes when it ends.
        subprocess.run(["umount", "--lazy", str(root)], check=True)


def commands(pki: WirePKI) -> dict[str, list[str]]:
    """The commands that must refuse an unusable store: two that write, one that reads, and
    the server's start-up."""
    return {
        "clients add": ["clients", "add", "another-client", "--auth-method", "tls_client_auth",
                        "--subject-dn", "CN=another,O=authz tests"],
        "clients list": ["clients", "list"],
        "keys rotate": ["keys", "rotate"],
        "serve": ["serve", "--port", str(free_port()), "--tls-cert", str(pki.server_cert),
                  "--tls-key", str(pki.server_key), "--trust-anchor", str(pki.trust_anchor)],
    }


def assert_every_command_refuses(pki: WirePKI, data_dir: Path, cause: str, run_as: Sequence[str] = ()) -> None:
    """Each command exits non-zero within EXIT_WITHIN with the one line ``Error: cannot open
    the store at FILE: CAUSE...`` (they run side by side: each is mostly Python start-up)."""
    expected = f"Error: cannot open the store at {data_dir / 'authz.sqlite3'}: {cause}"

    def run(name: str, args: list[str]) -> str | None:
        try:
            result = authz_cli(*args, data_dir=data_dir, check=False, timeout=EXIT_WITHIN, run_as=run_as)
        except subprocess.TimeoutExpired:
            return f"{name}: still running after {EXIT_WITHIN} s"
        lines = result.stderr.strip().splitlines()
        if result.returncode == 0 or lines != [lines[-1]] or not lines[-1].startswith(expected):
            return f"{name}: exit status {result.returncode}, stderr:\n{result.stderr}"
        return None

    with ThreadPoolExecutor(2) as pool:
        problems = [p for p in pool.map(lambda item: run(*item), commands(pki).items()) if p is not None]
    assert not problems, f"expected {expected!r}:\n" + "\n".join(problems)


def test_read_only_file_system(pki: WirePKI, small_fs: SmallFileSystem) -> None:
    data_dir = small_fs.root / "data"
    register_clients(pki, data_dir, ["dn-client"])
    small_fs.remount("ro")
    assert_every_command_refuses(pki, data_dir, "read-only file system")


def test_disk_full(pki: WirePKI, small_fs: SmallFileSystem) -> None:
    data_dir = small_fs.root / "data"
    register_clients(pki, data_dir, ["dn-client"])
    small_fs.fill()
    assert_every_command_refuses(pki, data_dir, "disk full")


@pytest.fixture
def shared_directory() -> Iterator[Path]:
    """A directory user 65534 may enter (pytest's own are private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="authz-store-failures-"))
    try:
        directory.chmod(0o755)
        yield directory
    finally:
        shutil.rmtree(directory)


@pytest.fixture
def nobody_can_run_authz() -> None:
    probe = subprocess.run([*NOBODY, sys.executable, "-c", "import authz"], cwd=REPO, capture_output=True,
                           text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"user 65534 cannot run this checkout's Python here: {probe.stderr.strip()[-300:]}")


@pytest.mark.usefixtures("nobody_can_run_authz")
def test_permission_denied(pki: WirePKI, shared_directory: Path) -> None:
    # serve must get as far as the store: its certificate and key readable by user 65534.
    readable = shared_directory / "pki"
    readable.mkdir()
    copies = {}
    for name in ("server_cert", "server_key", "trust_anchor"):
        copies[name] = Path(shutil.copy(getattr(pki, name), readable))
        copies[name].chmod(0o644)
    data_dir = shared_directory / "data"
    register_clients(pki, data_dir, ["dn-client"])
    assert data_dir.stat().st_mode & 0o777 == 0o700  # root's, as the store creates it
    assert_every_command_refuses(dataclasses.replace(pki, **copies), data_dir, "permission denied", run_as=NOBODY)


@pytest.mark.usefixtures("nobody_can_run_authz")
def test_a_store_file_of_another_user_is_refused(shared_directory: Path) -> None:
    # The store holds the signing key: a file this user cannot make private (chmod 0600) is
    # refused, not used world-readable. This path used to hang after its traceback.
    data_dir = shared_directory / "data"
    authz_cli("clients", "add", "c", "--auth-method", "tls_client_auth", "--san-dns", "c.example", data_dir=data_dir)
    data_dir.chmod(0o777)
    (data_dir / "authz.sqlite3").chmod(0o666)
    try:
        result = authz_cli("clients", "list", data_dir=data_dir, check=False, timeout=EXIT_WITHIN, run_as=NOBODY)
    except subprocess.TimeoutExpired:
        pytest.fail(f"authz clients list still running after {EXIT_WITHIN} s")
    assert result.returncode != 0
    assert result.stderr.strip() == (f"Error: cannot open the store at {data_dir / 'authz.sqlite3'}: "
                                     "operation not permitted (chmod 0600)")


def test_a_running_server_answers_503_while_the_disk_is_full_and_recovers(
        start_wire_server: StartServer, pki: WirePKI, small_fs: SmallFileSystem) -> None:
    data_dir = small_fs.root / "data"
    register_clients(pki, data_dir, ["dn-client"])
    server = start_wire_server(data_dir)
    try:
        client = WireClient("httpx", server, pki.server_ca)
        credentials = pki["dn-client"]
        access_token = assert_token_response(client.token(credentials, "dn-client"))["access_token"]
        revocation = {"client_id": "dn-client", "token": access_token}

        small_fs.fill()
        refused = client.post("/revoke", credentials, revocation)
        assert refused.status == 503, refused.body
        assert refused.json() == {"error": "temporarily_unavailable",
                                  "error_description": "the server cannot use its store right now; retry later"}
        assert refused.headers["retry-after"] == "5"
        assert refused.headers["cache-control"] == "no-store"
        [line] = [e for e in refused.events if e["event"] == "store_unavailable"]
        assert line["error"].startswith(f"cannot write the store at {data_dir / 'authz.sqlite3'}: disk full")
        assert line["endpoint"] == "revocation" and line["client_id"] == "dn-client" and line["jti"]
        assert line["level"] == "error"

        # What needs no write still works: the token is still active, and new ones are issued.
        introspected = client.post("/introspect", credentials, revocation)
        assert introspected.status == 200 and introspected.json()["active"] is True
        assert_token_response(client.token(credentials, "dn-client"))

        small_fs.free()
        # The failed write left no transaction holding the write lock: other processes write.
        authz_cli("clients", "add", "added-after", "--auth-method", "tls_client_auth", "--san-dns", "after.example",
                  data_dir=data_dir, timeout=EXIT_WITHIN)
        # No restart: the next attempt succeeds.
        revoked = client.post("/revoke", credentials, revocation)
        assert revoked.status == 200, revoked.body
        assert client.post("/introspect", credentials, revocation).json() == {"active": False}
    finally:
        server.stop()
