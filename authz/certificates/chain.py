"""Path validation for ``tls_client_auth`` (RFC 8705 §2.1), with pyca/cryptography.

Chains are built from the client's leaf, the intermediates it sent and a configured pool,
and must end at one of the configured trust anchors: never at a registered self-signed
certificate, never on OpenSSL's verdict.

Validating costs 80-180 µs for an ordinary chain, but a hostile one can make path building
check signatures until cryptography's limit (two self-issued P-521 "CAs" sharing a subject:
about 80 ms). So the cost of any chain a client can send is bounded three ways:
- what reaches the path builder is pruned: duplicates, self-issued certificates (a root the
  client sent along is in the store already, or is not trusted) and all but the first
  certificate per subject are left out, so path building cannot branch on client input, and
  every certificate's key must be one ``authz.certificates.limits`` accepts;
- every verdict is remembered per chain: a success until the earliest ``notAfter`` in it, a
  refusal for ``REFUSAL_TTL`` seconds (bounded, and apart from the successes, so that refused
  chains cannot evict what legitimate clients need);
- the endpoints validate a chain that has no verdict yet on one dedicated thread
  (``prepare``): cryptography releases the GIL while it builds paths, so the event loop keeps
  serving, and hostile chains queue behind each other rather than take both cores.

A success remembers the CAs of the validated path (``PathCA``, one object per CA certificate,
shared by every path through it): CA pinning and revocation checking read them.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from authz.certificates.limits import public_key_problem
from authz.certificates.path import PathCA
from authz.certificates.presented import PresentedCertificate
from authz.certificates.rejection import CertificateRejected, RejectionReason
from authz.clipping import clipped

__all__ = ["MAX_INTERMEDIATES", "REFUSAL_TTL", "ChainValidator", "Clock", "ValidatedPath", "utc_now"]

Clock = Callable[[], datetime.datetime]

# Intermediates between the leaf and an anchor that path building follows (cryptography's
# default, set here so that the refusal of a longer chain can say so).
MAX_INTERMEDIATES = 8
# Seconds a refusal is remembered: trust anchors only change with a restart, and a chain that
# is not yet valid is remembered only until it becomes valid.
REFUSAL_TTL = 600.0
_REFUSAL_CACHE_SIZE = 4096
_LOGGED_DETAIL_CHARS = 300  # cryptography's messages quote subjects, which the client chose
# Distinct CA certificates kept as shared PathCA objects. Only certificates on a validated path
# get here (issued by a trust anchor's hierarchy); beyond this many, paths get their own copies.
_SHARED_CAS = 1024

# The CAs of a validated path: the leaf's issuer first, the trust anchor last.
ValidatedPath = tuple[PathCA, ...]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _end_entity_policy() -> ExtensionPolicy:
    # Private PKIs issue CN-only client certificates (no SAN) and often omit the AKI; the
    # AKI only helps path building. An EKU, when present, must still allow clientAuth.
    return (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
        .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
    )


def _ca_policy() -> ExtensionPolicy:
    return ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None
    )


@dataclass(frozen=True, slots=True)
class _Success:
    until: float  # POSIX time: the earliest notAfter of the path
    path: ValidatedPath


@dataclass(frozen=True, slots=True)
class _Verified:
    """What the validation thread found: the path, not yet turned into shared PathCAs."""

    until: float
    certificates: tuple[x509.Certificate, ...]  # the leaf's issuer first, the anchor last


@dataclass(frozen=True, slots=True)
class _Refusal:
    reason: RejectionReason
    detail: str
    until: float

    def raise_again(self) -> None:
        raise CertificateRejected(self.reason, f"{self.detail} (refusal remembered)")


class ChainValidator:
    """Validates presented chains against a fixed set of trust anchors."""

    def __init__(
        self,
        anchors: Sequence[x509.Certificate],
        intermediates: Sequence[x509.Certificate] = (),
        *,
        clock: Clock = utc_now,
        cache_size: int = 10_000,
    ) -> None:
        self._anchors = list(anchors)
        self._store = Store(self._anchors) if self._anchors else None
        self._pool = list(intermediates)
        self._clock = clock
        self._ee_policy = _end_entity_policy()
        self._ca_policy = _ca_policy()
        self._cache_size = cache_size
        # chain digest -> until when the validated chain stays valid, and its path
        self._valid_until: OrderedDict[bytes, _Success] = OrderedDict()
        self._refused: OrderedDict[bytes, _Refusal] = OrderedDict()
        self._in_flight: dict[bytes, asyncio.Future[_Verified | CertificateRejected]] = {}
        # DER -> the shared PathCA of that CA certificate; the anchors are known from the start.
        self._cas: dict[bytes, PathCA] = {}
        for anchor in self._anchors:
            self._cas[anchor.public_bytes(serialization.Encoding.DER)] = PathCA(anchor, anchor=True)
        for intermediate in self._pool:
            self._cas.setdefault(intermediate.public_bytes(serialization.Encoding.DER),
                                 PathCA(intermediate, anchor=False))
        self._executor: ThreadPoolExecutor | None = None

    @property
    def anchor_count(self) -> int:
        return len(self._anchors)

    def known_cas(self) -> list[PathCA]:
        """The CAs configured (anchors and the intermediate pool) and met in paths so far."""
        return list(self._cas.values())

    def validate(self, presented: PresentedCertificate) -> ValidatedPath:
        """The CAs of the path if the chain leads to a trust anchor now (the leaf's issuer
        first, the anchor last); raise ``CertificateRejected`` otherwise."""
        now = self._clock()
        key = presented.chain_digest
        remembered = self._remembered(key, now.timestamp())
        if remembered is not None:
            return remembered.path
        outcome = self._outcome(presented, now)
        self._remember(key, presented, outcome)
        if isinstance(outcome, CertificateRejected):
            raise outcome
        return self._valid_until[key].path

    def validated_path(self, presented: PresentedCertificate) -> ValidatedPath | None:
        """The remembered path of a chain validated successfully and still valid, or None
        (no verdict yet, or a refusal); never validates."""
        success = self._valid_until.get(presented.chain_digest)
        if success is None or self._clock().timestamp() >= success.until:
            return None
        return success.path

    def has_verdict(self, presented: PresentedCertificate) -> bool:
        """Whether a verdict on the chain is remembered and still holds: two dictionary
        lookups, for the hot path to skip ``prepare``. An expired one is not a verdict, or
        ``validate`` would reach it again on the event loop."""
        key = presented.chain_digest
        now = self._clock().timestamp()
        success = self._valid_until.get(key)
        if success is not None and now < success.until:
            return True
        refusal = self._refused.get(key)
        return refusal is not None and now < refusal.until

    async def prepare(self, presented: PresentedCertificate) -> None:
        """Reach a verdict on the chain off the event loop, so that ``validate`` finds it
        remembered. Never raises for a refused chain: ``validate`` tells."""
        key = presented.chain_digest
        now = self._clock()
        try:
            if self._remembered(key, now.timestamp()) is not None:
                return
        except CertificateRejected:
            return
        pending = self._in_flight.get(key)
        if pending is None:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="authz-chain-validation")
            pending = asyncio.get_running_loop().run_in_executor(self._executor, self._outcome, presented, now)
            self._in_flight[key] = pending
            # Registered before any waiter's: the verdict is remembered before they resume.
            pending.add_done_callback(functools.partial(self._remember_pending, key, presented))
        # Shielded: a waiter that goes away (its client disconnected) does not cancel the
        # validation other requests of the same chain wait for.
        await asyncio.shield(pending)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _remembered(self, key: bytes, now: float) -> _Success | None:
        """A remembered success; raise for a remembered refusal; None if neither."""
        success = self._valid_until.get(key)
        if success is not None and now < success.until:
            self._valid_until.move_to_end(key)
            return success
        refusal = self._refused.get(key)
        if refusal is not None and now < refusal.until:
            refusal.raise_again()
        return None

    def _outcome(self, presented: PresentedCertificate, now: datetime.datetime) -> _Verified | CertificateRejected:
        """The verdict: until when the chain is valid, or why it is refused. Runs on the
        validation thread too, so it touches no shared state."""
        try:
            return self._validate_uncached(presented, now)
        except CertificateRejected as rejected:
            return rejected

    def _remember_pending(
        self, key: bytes, presented: PresentedCertificate, pending: asyncio.Future[_Verified | CertificateRejected]
    ) -> None:
        self._in_flight.pop(key, None)
        if not pending.cancelled() and pending.exception() is None:
            # An unexpected error is not remembered: validate() meets it again and it is a 500.
            self._remember(key, presented, pending.result())

    def _remember(self, key: bytes, presented: PresentedCertificate, outcome: _Verified | CertificateRejected) -> None:
        if isinstance(outcome, CertificateRejected):
            until = self._clock().timestamp() + REFUSAL_TTL
            if outcome.reason is RejectionReason.NOT_YET_VALID:
                until = min(until, presented.leaf.not_valid_before_utc.timestamp())
            outcome.detail = clipped(outcome.detail, _LOGGED_DETAIL_CHARS) or ""
            self._refused[key] = _Refusal(outcome.reason, outcome.detail, until)
            if len(self._refused) > _REFUSAL_CACHE_SIZE:
                self._refused.popitem(last=False)
            return
        self._refused.pop(key, None)
        path = tuple(self._shared(certificate) for certificate in outcome.certificates)
        self._valid_until[key] = _Success(outcome.until, path)
        if len(self._valid_until) > self._cache_size:
            self._valid_until.popitem(last=False)

    def _shared(self, certificate: x509.Certificate) -> PathCA:
        """The one PathCA of a CA certificate (on the event loop: the table is shared)."""
        der = certificate.public_bytes(serialization.Encoding.DER)
        found = self._cas.get(der)
        if found is None:
            found = PathCA(certificate, anchor=False)
            if len(self._cas) < _SHARED_CAS:
                self._cas[der] = found
        return found

    def _validate_uncached(self, presented: PresentedCertificate, now: datetime.datetime) -> _Verified:
        """Validate; until when the verdict holds and the path, or ``CertificateRejected``."""
        if self._store is None:
            raise CertificateRejected(RejectionReason.UNTRUSTED_CHAIN, "no trust anchors are configured")
        sent, left_out = self._candidates_sent(presented)
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(now)
            .max_chain_depth(MAX_INTERMEDIATES)
            .extension_policies(ca_policy=self._ca_policy, ee_policy=self._ee_policy)
            .build_client_verifier()
        )
        candidates = sent + self._pool
        try:
            verified = verifier.verify(presented.leaf, candidates)
        except VerificationError as exc:
            reason = self._diagnose(presented.leaf, now, str(exc), len(set(candidates)))
            detail = f"{exc}; {left_out} certificate(s) the client sent left out" if left_out else str(exc)
            raise CertificateRejected(reason, detail) from exc
        until = min(cert.not_valid_after_utc for cert in verified.chain).timestamp()
        return _Verified(until, tuple(verified.chain[1:]))

    @staticmethod
    def _candidates_sent(presented: PresentedCertificate) -> tuple[list[x509.Certificate], int]:
        """The intermediates the client sent that path building may use, and how many were
        left out: at most one per subject and none self-issued, so that paths cannot branch
        or loop on what a client sends; each with an accepted key."""
        kept: list[x509.Certificate] = []
        subjects: set[bytes] = set()
        for position, der in enumerate(presented.intermediates_der, start=1):
            try:
                certificate = x509.load_der_x509_certificate(der)
                subject = certificate.subject.public_bytes()
                self_issued = subject == certificate.issuer.public_bytes()
                key_problem = public_key_problem(certificate)
            except ValueError as exc:
                raise CertificateRejected(RejectionReason.UNPARSABLE, f"intermediate {position}: {exc}") from exc
            if key_problem is not None:
                raise CertificateRejected(RejectionReason.UNSUPPORTED_KEY, f"intermediate {position}: {key_problem}")
            if self_issued or subject in subjects:
                continue
            subjects.add(subject)
            kept.append(certificate)
        return kept, len(presented.intermediates_der) - len(kept)

    @staticmethod
    def _diagnose(leaf: x509.Certificate, now: datetime.datetime, message: str, candidates: int) -> RejectionReason:
        """Name the failed check in terms the client can act on."""
        if leaf.not_valid_after_utc < now:
            return RejectionReason.EXPIRED
        if leaf.not_valid_before_utc > now:
            return RejectionReason.NOT_YET_VALID
        try:
            eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
                return RejectionReason.EKU_NOT_CLIENT_AUTH
        except x509.ExtensionNotFound:
            pass
        # Path building stopped at the maximum depth. With more intermediates than it follows,
        # the chain may well lead to an anchor: "does not lead to a trusted anchor" would send
        # the client the wrong way. With fewer, the builder went round in circles (a
        # self-issued CA certificate chains to itself): that chain leads nowhere.
        if "exceeds max depth" in message and candidates > MAX_INTERMEDIATES:
            return RejectionReason.CHAIN_TOO_LONG
        if "candidates exhausted" in message:
            return RejectionReason.UNTRUSTED_CHAIN
        return RejectionReason.INVALID_CERTIFICATE
