"""Why a presented certificate does not authenticate a client.

Each reason has a fixed public wording (safe to send to the client as
``error_description``); the free-form ``detail`` is for the operator's log only.
"""

from __future__ import annotations

import enum

from authz.certificates.limits import ACCEPTED_KEYS, MAX_CHAIN_BYTES, MAX_CHAIN_CERTIFICATES

__all__ = ["CertificateRejected", "RejectionReason"]


class RejectionReason(enum.Enum):
    NO_CERTIFICATE = "no client certificate was presented on the TLS connection"
    UNPARSABLE = "the client certificate could not be parsed as X.509"
    UNTRUSTED_CHAIN = "the client certificate chain does not lead to a trusted anchor"
    # On a resumed TLS session, whose chain is the leaf alone (authz.tls.resumption).
    RESUMED_WITHOUT_INTERMEDIATES = (
        "the client certificate does not lead to a trusted anchor without intermediate CA certificates, and a resumed "
        "TLS session does not carry the ones the client sent: connect again without resuming the TLS session"
    )
    CHAIN_TOO_LONG = "the client certificate chain is longer than this server accepts"
    CHAIN_TOO_LARGE = (
        f"the client certificate chain is larger than this server accepts (at most {MAX_CHAIN_CERTIFICATES} "
        f"certificates and {MAX_CHAIN_BYTES // 1024} KiB in all)"
    )
    UNSUPPORTED_KEY = f"a certificate the client sent has a public key this server does not accept ({ACCEPTED_KEYS})"
    EXPIRED = "the client certificate has expired"
    NOT_YET_VALID = "the client certificate is not yet valid"
    EKU_NOT_CLIENT_AUTH = "the client certificate's extended key usage does not allow client authentication"
    INVALID_CERTIFICATE = "the client certificate or its chain is not acceptable for client authentication"
    # A self-signed certificate sent to a tls_client_auth client: it registered with the other
    # method, or the client sends the wrong certificate (a CA:TRUE one was INVALID_CERTIFICATE).
    SELF_SIGNED = "the certificate is self-signed; this client uses tls_client_auth"
    SUBJECT_DN_MISMATCH = "the certificate subject DN does not match the one registered for this client"
    SAN_DNS_MISMATCH = "the certificate has no dNSName SAN matching the one registered for this client"
    SAN_URI_MISMATCH = "the certificate has no URI SAN matching the one registered for this client"
    SAN_IP_MISMATCH = "the certificate has no iPAddress SAN matching the one registered for this client"
    SAN_EMAIL_MISMATCH = "the certificate has no rfc822Name SAN matching the one registered for this client"
    NOT_REGISTERED = "the client certificate is not one registered for this client"
    CA_PIN_MISMATCH = "the client certificate was not issued by the CA this client is pinned to"
    REVOKED = "the client certificate has been revoked"
    CA_REVOKED = "a CA certificate in the client certificate's chain has been revoked"
    REVOCATION_UNKNOWN = "the revocation status of the client certificate or its chain could not be determined"
    JWKS_URI_UNAVAILABLE = "the server could not get this client's certificates from its jwks_uri; retry later"
    PROXY_HEADER_UNUSABLE = "the client certificate header set by the proxy could not be decoded"

    @property
    def public_description(self) -> str:
        return self.value


class CertificateRejected(Exception):
    """The certificate does not authenticate the client."""

    def __init__(self, reason: RejectionReason, detail: str = "", *, cert_sha256: str | None = None,
                 public_detail: str | None = None, log_fields: dict[str, object] | None = None) -> None:
        super().__init__(reason.public_description)
        self.reason = reason
        self.detail = detail
        # More for the operator's line, beside detail (a revocation's serial and reason code,
        # the CAs of a path); never sent to the client.
        self.log_fields = log_fields or {}
        # Safe to show the client (words of ours, never its input), e.g. which header failed.
        self.public_detail = public_detail
        # Set when the certificate's bytes are known but not usable (UNPARSABLE): the operator
        # can still tell which certificate it was.
        self.cert_sha256 = cert_sha256

    @property
    def public_description(self) -> str:
        """The ``error_description``: the reason's fixed wording, and the public detail."""
        if self.public_detail:
            return f"{self.reason.public_description} ({self.public_detail})"
        return self.reason.public_description
