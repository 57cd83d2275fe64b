"""The one decision of RFC 8705 client authentication: does this certificate authenticate
this client? Every endpoint and every deployment mode goes through ``check_client_certificate``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from authz.certificates.chain import ChainValidator, ValidatedPath
from authz.certificates.presented import PresentedCertificate
from authz.certificates.rejection import CertificateRejected, RejectionReason

if TYPE_CHECKING:
    from authz.certificates.revocation.checker import RevocationChecker
    from authz.clients.model import RegisteredClient

__all__ = ["check_client_certificate"]


def check_client_certificate(
    client: RegisteredClient,
    presented: PresentedCertificate | None,
    validator: ChainValidator,
    revocation: RevocationChecker | None = None,
) -> None:
    """Return if ``presented`` authenticates ``client`` with its registered method; raise
    ``CertificateRejected`` naming the failed check otherwise.

    ``tls_client_auth``: the chain, the registered subject, the CA pin if the client has one,
    then revocation (when configured): the cheap decisions first, and revocation data is only
    consulted for a certificate that would otherwise authenticate the client."""
    if presented is None:
        raise CertificateRejected(
            RejectionReason.NO_CERTIFICATE,
            "the TLS connection carries no client certificate (the client sent none, "
            "or an empty Certificate message)",
        )
    if client.auth_method == "tls_client_auth":
        path = validator.validate(presented)
        matcher = client.subject
        assert matcher is not None  # guaranteed by client metadata validation
        if not matcher.matches(presented):
            raise CertificateRejected(
                matcher.mismatch,
                f"registered {matcher.parameter}={client.subject_value!r}",
            )
        if client.pinned_ca_spki_sha256 is not None:
            _check_pin(client.pinned_ca_spki_sha256, path)
        if revocation is not None:
            revocation.check(presented, path)
        return
    if client.auth_method == "self_signed_tls_client_auth":
        # RFC 8705 §2.2: no chain validation; the certificate must be one the client
        # registered, byte for byte.
        if presented.leaf_der not in client.registered_certificates:
            raise CertificateRejected(
                RejectionReason.NOT_REGISTERED,
                f"{len(client.registered_certificates)} certificate(s) registered, none equal to the presented one",
            )
        return
    raise CertificateRejected(
        RejectionReason.NOT_REGISTERED, f"client uses {client.auth_method!r}, not an mTLS method"
    )


def _check_pin(pin: bytes, path: ValidatedPath) -> None:
    """The client is pinned to one CA (``tls_client_auth_ca_spki_sha256``): the validated path
    must go through a certificate with that key, as intermediate or as anchor. Without it, any
    trusted CA could issue a certificate with the client's subject DN or SAN."""
    if any(ca.spki_sha256 == pin for ca in path):
        return
    raise CertificateRejected(
        RejectionReason.CA_PIN_MISMATCH,
        f"pinned CA spki sha256 {pin.hex()}; the path's CAs (issuer first): {'; '.join(ca.label for ca in path)}",
        log_fields={"path_cas": [ca.label for ca in path]},
    )
