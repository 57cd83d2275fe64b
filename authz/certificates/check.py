"""The one decision of RFC 8705 client authentication: does this certificate authenticate
this client? Every endpoint and every deployment mode goes through ``check_client_certificate``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from authz.certificates.chain import ChainValidator, ValidatedPath
from authz.certificates.presented import PresentedCertificate
from authz.certificates.rejection import CertificateRejected, RejectionReason
from authz.certificates.thumbprint import x5t_s256
from authz.certificates.trace import CheckTrace

if TYPE_CHECKING:
    from authz.certificates.revocation.checker import RevocationChecker
    from authz.clients.model import RegisteredClient

__all__ = ["check_client_certificate"]


def check_client_certificate(
    client: RegisteredClient,
    presented: PresentedCertificate | None,
    validator: ChainValidator,
    revocation: RevocationChecker | None = None,
    trace: CheckTrace | None = None,
) -> None:
    """Return if ``presented`` authenticates ``client`` with its registered method; raise
    ``CertificateRejected`` naming the failed check otherwise.

    ``tls_client_auth``: the chain, the registered subject, the CA pin if the client has one,
    then revocation (when configured): the cheap decisions first, and revocation data is only
    consulted for a certificate that would otherwise authenticate the client.

    ``trace`` (``authz explain``) records every step with the values it compared; the
    endpoints pass none."""
    if presented is None:
        raise CertificateRejected(
            RejectionReason.NO_CERTIFICATE,
            "the TLS connection carries no client certificate (the client sent none, "
            "or an empty Certificate message)",
        )
    if client.auth_method == "tls_client_auth":
        path = _validate(validator, presented, trace)
        matcher = client.subject
        assert matcher is not None  # guaranteed by client metadata validation
        if not matcher.matches(presented):
            if trace is not None:
                trace.failed("subject", f"no match for the registered {matcher.parameter}",
                             registered=str(client.subject_value), **_presented(matcher.presented_values(presented)))
            raise CertificateRejected(
                matcher.mismatch,
                f"registered {matcher.parameter}={client.subject_value!r}",
            )
        if trace is not None:
            trace.passed("subject", f"matches the registered {matcher.parameter}",
                         registered=str(client.subject_value), **_presented(matcher.presented_values(presented)))
        if client.pinned_ca_spki_sha256 is not None:
            _check_pin(client.pinned_ca_spki_sha256, path, trace)
        elif trace is not None:
            trace.skipped("ca_pin", "the client is pinned to no CA: any trust anchor's path will do")
        if revocation is not None:
            _check_revocation(revocation, presented, path, trace)
        elif trace is not None:
            trace.skipped("revocation", "not checked: revocation checking is off (--revocation-check)")
        return
    if client.auth_method == "self_signed_tls_client_auth":
        # RFC 8705 §2.2: no chain validation; the certificate must be one the client
        # registered, byte for byte.
        if trace is not None:
            leaf = presented.leaf
            trace.skipped("validity", "not checked for self_signed_tls_client_auth: the registration decides",
                          not_before=leaf.not_valid_before_utc.isoformat(),
                          not_after=leaf.not_valid_after_utc.isoformat())
        if client.jwks_uri is not None and not client.registered_certificates:
            # A set, once fetched, has at least one certificate: none means none was fetched.
            raise CertificateRejected(
                RejectionReason.JWKS_URI_UNAVAILABLE,
                f"no certificate set could be fetched from {client.jwks_uri} yet (see the jwks_uri_fetch_failed "
                "and jwks_uri_refresh_skipped lines)",
            )
        if presented.leaf_der not in client.registered_certificates:
            where = "registered" if client.jwks_uri is None else f"fetched from {client.jwks_uri}"
            if trace is not None:
                trace.failed("registered", "the certificate is not one of the client's registered certificates",
                             registered=", ".join(sorted(x5t_s256(der) for der in client.registered_certificates)),
                             presented=presented.x5t_s256)
            raise CertificateRejected(
                RejectionReason.NOT_REGISTERED,
                f"{len(client.registered_certificates)} certificate(s) {where}, none equal to the presented one",
            )
        if trace is not None:
            trace.passed("registered", "byte for byte one of the client's registered certificates",
                         presented=presented.x5t_s256)
        return
    raise CertificateRejected(
        RejectionReason.NOT_REGISTERED, f"client uses {client.auth_method!r}, not an mTLS method"
    )


def _validate(validator: ChainValidator, presented: PresentedCertificate, trace: CheckTrace | None) -> ValidatedPath:
    """The chain's path; on a resumed TLS session, a chain that leads nowhere is refused for
    what it most likely is: a leaf whose intermediates stayed in the full handshake."""
    try:
        return validator.validate(presented, trace)
    except CertificateRejected as rejected:
        if not (presented.from_resumed_session and rejected.reason is RejectionReason.UNTRUSTED_CHAIN):
            raise
        raise CertificateRejected(
            RejectionReason.RESUMED_WITHOUT_INTERMEDIATES,
            "the TLS session was resumed: it carries the client's leaf only, and the configured intermediates "
            "(--intermediate) and anchors do not complete its path; the intermediates the client sent in its full "
            "handshake are not kept. Add its issuing CA with --intermediate (then kill -HUP) so that its resumed "
            f"sessions validate; on a new connection it sends them again ({rejected.detail})",
            log_fields=rejected.log_fields,
        ) from rejected


def _check_pin(pin: bytes, path: ValidatedPath, trace: CheckTrace | None = None) -> None:
    """The client is pinned to one CA (``tls_client_auth_ca_spki_sha256``): the validated path
    must go through a certificate with that key, as intermediate or as anchor. Without it, any
    trusted CA could issue a certificate with the client's subject DN or SAN."""
    for ca in path:
        if ca.spki_sha256 == pin:
            if trace is not None:
                trace.passed("ca_pin", "the path goes through the pinned CA", pinned=pin.hex(), ca=ca.label)
            return
    labels = [ca.label for ca in path]
    if trace is not None:
        trace.failed("ca_pin", RejectionReason.CA_PIN_MISMATCH.public_description, pinned=pin.hex(),
                     path_cas="; ".join(labels))
    raise CertificateRejected(
        RejectionReason.CA_PIN_MISMATCH,
        f"pinned CA spki sha256 {pin.hex()}; the path's CAs (issuer first): {'; '.join(labels)}",
        log_fields={"path_cas": labels},
    )


def _check_revocation(revocation: RevocationChecker, presented: PresentedCertificate, path: ValidatedPath,
                      trace: CheckTrace | None) -> None:
    """Revocation of the leaf and the path's intermediates (``REVOKED``, ``CA_REVOKED``,
    ``REVOCATION_UNKNOWN`` under hard-fail)."""
    try:
        revocation.check(presented, path)
    except CertificateRejected as rejected:
        if trace is not None:
            trace.failed("revocation", rejected.reason.public_description, detail=rejected.detail,
                         check=revocation.config.mode, policy=revocation.config.policy)
        raise
    if trace is not None:
        trace.passed("revocation", "neither the certificate nor an intermediate of its path is known revoked "
                     "(or the policy accepts what is unknown)",
                     check=revocation.config.mode, policy=revocation.config.policy)


def _presented(values: list[str]) -> dict[str, str]:
    return {"presented": " | ".join(values) if values else "(none)"}
