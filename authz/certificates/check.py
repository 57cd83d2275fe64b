"""The one decision of RFC 8705 client authentication: does this certificate authenticate
this client? Every endpoint and every deployment mode goes through ``check_client_certificate``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from authz.certificates.chain import ChainValidator
from authz.certificates.presented import PresentedCertificate
from authz.certificates.rejection import CertificateRejected, RejectionReason

if TYPE_CHECKING:
    from authz.clients.model import RegisteredClient

__all__ = ["check_client_certificate"]


def check_client_certificate(
    client: RegisteredClient,
    presented: PresentedCertificate | None,
    validator: ChainValidator,
) -> None:
    """Return if ``presented`` authenticates ``client`` with its registered method; raise
    ``CertificateRejected`` naming the failed check otherwise."""
    if presented is None:
        raise CertificateRejected(
            RejectionReason.NO_CERTIFICATE,
            "the TLS connection carries no client certificate (the client sent none, "
            "or an empty Certificate message)",
        )
    if client.auth_method == "tls_client_auth":
        validator.validate(presented)
        matcher = client.subject
        assert matcher is not None  # guaranteed by client metadata validation
        if not matcher.matches(presented):
            raise CertificateRejected(
                matcher.mismatch,
                f"registered {matcher.parameter}={client.subject_value!r}",
            )
        return
    if client.auth_method == "self_signed_tls_client_auth":
        # RFC 8705 §2.2: no chain validation; the certificate must be one the client
        # registered, byte for byte.
        if client.jwks_uri is not None and not client.registered_certificates:
            # A set, once fetched, has at least one certificate: none means none was fetched.
            raise CertificateRejected(
                RejectionReason.JWKS_URI_UNAVAILABLE,
                f"no certificate set could be fetched from {client.jwks_uri} yet (see the jwks_uri_fetch_failed "
                "and jwks_uri_refresh_skipped lines)",
            )
        if presented.leaf_der not in client.registered_certificates:
            where = "registered" if client.jwks_uri is None else f"fetched from {client.jwks_uri}"
            raise CertificateRejected(
                RejectionReason.NOT_REGISTERED,
                f"{len(client.registered_certificates)} certificate(s) {where}, none equal to the presented one",
            )
        return
    raise CertificateRejected(
        RejectionReason.NOT_REGISTERED, f"client uses {client.auth_method!r}, not an mTLS method"
    )
