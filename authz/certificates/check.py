"""The one decision of RFC 8705 client authentication: does this certificate authenticate
this client? Every endpoint and every deployment mode goes through ``check_client_certificate``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from authz.certificates.chain import ChainValidator
from authz.certificates.presented import PresentedCertificate
from authz.certificates.rejection import CertificateRejected, RejectionReason
from authz.certificates.thumbprint import x5t_s256
from authz.certificates.trace import CheckTrace

if TYPE_CHECKING:
    from authz.clients.model import RegisteredClient

__all__ = ["check_client_certificate"]


def check_client_certificate(
    client: RegisteredClient,
    presented: PresentedCertificate | None,
    validator: ChainValidator,
    trace: CheckTrace | None = None,
) -> None:
    """Return if ``presented`` authenticates ``client`` with its registered method; raise
    ``CertificateRejected`` naming the failed check otherwise. ``trace`` (``authz explain``)
    records every step with the values it compared; the endpoints pass none."""
    if presented is None:
        raise CertificateRejected(
            RejectionReason.NO_CERTIFICATE,
            "the TLS connection carries no client certificate (the client sent none, "
            "or an empty Certificate message)",
        )
    if client.auth_method == "tls_client_auth":
        validator.validate(presented, trace)
        if trace is not None:
            # Where CRL/OCSP checking will record its verdict.
            trace.skipped("revocation", "not checked: this server checks no CRL or OCSP")
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


def _presented(values: list[str]) -> dict[str, str]:
    return {"presented": " | ".join(values) if values else "(none)"}
