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
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
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
from authz.certificates.trace import CheckTrace, StepVerdict
from authz.clipping import clipped

__all__ = ["MAX_INTERMEDIATES", "REFUSAL_TTL", "ChainValidator", "Clock", "ValidatedPath", "utc_now"]

Clock = Callable[[], datetime.datetime]

# Intermediates between the leaf and an anchor that path building follows (cryptography's
# default, set here so that the refusal of a longer chain can say so).
MAX_INTERMEDIATES = 8
# Seconds a refusal is remembered: a chain that is not yet valid is remembered only until it
# becomes valid, and a reload of the trust material (``replace_trust``) forgets every verdict.
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
class _Trust:
    """What chains are validated against, replaced as a whole (``ChainValidator.replace_trust``):
    the validation thread reads it once per chain, so it never mixes old and new material."""

    anchors: tuple[x509.Certificate, ...]
    store: Store | None
    pool: tuple[x509.Certificate, ...]
    generation: int

    @classmethod
    def of(cls, anchors: Sequence[x509.Certificate], intermediates: Sequence[x509.Certificate],
           generation: int) -> _Trust:
        return cls(tuple(anchors), Store(list(anchors)) if anchors else None, tuple(intermediates), generation)


@dataclass(frozen=True, slots=True)
class _Refusal:
    reason: RejectionReason
    detail: str
    until: float

    def raise_again(self) -> None:
        raise CertificateRejected(self.reason, f"{self.detail} (refusal remembered)")


class ChainValidator:
    """Validates presented chains against a set of trust anchors (replaced by a reload)."""

    def __init__(
        self,
        anchors: Sequence[x509.Certificate],
        intermediates: Sequence[x509.Certificate] = (),
        *,
        clock: Clock = utc_now,
        cache_size: int = 10_000,
    ) -> None:
        self._trust = _Trust.of(anchors, intermediates, generation=0)
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
        self._reset_cas()
        self._executor: ThreadPoolExecutor | None = None

    @property
    def anchor_count(self) -> int:
        return len(self._trust.anchors)

    @property
    def anchors(self) -> tuple[x509.Certificate, ...]:
        return self._trust.anchors

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        return self._trust.pool

    def known_cas(self) -> list[PathCA]:
        """The CAs configured (anchors and the intermediate pool) and met in paths so far."""
        return list(self._cas.values())

    def replace_trust(self, anchors: Sequence[x509.Certificate], intermediates: Sequence[x509.Certificate]) -> None:
        """Validate against these from now on (a reload, on the event loop). Every remembered
        verdict goes: a chain refused as untrusted may lead to a new anchor, one accepted may
        lead only to a removed one. A validation in flight on the thread finishes against the
        old material, and its verdict is dropped (``_remember_pending``). The shared PathCA
        table starts again from the new anchors and pool (whether a CA is an anchor changes)."""
        self._trust = _Trust.of(anchors, intermediates, generation=self._trust.generation + 1)
        self._valid_until.clear()
        self._refused.clear()
        self._reset_cas()
        # Requests arriving now must not wait for a verdict on the old material.
        self._in_flight = {}

    def validate(self, presented: PresentedCertificate, trace: CheckTrace | None = None) -> ValidatedPath:
        """The CAs of the path if the chain leads to a trust anchor now (the leaf's issuer
        first, the anchor last); raise ``CertificateRejected`` otherwise. With a ``trace``
        (``authz explain``), the chain is validated afresh, to record the path it takes, and
        the verdict is not remembered."""
        now = self._clock()
        if trace is not None:
            try:
                verified = self._validate_uncached(presented, now, trace)
            except CertificateRejected as rejected:
                if not any(step.verdict is StepVerdict.FAILED for step in trace.steps):
                    trace.failed("chain", rejected.reason.public_description, detail=rejected.detail)
                raise
            return tuple(self._shared(certificate) for certificate in verified.certificates)
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
            pending.add_done_callback(functools.partial(self._remember_pending, key, presented,
                                                        self._trust.generation))
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
        self, key: bytes, presented: PresentedCertificate, generation: int,
        pending: asyncio.Future[_Verified | CertificateRejected],
    ) -> None:
        if self._in_flight.get(key) is pending:
            del self._in_flight[key]
        if generation != self._trust.generation:
            return  # reached on trust material replaced since: validate() decides again
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

    def _reset_cas(self) -> None:
        """The shared PathCA table, from the configured anchors and pool."""
        cas: dict[bytes, PathCA] = {}
        for anchor in self._trust.anchors:
            cas[anchor.public_bytes(serialization.Encoding.DER)] = PathCA(anchor, anchor=True)
        for intermediate in self._trust.pool:
            cas.setdefault(intermediate.public_bytes(serialization.Encoding.DER), PathCA(intermediate, anchor=False))
        self._cas = cas

    def _shared(self, certificate: x509.Certificate) -> PathCA:
        """The one PathCA of a CA certificate (on the event loop: the table is shared)."""
        der = certificate.public_bytes(serialization.Encoding.DER)
        found = self._cas.get(der)
        if found is None:
            found = PathCA(certificate, anchor=False)
            if len(self._cas) < _SHARED_CAS:
                self._cas[der] = found
        return found

    def _validate_uncached(self, presented: PresentedCertificate, now: datetime.datetime,
                           trace: CheckTrace | None = None) -> _Verified:
        """Validate; until when the verdict holds and the path, or ``CertificateRejected``."""
        trust = self._trust
        if trust.store is None:
            raise CertificateRejected(RejectionReason.UNTRUSTED_CHAIN, "no trust anchors are configured")
        sent, left_out = self._candidates_sent(presented)
        verifier = (
            PolicyBuilder()
            .store(trust.store)
            .time(now)
            .max_chain_depth(MAX_INTERMEDIATES)
            .extension_policies(ca_policy=self._ca_policy, ee_policy=self._ee_policy)
            .build_client_verifier()
        )
        candidates = sent + list(trust.pool)
        try:
            verified = verifier.verify(presented.leaf, candidates)
        except VerificationError as exc:
            reason = self._diagnose(presented.leaf, now, str(exc), len(set(candidates)), trace)
            detail = f"{exc}; {left_out} certificate(s) the client sent left out" if left_out else str(exc)
            raise CertificateRejected(reason, detail) from exc
        if trace is not None:
            _trace_leaf(trace, presented.leaf, now)
            anchor = verified.chain[-1]
            trace.passed("chain", f"built to the trust anchor {anchor.subject.rfc4514_string()}",
                         path=" <- ".join(c.subject.rfc4514_string() for c in verified.chain),
                         anchor_sha256=anchor.fingerprint(hashes.SHA256()).hex(),
                         **({"left_out": f"{left_out} certificate(s) the client sent"} if left_out else {}))
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
    def _diagnose(leaf: x509.Certificate, now: datetime.datetime, message: str, candidates: int,
                  trace: CheckTrace | None = None) -> RejectionReason:
        """Name the failed check in terms the client can act on (and, explaining, record the
        checks of the leaf it passed on the way)."""
        # First: whatever else is wrong with it, a self-signed certificate never leads to an
        # anchor. The client registered with the wrong method, or sends the wrong certificate,
        # and "not acceptable" or "expired" would send it the wrong way.
        if _is_self_signed(leaf):
            if trace is not None:
                trace.failed("chain", "the certificate is self-signed: it leads to no trust anchor",
                             issuer=leaf.issuer.rfc4514_string())
            return RejectionReason.SELF_SIGNED
        if leaf.not_valid_after_utc < now or leaf.not_valid_before_utc > now:
            if trace is not None:
                _trace_leaf(trace, leaf, now, validity_only=True)
            return RejectionReason.EXPIRED if leaf.not_valid_after_utc < now else RejectionReason.NOT_YET_VALID
        try:
            eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
                if trace is not None:
                    _trace_leaf(trace, leaf, now)
                return RejectionReason.EKU_NOT_CLIENT_AUTH
        except x509.ExtensionNotFound:
            pass
        if trace is not None:
            _trace_leaf(trace, leaf, now)
        # Path building stopped at the maximum depth. With more intermediates than it follows,
        # the chain may well lead to an anchor: "does not lead to a trusted anchor" would send
        # the client the wrong way. With fewer, the builder went round in circles (a
        # self-issued CA certificate chains to itself): that chain leads nowhere.
        if "exceeds max depth" in message and candidates > MAX_INTERMEDIATES:
            reason = RejectionReason.CHAIN_TOO_LONG
        elif "candidates exhausted" in message:
            reason = RejectionReason.UNTRUSTED_CHAIN
        else:
            reason = RejectionReason.INVALID_CERTIFICATE
        if trace is not None:
            trace.failed("chain", reason.public_description, issuer=leaf.issuer.rfc4514_string(),
                         detail=clipped(message, _LOGGED_DETAIL_CHARS) or "")
        return reason


_EKU_NAMES = {
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}


def _is_self_signed(certificate: x509.Certificate) -> bool:
    """Issued by itself, with its own key. Only reached for a refused chain: one signature
    check, on a key ``authz.certificates.limits`` accepted."""
    if certificate.subject.public_bytes() != certificate.issuer.public_bytes():
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _trace_leaf(trace: CheckTrace, leaf: x509.Certificate, now: datetime.datetime, *,
                validity_only: bool = False) -> None:
    """Record the checks of the leaf itself: its validity window, then its EKU."""
    window = {"not_before": leaf.not_valid_before_utc.isoformat(), "not_after": leaf.not_valid_after_utc.isoformat(),
              "now": now.isoformat(timespec="seconds")}
    if leaf.not_valid_after_utc < now:
        trace.failed("validity", f"expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC", **window)
    elif leaf.not_valid_before_utc > now:
        trace.failed("validity", f"not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC", **window)
    else:
        left = leaf.not_valid_after_utc - now
        trace.passed("validity", f"valid now, {left.days} day(s) left", **window)
    if validity_only:
        return
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        trace.passed("eku", "no extendedKeyUsage extension: any use, client authentication included")
        return
    names = ", ".join(_EKU_NAMES.get(usage, usage.dotted_string) for usage in usages)
    if ExtendedKeyUsageOID.CLIENT_AUTH in usages:
        trace.passed("eku", "clientAuth is allowed", extended_key_usage=names)
    else:
        trace.failed("eku", "clientAuth is not among the certificate's extended key usages",
                     extended_key_usage=names)
