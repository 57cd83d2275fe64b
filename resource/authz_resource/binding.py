"""RFC 8705 §3: the token must be bound to the certificate of *this* TLS connection.

The certificate comes from the ASGI TLS extension through ``authz.certificates.presented``,
the same reader the authorization server uses, so both sides agree on what was presented
(direct TLS or, later, a trusted proxy's forwarded certificate).
"""

from __future__ import annotations

import hmac

from authz.certificates.presented import PresentedCertificate, presented_certificate
from authz.certificates.rejection import CertificateRejected
from authz_resource._asgi import Scope
from authz_resource.errors import InvalidToken
from authz_resource.token import AccessToken

__all__ = ["UNPARSABLE_CERTIFICATE", "check_binding", "connection_certificate"]

UNPARSABLE_CERTIFICATE = "unparsable_certificate"  # the refusal reason


def connection_certificate(scope: Scope) -> PresentedCertificate | None:
    try:
        return presented_certificate(scope)
    except CertificateRejected as exc:
        raise InvalidToken(UNPARSABLE_CERTIFICATE, exc.public_description, detail=exc.detail) from exc


def check_binding(token: AccessToken, certificate: PresentedCertificate | None, *, allow_unbound: bool) -> None:
    expected = token.certificate_thumbprint
    if expected is None:
        if allow_unbound:
            return
        raise InvalidToken(
            "unbound_token",
            "the access token is not bound to a client certificate (no cnf x5t#S256), "
            "and this resource only accepts certificate-bound tokens",
        )
    if certificate is None:
        raise InvalidToken(
            "no_certificate",
            "the access token is bound to a client certificate, but no client certificate "
            "was presented on the TLS connection",
        )
    # Constant time: the comparison must not tell an attacker how much of a forged
    # certificate's thumbprint matched.
    if not hmac.compare_digest(expected.encode(), certificate.x5t_s256.encode()):
        raise InvalidToken(
            "certificate_mismatch",
            "the client certificate does not match the token's binding (cnf x5t#S256)",
            detail=f"token bound to x5t#S256={expected}, connection presented x5t#S256={certificate.x5t_s256}",
        )
