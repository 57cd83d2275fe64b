"""The reload machinery (``authz.reload``), the validator's trust replacement and the workers'
supervisor, without sockets (over the wire: tests/wire/test_reload.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

import authz.reload
import authz.tls.supervisor
from authz.certificates.chain import ChainValidator
from authz.certificates.presented import PresentedCertificate
from authz.certificates.rejection import CertificateRejected, RejectionReason
from authz.context import trust_reload_hook
from authz.reload import PreparedChange, Reloader, ReloadRefused, install_reload_signal
from authz.settings import Settings
from authz.tls.credentials import ServerCredentials, load_credentials
from authz.tls.supervisor import ReloadingMultiprocess
from tests.support.pki import TestCA, self_signed


class _Log:
    """Stands for a module's structlog logger (loggers are bound once per process)."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def _add(self, level: str) -> Any:
        return lambda event, **fields: self.lines.append({"event": event, "log_level": level, **fields})

    def __getattr__(self, level: str) -> Any:
        return self._add(level)


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    recorder = _Log()
    monkeypatch.setattr(authz.reload, "log", recorder)
    monkeypatch.setattr(authz.tls.supervisor, "log", recorder)
    return recorder.lines


def _hook(calls: list[str], name: str, *, refuse: bool = False) -> Any:
    def prepare() -> PreparedChange:
        calls.append(f"prepare {name} on {threading.current_thread().name}")
        if refuse:
            raise ReloadRefused(f"/etc/{name}.pem", "not usable")
        return PreparedChange(lambda: calls.append(f"commit {name}"), {"name": name})

    return prepare


async def test_every_hook_prepares_off_the_loop_before_any_commits(logs: list[dict[str, Any]]) -> None:
    calls: list[str] = []
    reloader = Reloader()
    reloader.register("a", _hook(calls, "a"))
    reloader.register("b", _hook(calls, "b"))
    assert await reloader.reload()
    assert [c.split(" on ")[0] for c in calls] == ["prepare a", "prepare b", "commit a", "commit b"]
    assert all(threading.main_thread().name not in c for c in calls if c.startswith("prepare"))
    assert logs[-1]["event"] == "reload_completed" and logs[-1]["a"] == {"name": "a"}


async def test_one_refusal_commits_nothing_and_names_the_part_and_file(logs: list[dict[str, Any]]) -> None:
    calls: list[str] = []
    reloader = Reloader()
    reloader.register("good", _hook(calls, "good"))
    reloader.register("bad", _hook(calls, "bad", refuse=True))
    assert not await reloader.reload()
    assert not [c for c in calls if c.startswith("commit")]
    [line] = logs
    assert line["event"] == "reload_refused" and line["log_level"] == "error"
    assert (line["part"], line["file"], line["reason"]) == ("bad", "/etc/bad.pem", "not usable")


async def test_a_hook_that_fails_unexpectedly_refuses_the_reload(logs: list[dict[str, Any]]) -> None:
    reloader = Reloader()
    reloader.register("buggy", lambda: 1 / 0)  # type: ignore[arg-type, return-value]
    assert not await reloader.reload()
    assert logs[0]["reason"] == "unexpected error: ZeroDivisionError: division by zero"


async def test_sighup_reloads_and_requests_during_a_reload_run_once_more() -> None:
    started = asyncio.Event()
    release = threading.Event()
    runs: list[int] = []
    loop = asyncio.get_running_loop()

    def slow() -> PreparedChange:  # on the reload's thread
        runs.append(len(runs))
        loop.call_soon_threadsafe(started.set)
        release.wait(5)
        return PreparedChange(lambda: None)

    reloader = Reloader()
    reloader.register("slow", slow)
    assert install_reload_signal(loop, reloader)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.wait_for(started.wait(), 5)
        os.kill(os.getpid(), signal.SIGHUP)  # during the first: one more after it
        os.kill(os.getpid(), signal.SIGHUP)  # ... not two more
        await asyncio.sleep(0.2)
        release.set()
        for _ in range(100):
            await asyncio.sleep(0.02)
        assert len(runs) == 2
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


def test_a_later_registration_under_a_name_replaces_the_earlier() -> None:
    reloader = Reloader()
    first = reloader.register("x", lambda: None)
    reloader.register("x", lambda: None)
    first()  # the first's unregistration leaves the second in place
    assert reloader.names == ("x",)


async def test_watching_reloads_when_a_named_file_changes(tmp_path: Path, logs: list[dict[str, Any]]) -> None:
    watched, other, later = tmp_path / "server.crt", tmp_path / "unwatched", tmp_path / "later.pem"
    watched.write_bytes(b"one")
    other.write_bytes(b"one")
    prepared: list[int] = []
    reloader = Reloader()
    reloader.register("certificate", lambda: prepared.append(1) and None, files=[watched, tmp_path / "missing"])
    watching = asyncio.create_task(reloader.watch(interval=0.05))

    async def settle() -> None:
        for _ in range(10):
            await asyncio.sleep(0.05)

    try:
        await settle()
        assert prepared == []  # nothing changed
        other.write_bytes(b"two")
        await settle()
        assert prepared == []  # not a watched file
        replacement = tmp_path / "new"
        replacement.write_bytes(b"two, renamed over it")
        os.replace(replacement, watched)  # as operators and Kubernetes replace files
        await settle()
        assert len(prepared) == 1
        (tmp_path / "missing").write_bytes(b"it appears")  # a missing file that appears changed
        await settle()
        assert len(prepared) == 2
        reloader.register("anchors", lambda: None, files=[later])  # watched from its registration
        later.write_bytes(b"new")
        await settle()
        later.write_bytes(b"changed again")
        await settle()
        assert len(prepared) == 3
    finally:
        watching.cancel()
    changed = [line["files"] for line in logs if line["event"] == "reload_files_changed"]
    assert changed == [[str(watched)], [str(tmp_path / "missing")], [str(later)]]
    assert reloader.watched_files == (watched, tmp_path / "missing", later)


# --- the validator's trust ------------------------------------------------------------------


def _presented(issued: Any) -> PresentedCertificate:
    return PresentedCertificate.from_der([issued.der])


def test_replacing_the_trust_forgets_every_verdict() -> None:
    old, new = TestCA("CN=Old CA"), TestCA("CN=New CA")
    of_old, of_new = _presented(old.issue("CN=a")), _presented(new.issue("CN=b"))
    validator = ChainValidator([old.cert])
    validator.validate(of_old)
    with pytest.raises(CertificateRejected):
        validator.validate(of_new)
    validator.replace_trust([new.cert], [])
    assert validator.anchor_count == 1 and validator.anchors == (new.cert,)
    validator.validate(of_new)  # its remembered refusal is gone
    with pytest.raises(CertificateRejected) as info:
        validator.validate(of_old)  # and the remembered success
    assert info.value.reason is RejectionReason.UNTRUSTED_CHAIN


async def test_a_verdict_reached_on_replaced_trust_is_not_remembered() -> None:
    old, new = TestCA("CN=Old CA"), TestCA("CN=New CA")
    of_old = _presented(old.issue("CN=a"))
    validator = ChainValidator([old.cert])
    try:
        pending = asyncio.ensure_future(validator.prepare(of_old))
        await asyncio.sleep(0)  # the validation thread has the chain, on the old anchors
        validator.replace_trust([new.cert], [])
        await pending
        assert not validator.has_verdict(of_old)
        with pytest.raises(CertificateRejected):
            validator.validate(of_old)
    finally:
        validator.close()


def test_the_trust_hook_refuses_an_anchor_that_is_not_a_ca(tmp_path: Path) -> None:
    ca = TestCA("CN=Anchor CA")
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(ca.pem)
    validator = ChainValidator([ca.cert])
    hook = trust_reload_hook(Settings(trust_anchors=[anchors], data_dir=tmp_path), validator)
    assert hook() is None  # unchanged
    anchors.write_bytes(ca.pem + ca.issue("CN=leaf").pem)
    with pytest.raises(ReloadRefused) as info:
        hook()
    assert info.value.file == str(anchors) and "is not a CA" in info.value.reason
    anchors.write_text("garbage")
    with pytest.raises(ReloadRefused, match="holds no PEM certificate"):
        hook()


# --- the server's certificate and key ---------------------------------------------------------


def _pair(tmp_path: Path, name: str) -> tuple[Path, Path]:
    issued = TestCA("CN=Server CA").issue("CN=127.0.0.1", san_ip=["127.0.0.1"],
                                          eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    return issued.write(tmp_path / name, "server")


def test_credentials_reload_only_a_changed_pair(tmp_path: Path) -> None:
    cert, key = _pair(tmp_path, "a")
    loaded = load_credentials(cert, key)
    assert loaded is not None
    credentials = ServerCredentials(cert, key, loaded.context)
    assert credentials.prepare() is None
    new_cert, new_key = _pair(tmp_path, "b")
    cert.write_bytes(new_cert.read_bytes())
    key.write_bytes(new_key.read_bytes())
    change = credentials.prepare()
    assert change is not None and credentials.context is loaded.context  # prepared, not in use yet
    change.commit()
    assert credentials.context is not loaded.context
    assert isinstance(credentials.context, ssl.SSLContext)
    assert credentials.prepare() is None


@pytest.mark.parametrize(("key_content", "reason"), [
    (b"", "the key file is empty"),
    (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n",
     "the private key cannot be parsed"),
    (b"random bytes", "the key file is not a PEM private key"),
])
def test_unusable_keys_are_named(tmp_path: Path, key_content: bytes, reason: str) -> None:
    cert, key = _pair(tmp_path, "a")
    key.write_bytes(key_content)
    with pytest.raises(ReloadRefused) as info:
        load_credentials(cert, key)
    assert info.value.file == str(key) and info.value.reason.startswith(reason)


def test_an_encrypted_key_is_named(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    issued = self_signed()
    cert, key = issued.write(tmp_path, "server")
    key.write_bytes(issued.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(ReloadRefused, match="the private key is encrypted"):
        load_credentials(cert, key)


# --- the supervisor of several workers ----------------------------------------------------------


class _Worker:
    def __init__(self, pid: int | None, ready: bool) -> None:
        self.pid = pid
        self.ready = ready

    def wait_until_ready(self, timeout: float, should_exit: threading.Event | None = None) -> bool:
        return self.ready


def test_the_supervisor_forwards_sighup_to_ready_workers_and_replaces_none(monkeypatch: pytest.MonkeyPatch,
                                                                         logs: list[dict[str, Any]]) -> None:
    supervisor = ReloadingMultiprocess.__new__(ReloadingMultiprocess)
    supervisor.config = type("Config", (), {"timeout_worker_healthcheck": 1})()  # type: ignore[assignment]
    supervisor.should_exit = threading.Event()
    workers = [_Worker(101, True), _Worker(102, False), _Worker(103, True)]
    supervisor.processes = workers  # type: ignore[assignment]
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(ReloadingMultiprocess, "restart_all", lambda self: pytest.fail("workers replaced"))
    supervisor.handle_hup()
    assert sent == [(101, signal.SIGHUP), (103, signal.SIGHUP)]
    assert supervisor.processes == workers
    assert [line["event"] for line in logs] == ["reload_not_forwarded", "reload_requested"]
    assert logs[-1]["workers"] == [101, 103]
