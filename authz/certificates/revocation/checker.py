"""``RevocationChecker``: is any certificate of a validated ``tls_client_auth`` path revoked?

The leaf and every intermediate are checked (the trust anchor is not: it is trusted by
configuration), each against its issuer in the path:

- CRLs (``crl`` mode): the ``--crl`` files whose issuer is the certificate's issuer, and the CRLs
  of the certificate's HTTP distribution points, fetched in the background and kept until
  nextUpdate. A CRL is used only if the issuer's key verifies its signature, it covers the
  certificate (issuing distribution point) and nextUpdate plus ``crl_grace`` has not passed.
- OCSP (``ocsp`` mode): the responders of the certificate's authority information access,
  answers kept until their nextUpdate (``authz.certificates.revocation.ocsp``).
- ``crl+ocsp``: both are consulted; a certificate revoked by either is revoked, one with a fresh
  answer from either is not.

A certificate without a fresh answer makes the status unknown: ``hard-fail`` refuses the client,
``soft-fail`` accepts it and logs ``revocation_status_unknown``.

The hot path is one dictionary lookup: the verdict on a chain is remembered with the generation
of the revocation data it was computed from, and until the earliest time that data expires or
is due for a refresh; new data (a CRL loaded, an OCSP answer) starts a new generation. Fetching
and parsing never run on a request's way: ``prepare`` (called by the endpoints before client
authentication) starts what is missing in the background and waits at most ``max_wait``
seconds; parsing and signature checks run on a thread of their own.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from authz.certificates.path import PathCA, crl_urls, ocsp_urls
from authz.certificates.presented import PresentedCertificate
from authz.certificates.rejection import CertificateRejected, RejectionReason
from authz.certificates.revocation.config import (
    CRL_FILE_POLL_SECONDS,
    MAX_CRL_SOURCES,
    MAX_OCSP_ANSWERS,
    OCSP_MAX_BYTES,
    RevocationConfig,
)
from authz.certificates.revocation.crl import CRLUnusable, LoadedCRL, RevokedEntry, parse_crl, signature_problem
from authz.certificates.revocation.fetch import Fetcher, FetchFailed
from authz.certificates.revocation.ocsp import OCSPAnswer, OCSPUnusable, build_request, check_response
from authz.metrics import revocation_data_updated

__all__ = ["RevocationChecker", "RevocationCounters", "read_crl_file"]

log = structlog.get_logger("authz.revocation")

T = TypeVar("T")

# Seconds a verdict of unknown status is kept: the next request after it looks again for what
# has arrived or may be fetched again.
_UNKNOWN_TTL = 1.0
# A failed fetch is tried again after 5 s, then 10, 20 ... up to 5 minutes (per URL).
_RETRY_FIRST, _RETRY_MAX = 5.0, 300.0
# A CRL is fetched again this long before its nextUpdate (at most a tenth of its validity), and
# if the one fetched is not newer, a minute later.
_REFRESH_LEAD, _REFRESH_AGAIN = 300.0, 60.0
# A thisUpdate this far in the future (clock skew) makes a CRL unusable.
_SKEW = 300.0
_VERDICTS = 10_000
_MAX_FILE_BYTES = 256 * 1024 * 1024  # a --crl file is the operator's, but not unbounded either


@dataclass
class RevocationCounters:
    """Counts since start, for metrics (read them; they are never reset)."""

    crl_loads: int = 0
    crl_fetch_failures: int = 0
    crls_rejected: int = 0
    ocsp_answers: int = 0
    ocsp_failures: int = 0
    refused_revoked: int = 0
    refused_unknown: int = 0
    accepted_unknown: int = 0  # soft-fail


@dataclass(eq=False)
class _CRLSource:
    """A distribution point URL: its latest CRL, and when to fetch again."""

    url: str
    crl: LoadedCRL | None = None
    task: asyncio.Task[None] | None = None
    refresh_at: float = 0.0  # fetch again (in the background) from then on
    retry_at: float = 0.0  # after a failure: not before then
    failures: int = 0
    error: str | None = None


@dataclass(eq=False)
class _FileCRL:
    path: Path
    stamp: tuple[int, int, int] | None = None  # mtime_ns, size, inode of what was loaded
    crl: LoadedCRL | None = None
    error: str | None = None
    stale_reported: bool = False


@dataclass(eq=False)
class _OCSPEntry:
    answer: OCSPAnswer | None = None
    refresh_at: float = 0.0  # ask again (in the background) from then on
    task: asyncio.Task[None] | None = None
    retry_at: float = 0.0
    failures: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Verdict:
    generation: int
    until: float
    # None: not revoked (or unknown under soft-fail); else the refusal.
    reason: RejectionReason | None = None
    detail: str = ""
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Subject:
    """One certificate of the path to check, with its issuer."""

    certificate: x509.Certificate
    issuer: PathCA
    position: str  # "leaf", "intermediate 1", ...
    crl_urls: tuple[str, ...]
    ocsp_urls: tuple[str, ...]

    @property
    def is_ca(self) -> bool:
        return self.position != "leaf"


@dataclass
class _Status:
    """What the sources say of one certificate."""

    revoked: RevokedEntry | None = None
    revoked_by: str | None = None
    good: bool = False
    until: float = float("inf")  # the earliest time the data used expires or is due for refresh
    problems: list[str] = field(default_factory=list)
    recheck: float = float("inf")  # when a source without an answer may give one (a retry)


def read_crl_file(path: Path) -> LoadedCRL:
    """Read and parse a --crl file (``OSError``, ``CRLUnusable``); blocking."""
    with path.open("rb") as file:
        data = file.read(_MAX_FILE_BYTES + 1)
    if len(data) > _MAX_FILE_BYTES:
        raise CRLUnusable("too_large", f"over {_MAX_FILE_BYTES} bytes")
    return parse_crl(data, str(path))


def _stamp(path: Path) -> tuple[int, int, int]:
    status = path.stat()
    return status.st_mtime_ns, status.st_size, status.st_ino


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


def _serial(certificate: x509.Certificate) -> str:
    return format(certificate.serial_number, "x")


def _name(name: x509.Name) -> str:
    try:
        return name.rfc4514_string()
    except ValueError:
        return "<undecodable name>"


class RevocationChecker:
    def __init__(self, config: RevocationConfig, *, clock: Callable[[], float] = time.time,
                 fetcher: Fetcher | None = None) -> None:
        self.config = config
        self.counters = RevocationCounters()
        self._clock = clock
        self._fetcher = fetcher or Fetcher(config.fetch_timeout)
        self._executor: ThreadPoolExecutor | None = None
        self._generation = 0
        self._verdicts: OrderedDict[bytes, _Verdict] = OrderedDict()
        self._sources: OrderedDict[str, _CRLSource] = OrderedDict()
        self._files = [_FileCRL(Path(path)) for path in config.crl_files]
        self._files_by_issuer: dict[x509.Name, list[_FileCRL]] = {}
        self._ocsp: OrderedDict[tuple[bytes, int], _OCSPEntry] = OrderedDict()
        # Signature checks of a CRL against an issuer in flight: (id of the CRL, issuer SPKI).
        self._verifying: dict[tuple[int, bytes], asyncio.Future[None]] = {}
        # Issuers met in paths (and the anchors), by name: a --crl file loaded later is checked
        # against them before it is used.
        self._issuers: dict[x509.Name, dict[bytes, PathCA]] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._reloads: set[asyncio.Task[None]] = set()

    # --- gauges for metrics --------------------------------------------------------------
    @property
    def generation(self) -> int:
        """Incremented whenever revocation data changes."""
        return self._generation

    def crl_next_updates(self) -> dict[str, datetime.datetime]:
        """The nextUpdate of every CRL held, by source (file path or URL)."""
        held = [f.crl for f in self._files] + [s.crl for s in self._sources.values()]
        return {crl.source: datetime.datetime.fromtimestamp(crl.next_update, datetime.UTC)
                for crl in held if crl is not None}

    @property
    def ocsp_answers_held(self) -> int:
        return sum(1 for entry in self._ocsp.values() if entry.answer is not None)

    # --- life cycle ----------------------------------------------------------------------
    async def start(self, known_cas: Iterable[PathCA] = ()) -> None:
        """Load the --crl files (checked against ``known_cas``, the anchors say) and watch them."""
        for ca in known_cas:
            self._issuers.setdefault(ca.subject, {})[ca.spki_sha256] = ca
        await self._load_files()
        if self._files:
            self._watcher = asyncio.create_task(self._watch_files(), name="authz-crl-files")

    def files_changed(self) -> list[Path]:
        """The --crl files whose content changed since they were loaded (size, mtime or inode);
        read-only, so that a reload hook can call it from its worker thread."""
        changed: list[Path] = []
        for held in self._files:
            try:
                stamp: tuple[int, int, int] | None = _stamp(held.path)
            except OSError:
                stamp = None
            if stamp != held.stamp:
                changed.append(held.path)
        return changed

    def reload_files(self) -> None:
        """Load the --crl files that changed now (``SIGHUP``, on the event loop), not at the
        next poll: in the background, like the poll."""
        task = asyncio.create_task(self._load_files_logged(), name="authz-crl-files-reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _load_files_logged(self) -> None:
        try:
            await self._load_files()
        except Exception:
            log.exception("crl_files_reload_failed")

    def trust_replaced(self, known_cas: Iterable[PathCA]) -> None:
        """The trust anchors and intermediates were reloaded (``ChainValidator.replace_trust``):
        the issuers a --crl file is checked against start again from the new ones, the files
        are checked again at the next load, and no verdict reached on the old paths is reused."""
        self._issuers = {}
        for ca in known_cas:
            self._issuers.setdefault(ca.subject, {})[ca.spki_sha256] = ca
        for held in self._files:
            held.stamp = None  # checked again against the new issuers
        self._verdicts.clear()
        self._new_generation()
        if self._files:
            self.reload_files()

    async def close(self) -> None:
        tasks: list[asyncio.Future[Any]] = [self._watcher] if self._watcher is not None else []
        tasks += [s.task for s in self._sources.values() if s.task is not None]
        tasks += [e.task for e in self._ocsp.values() if e.task is not None]
        tasks += list(self._verifying.values())
        tasks += list(self._reloads)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._fetcher.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # --- the hot path --------------------------------------------------------------------
    def has_verdict(self, presented: PresentedCertificate) -> bool:
        verdict = self._verdicts.get(presented.chain_digest)
        return verdict is not None and verdict.generation == self._generation and self._clock() < verdict.until

    def check(self, presented: PresentedCertificate, path: Sequence[PathCA]) -> None:
        """Return if no certificate of the path is known revoked and the policy accepts what
        is known; raise ``CertificateRejected`` (``REVOKED``, ``CA_REVOKED``,
        ``REVOCATION_UNKNOWN``) otherwise."""
        key = presented.chain_digest
        verdict = self._verdicts.get(key)
        now = self._clock()
        if verdict is None or verdict.generation != self._generation or now >= verdict.until:
            verdict = self._verdict(presented, path, now)
            self._verdicts[key] = verdict
            self._verdicts.move_to_end(key)
            if len(self._verdicts) > _VERDICTS:
                self._verdicts.popitem(last=False)
        if verdict.reason is None:
            return
        if verdict.reason is RejectionReason.REVOCATION_UNKNOWN:
            self.counters.refused_unknown += 1
        else:
            self.counters.refused_revoked += 1
        raise CertificateRejected(verdict.reason, verdict.detail, log_fields=verdict.fields)

    async def prepare(self, presented: PresentedCertificate, path: Sequence[PathCA]) -> None:
        """Get what the verdict on the chain needs, waiting at most ``max_wait`` seconds;
        fetches that take longer go on in the background for the next requests."""
        if self.has_verdict(presented):
            return
        pending = self._start_needed(self._subjects(presented, path), self._clock())
        if pending:
            # asyncio.wait cancels nothing: on timeout, or if this request goes away, the
            # fetches go on and their results serve the next requests.
            await asyncio.wait(pending, timeout=self.config.max_wait)

    # --- verdicts ------------------------------------------------------------------------
    def _subjects(self, presented: PresentedCertificate, path: Sequence[PathCA]) -> Iterator[_Subject]:
        leaf = presented.leaf
        if path:
            yield _Subject(leaf, path[0], "leaf", crl_urls(leaf), ocsp_urls(leaf))
        for position, (ca, issuer) in enumerate(itertools.pairwise(path), start=1):
            yield _Subject(ca.certificate, issuer, f"intermediate {position}", ca.crl_urls, ca.ocsp_urls)

    def _verdict(self, presented: PresentedCertificate, path: Sequence[PathCA], now: float) -> _Verdict:
        subjects = list(self._subjects(presented, path))
        statuses = [(subject, self._status(subject, now)) for subject in subjects]
        until = min((status.until for _, status in statuses), default=float("inf"))
        # Until the data's expiry or refresh time, but for a second at least (at most a second
        # past it, then): a refresh is on its way, and recomputing per request gains nothing.
        until = max(until, now + _UNKNOWN_TTL)
        for subject, status in statuses:
            if status.revoked is not None:
                return self._revoked(presented, subject, status, until)
        unknown = [(subject, status) for subject, status in statuses if not status.good]
        if not unknown:
            return _Verdict(self._generation, until)
        problems = "; ".join(f"{subject.position} (serial {_serial(subject.certificate)}): "
                             f"{', '.join(status.problems) or 'no revocation data'}" for subject, status in unknown)
        self._start_needed(subjects, now)  # e.g. check() without prepare(): fetch for the next requests
        # Until a source may answer again (a retry after a failure; at once for a fetch under
        # way): the status cannot change before, unless data arrives (a new generation).
        recheck = min(status.recheck for _, status in unknown)
        until = min(max(recheck, now + _UNKNOWN_TTL), now + _RETRY_MAX)
        if self.config.hard_fail:
            return _Verdict(self._generation, until, RejectionReason.REVOCATION_UNKNOWN,
                            f"hard-fail: {problems}", {"revocation_policy": "hard-fail"})
        self.counters.accepted_unknown += 1
        log.warning("revocation_status_unknown", policy="soft-fail", outcome="accepted", problems=problems,
                    **presented.log_fields())
        return _Verdict(self._generation, until)

    def _revoked(self, presented: PresentedCertificate, subject: _Subject, status: _Status,
                 until: float) -> _Verdict:
        entry = status.revoked
        assert entry is not None
        fields = {
            "revoked_certificate": subject.position,
            "revoked_serial": format(entry.serial, "x"),
            "revoked_issuer": _name(subject.certificate.issuer),
            "revocation_reason": entry.reason,
            "revocation_reason_code": entry.reason_code,
            "revocation_source": status.revoked_by,
        }
        log.warning("client_certificate_revoked", **fields, **presented.log_fields())
        reason = RejectionReason.REVOKED if subject.position == "leaf" else RejectionReason.CA_REVOKED
        detail = (f"{subject.position} serial {fields['revoked_serial']} revoked "
                  f"(reason {entry.reason or 'not given'}) according to {status.revoked_by}")
        return _Verdict(self._generation, until, reason, detail, fields)

    def _status(self, subject: _Subject, now: float) -> _Status:
        status = _Status()
        if self.config.crl:
            self._crl_status(subject, now, status)
        if self.config.ocsp and status.revoked is None:
            self._ocsp_status(subject, now, status)
        return status

    def _crl_status(self, subject: _Subject, now: float, status: _Status) -> None:
        serial = subject.certificate.serial_number
        usable: list[tuple[LoadedCRL, float]] = []  # with the time until it may be used
        files = self._files_by_issuer.get(subject.issuer.subject, ())
        for held in files:
            crl = held.crl
            if crl is not None and crl.covers(subject.crl_urls, subject.is_ca):
                problem = self._crl_problem(crl, subject.issuer, now)
                if problem is None:
                    usable.append((crl, crl.next_update + self.config.crl_grace))
                else:
                    status.problems.append(f"{held.path}: {problem}")
        for url in subject.crl_urls:
            source = self._sources.get(url)
            crl = source.crl if source is not None else None
            if crl is not None and crl.covers(subject.crl_urls, subject.is_ca):
                problem = self._crl_problem(crl, subject.issuer, now)
                if problem is None:
                    assert source is not None
                    usable.append((crl, min(crl.next_update + self.config.crl_grace, source.refresh_at)))
                    continue
                status.problems.append(f"{url}: {problem}")
            elif crl is not None:
                status.problems.append(f"{url}: the CRL does not cover the certificate (issuing distribution point)")
            if source is not None and source.error is not None:
                status.problems.append(f"{url}: {source.error}")
                status.recheck = min(status.recheck, source.retry_at)
            else:
                status.problems.append(f"{url}: {'being fetched' if source is not None else 'not fetched yet'}")
                status.recheck = now
        if not usable:
            if not subject.crl_urls and not files:
                status.problems.append(f"no CRL: no --crl file of {_name(subject.issuer.subject)} and no HTTP "
                                       "CRL distribution point in the certificate")
            return
        for crl, until in usable:
            status.until = min(status.until, until)
            if serial in crl.revoked:
                status.revoked, status.revoked_by = crl.entry(serial), f"CRL {crl.source}"
                return
        status.good = True

    def _crl_problem(self, crl: LoadedCRL, issuer: PathCA, now: float) -> str | None:
        """Why the CRL cannot be used for certificates of ``issuer`` now, or None."""
        if issuer.spki_sha256 not in crl.signature_checked:
            return "signature not checked yet"
        problem = crl.signature_checked[issuer.spki_sha256]
        if problem is not None:
            return f"bad signature ({problem})"
        if now > crl.next_update + self.config.crl_grace:
            return f"stale (nextUpdate {_iso(crl.next_update)}, grace {self.config.crl_grace:g} s)"
        if crl.this_update > now + _SKEW:
            return f"not yet valid (thisUpdate {_iso(crl.this_update)})"
        return None

    def _ocsp_status(self, subject: _Subject, now: float, status: _Status) -> None:
        if not subject.ocsp_urls:
            status.problems.append("no OCSP responder (HTTP, in authority information access) in the certificate")
            return
        entry = self._ocsp.get((subject.issuer.spki_sha256, subject.certificate.serial_number))
        if entry is None or entry.answer is None or now >= entry.answer.until:
            if entry is not None and entry.error is not None:
                status.problems.append(f"OCSP: {entry.error}")
                status.recheck = min(status.recheck, entry.retry_at)
            else:
                status.problems.append("OCSP: no answer yet")
                status.recheck = now
            return
        answer = entry.answer
        if answer.status == "unknown":
            status.problems.append(f"OCSP {answer.url}: the responder does not know the certificate")
            status.recheck = min(status.recheck, entry.refresh_at)
            return
        status.until = min(status.until, entry.refresh_at)
        if answer.status == "revoked":
            status.revoked = RevokedEntry(subject.certificate.serial_number, answer.reason, answer.reason_code)
            status.revoked_by = f"OCSP {answer.url}"
            return
        status.good = True

    # --- getting data ----------------------------------------------------------------------
    def _start_needed(self, subjects: Iterable[_Subject], now: float) -> list[asyncio.Future[Any]]:
        """Start the fetches and checks the verdict on these certificates needs; the ones a
        request should wait for (data missing or unusable; a refresh of usable data is not)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return []
        pending: list[asyncio.Future[Any]] = []
        for subject in subjects:
            issuer = subject.issuer
            self._issuers.setdefault(issuer.subject, {})[issuer.spki_sha256] = issuer
            if self.config.crl:
                pending += self._need_crl(subject, now)
            if self.config.ocsp:
                pending += self._need_ocsp(subject, now)
        return pending

    def _need_crl(self, subject: _Subject, now: float) -> list[asyncio.Future[Any]]:
        pending: list[asyncio.Future[Any]] = []
        file_usable = False
        for held in self._files_by_issuer.get(subject.issuer.subject, ()):
            if held.crl is not None and held.crl.covers(subject.crl_urls, subject.is_ca):
                if subject.issuer.spki_sha256 not in held.crl.signature_checked:
                    pending.append(self._verify(held.crl, subject.issuer))
                elif self._crl_problem(held.crl, subject.issuer, now) is None:
                    file_usable = True
        if file_usable:
            return pending  # the operator's CRL is enough: no fetch of distribution points
        for url in subject.crl_urls:
            source = self._source(url)
            crl = source.crl
            usable = crl is not None and self._crl_problem(crl, subject.issuer, now) is None
            if crl is not None and subject.issuer.spki_sha256 not in crl.signature_checked:
                pending.append(self._verify(crl, subject.issuer))
                continue
            if source.task is not None:
                if not usable:
                    pending.append(source.task)
            elif now >= source.retry_at and (not usable or now >= source.refresh_at):
                source.task = self._spawn(self._fetch_crl(source, subject.issuer), f"authz-crl {url}")
                if not usable:
                    pending.append(source.task)
        return pending

    def _need_ocsp(self, subject: _Subject, now: float) -> list[asyncio.Future[Any]]:
        if not subject.ocsp_urls:
            return []
        key = (subject.issuer.spki_sha256, subject.certificate.serial_number)
        entry = self._ocsp.get(key)
        if entry is None:
            entry = self._ocsp[key] = _OCSPEntry()
            if len(self._ocsp) > MAX_OCSP_ANSWERS:
                self._ocsp.popitem(last=False)
        self._ocsp.move_to_end(key)
        answer = entry.answer
        usable = answer is not None and now < answer.until
        if entry.task is not None:
            return [] if usable else [entry.task]
        if now < entry.retry_at or (usable and now < entry.refresh_at):
            return []
        entry.task = self._spawn(self._query_ocsp(entry, subject), f"authz-ocsp {subject.ocsp_urls[0]}")
        return [] if usable else [entry.task]

    def _source(self, url: str) -> _CRLSource:
        source = self._sources.get(url)
        if source is None:
            source = self._sources[url] = _CRLSource(url)
            if len(self._sources) > MAX_CRL_SOURCES:
                self._sources.popitem(last=False)
        self._sources.move_to_end(url)
        return source

    @staticmethod
    def _spawn(coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        # The source (or OCSP entry) holds the task until it is done: it is not collected.
        return asyncio.create_task(coroutine, name=name)

    async def _off_loop(self, function: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="authz-revocation")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def _verify(self, crl: LoadedCRL, issuer: PathCA) -> asyncio.Future[None]:
        """Check the CRL's signature against ``issuer`` on the revocation thread (once)."""
        key = (id(crl), issuer.spki_sha256)
        pending = self._verifying.get(key)
        if pending is None:
            async def verify() -> None:
                try:
                    problem = await self._off_loop(signature_problem, crl, issuer)
                finally:
                    self._verifying.pop(key, None)
                crl.signature_checked[issuer.spki_sha256] = problem
                if problem is not None:
                    self._rejected(crl.source, "bad_signature", problem, crl)
                self._new_generation()

            pending = self._verifying[key] = asyncio.ensure_future(verify())
        return pending

    async def _fetch_crl(self, source: _CRLSource, issuer: PathCA) -> None:
        try:
            try:
                data = await self._fetcher.get(source.url, self.config.crl_max_bytes)
            except FetchFailed as exc:
                self._crl_fetch_failed(source, str(exc))
                return
            try:
                loaded = await self._off_loop(self._checked_crl, data, source.url, issuer)
            except CRLUnusable as exc:
                self._rejected(source.url, exc.why, exc.detail, None)
                self._crl_fetch_failed(source, f"CRL rejected: {exc}", logged=True)
                return
            except Exception as exc:  # a bug, not the CA's: logged with its traceback, retried later
                log.exception("crl_fetch_failed", source=source.url, error=repr(exc))
                self._crl_fetch_failed(source, f"internal error: {exc!r}", logged=True)
                return
            now = self._clock()
            source.failures, source.retry_at, source.error = 0, 0.0, None
            if source.crl is not None and source.crl.digest == loaded.digest:
                source.refresh_at = now + _REFRESH_AGAIN  # not republished yet
                log.debug("crl_unchanged", source=source.url, next_update=_iso(loaded.next_update))
                return
            if source.crl is not None and loaded.this_update < source.crl.this_update:
                source.refresh_at = now + _REFRESH_AGAIN
                log.warning("crl_rejected", source=source.url, why="older",
                            detail="older than the CRL held (thisUpdate)", **loaded.log_fields())
                return
            source.crl = loaded
            validity = loaded.next_update - loaded.this_update
            source.refresh_at = max(now + _REFRESH_AGAIN,
                                    loaded.next_update - min(_REFRESH_LEAD, max(validity, 0.0) / 10))
            self.counters.crl_loads += 1
            log.info("crl_loaded", **loaded.log_fields())
            self._report_freshness(loaded)
            self._new_generation()
        finally:
            source.task = None

    def _report_freshness(self, loaded: LoadedCRL) -> None:
        """To the metrics (authz_revocation_data_* gauges) and to /readyz, which is not ready
        while hard-fail revocation data is past its nextUpdate."""
        revocation_data_updated(f"crl:{loaded.source}", next_update=loaded.next_update,
                                hard_fail=self.config.hard_fail)

    def _checked_crl(self, data: bytes, url: str, issuer: PathCA) -> LoadedCRL:
        """Parse and check a fetched CRL (on the revocation thread)."""
        loaded = parse_crl(data, url)
        problem = signature_problem(loaded, issuer)
        if problem is not None:
            raise CRLUnusable("bad_signature", problem)
        loaded.signature_checked[issuer.spki_sha256] = None
        now = self._clock()
        if now > loaded.next_update + self.config.crl_grace:
            raise CRLUnusable("stale", f"nextUpdate {_iso(loaded.next_update)} has passed "
                                       f"(grace {self.config.crl_grace:g} s)")
        if loaded.this_update > now + _SKEW:
            raise CRLUnusable("not_yet_valid", f"thisUpdate {_iso(loaded.this_update)} is in the future")
        return loaded

    def _crl_fetch_failed(self, source: _CRLSource, error: str, *, logged: bool = False) -> None:
        source.failures += 1
        delay = min(_RETRY_MAX, _RETRY_FIRST * 2 ** (source.failures - 1))
        source.retry_at = self._clock() + delay
        source.error = error
        self.counters.crl_fetch_failures += 1
        if not logged:
            log.warning("crl_fetch_failed", source=source.url, error=error, attempt=source.failures,
                        retry_in=delay, holding_crl=source.crl is not None)
        self._new_generation()

    def _rejected(self, source: str, why: str, detail: str, crl: LoadedCRL | None) -> None:
        self.counters.crls_rejected += 1
        log.warning("crl_rejected", source=source, why=why, detail=detail,
                    **({k: v for k, v in crl.log_fields().items() if k != "source"} if crl else {}))

    async def _query_ocsp(self, entry: _OCSPEntry, subject: _Subject) -> None:
        try:
            nonce = os.urandom(16) if self.config.ocsp_nonce else None
            request = build_request(subject.certificate, subject.issuer, nonce)
            body = request.public_bytes(serialization.Encoding.DER)
            errors: list[str] = []
            for url in subject.ocsp_urls:
                try:
                    data = await self._fetcher.post(url, body, "application/ocsp-request", OCSP_MAX_BYTES)
                    now = datetime.datetime.fromtimestamp(self._clock(), datetime.UTC)
                    answer = await self._off_loop(check_response, data, request, subject.issuer, nonce, url, now)
                except (FetchFailed, OCSPUnusable) as exc:
                    errors.append(f"{url}: {exc}")
                    continue
                except Exception as exc:  # a bug, not the responder's: logged, and the next URL tried
                    log.exception("ocsp_failed", responder=url, error=repr(exc))
                    errors.append(f"{url}: internal error: {exc!r}")
                    continue
                entry.answer, entry.failures, entry.retry_at, entry.error = answer, 0, 0.0, None
                # Asked again shortly before it expires (a tenth of its remaining life, at
                # most 5 minutes), so that requests do not wait for the next answer.
                fetched = self._clock()
                entry.refresh_at = answer.until - min(_REFRESH_LEAD, max(answer.until - fetched, 0.0) / 10)
                self.counters.ocsp_answers += 1
                log.info("ocsp_checked", responder=url, serial=_serial(subject.certificate),
                         issuer=_name(subject.certificate.issuer), certificate=subject.position,
                         status=answer.status, revocation_reason=answer.reason,
                         revocation_reason_code=answer.reason_code, this_update=_iso(answer.this_update),
                         until=_iso(answer.until))
                self._new_generation()
                return
            entry.failures += 1
            delay = min(_RETRY_MAX, _RETRY_FIRST * 2 ** (entry.failures - 1))
            entry.retry_at = self._clock() + delay
            entry.error = "; ".join(errors)
            self.counters.ocsp_failures += 1
            log.warning("ocsp_failed", serial=_serial(subject.certificate), issuer=_name(subject.certificate.issuer),
                        certificate=subject.position, error=entry.error, attempt=entry.failures, retry_in=delay,
                        holding_answer=entry.answer is not None)
            self._new_generation()
        finally:
            entry.task = None

    def _new_generation(self) -> None:
        self._generation += 1

    # --- --crl files -----------------------------------------------------------------------
    async def _watch_files(self) -> None:
        while True:
            await asyncio.sleep(CRL_FILE_POLL_SECONDS)
            try:
                await self._load_files()
            except Exception:  # a watcher that dies would silently stop reloads
                log.exception("crl_files_reload_failed")

    async def _load_files(self) -> None:
        changed = False
        for held in self._files:
            try:
                stamp = await self._off_loop(_stamp, held.path)
            except OSError as exc:
                if held.error is None:
                    log.warning("crl_rejected", source=str(held.path), why="unreadable", detail=str(exc),
                                holding_crl=held.crl is not None)
                held.error, held.stamp = str(exc), None
                continue
            if stamp == held.stamp:
                self._report_stale(held)
                continue
            held.stamp = stamp
            candidates = [ca for by_key in self._issuers.values() for ca in by_key.values()]
            try:
                loaded = await self._off_loop(self._load_file, held.path, candidates)
            except (OSError, CRLUnusable) as exc:
                held.error = str(exc)
                self.counters.crls_rejected += 1
                # The CRL loaded before stays in use while it is fresh: a half-written or
                # broken file does not leave the issuer without a CRL.
                log.warning("crl_rejected", source=str(held.path), why=getattr(exc, "why", "unreadable"),
                            detail=getattr(exc, "detail", str(exc)), holding_crl=held.crl is not None)
                continue
            for problem in loaded.signature_checked.values():
                if problem is not None:
                    self._rejected(str(held.path), "bad_signature", problem, loaded)
            held.crl, held.error, held.stale_reported = loaded, None, False
            self.counters.crl_loads += 1
            log.info("crl_loaded", **loaded.log_fields())
            self._report_freshness(loaded)
            self._report_stale(held)
            changed = True
        if changed:
            self._files_by_issuer = {}
            for held in self._files:
                if held.crl is not None:
                    self._files_by_issuer.setdefault(held.crl.issuer_name, []).append(held)
            self._new_generation()

    def _load_file(self, path: Path, candidates: list[PathCA]) -> LoadedCRL:
        """Read, parse and check a --crl file against the issuers known (revocation thread)."""
        loaded = read_crl_file(path)
        for ca in candidates:
            if ca.subject == loaded.issuer_name:
                loaded.signature_checked[ca.spki_sha256] = signature_problem(loaded, ca)
        return loaded

    def _report_stale(self, held: _FileCRL) -> None:
        crl = held.crl
        if crl is None or held.stale_reported or self._clock() <= crl.next_update + self.config.crl_grace:
            return
        held.stale_reported = True
        self.counters.crls_rejected += 1
        log.warning("crl_rejected", source=str(held.path), why="stale",
                    detail=f"nextUpdate {_iso(crl.next_update)} has passed (grace {self.config.crl_grace:g} s); "
                           "replace the file", **{k: v for k, v in crl.log_fields().items() if k != "source"})

