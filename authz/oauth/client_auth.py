"""RFC 8705 §2 client authentication, registered in authlib's client-auth registry.

One authenticator per method (``tls_client_auth``, ``self_signed_tls_client_auth``); both
make their decision through ``check_client_certificate``. A refusal raises
``MutualTLSClientError`` with the fixed public wording of the failed check and writes one
structured log line with everything the operator needs to find out why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from authlib.oauth2.rfc6749.errors import InvalidRequestError

from authz.certificates.chain import ChainValidator
from authz.certificates.check import check_client_certificate
from authz.certificates.presented import PresentedCertificate, presented_certificate
from authz.certificates.rejection import CertificateRejected, RejectionReason
from authz.certificates.revocation.checker import RevocationChecker
from authz.certificates.thumbprint import x5t_from_sha256_hex
from authz.clients.directory import UnusableRegistration
from authz.clients.model import RegisteredClient
from authz.metrics import state as metrics
from authz.oauth.errors import MutualTLSClientError
from authz.oauth.request import ClientRequest

__all__ = ["ClientAuthenticator", "OTHER_MECHANISM_PARAMETERS"]

log = structlog.get_logger("authz.client_auth")

# Parameters of other client authentication mechanisms (RFC 6749 §2.3.1, RFC 7523).
OTHER_MECHANISM_PARAMETERS = ("client_secret", "client_assertion", "client_assertion_type")


class ClientAuthenticator:
    """Resolves and authenticates the client of a ``ClientRequest``; one per server."""

    def __init__(self, validator: ChainValidator, realm: str, revocation: RevocationChecker | None = None) -> None:
        self.validator = validator
        self.realm = realm
        self.revocation = revocation

    def for_method(self, method: str) -> Callable[[Any, ClientRequest], RegisteredClient | None]:
        """The function authlib's ``register_client_auth_method`` takes for ``method``."""

        def authenticate(query_client: Any, request: ClientRequest) -> RegisteredClient | None:
            client = self._resolve(request)
            if client.auth_method != method:
                return None  # authlib tries the client's own method next
            self._check(client, request)
            return client

        return authenticate

    def _refuse(self, request: ClientRequest, description: str, *, metrics_reason: str,
                **fields: Any) -> MutualTLSClientError:
        counter = metrics.ACTIVE
        if counter is not None:
            # The reason is the check that failed (a RejectionReason, or one of the resolution
            # steps above): fixed in the code, whatever the client sent.
            counter.refused(request.endpoint, "invalid_client", metrics_reason)
        log.warning(
            "client_authentication_failed",
            endpoint=request.endpoint,
            peer=request.peer,
            error="invalid_client",
            error_description=description,
            **fields,
        )
        return MutualTLSClientError(description, self.realm, _authorization_scheme(request))

    def _resolve(self, request: ClientRequest) -> RegisteredClient:
        other = [p for p in OTHER_MECHANISM_PARAMETERS if p in request.form]
        if "authorization" in request.headers:
            other.insert(0, "Authorization header")
        if other:
            if self._certificate_sent(request):
                # Two mechanisms at once: a malformed request (RFC 6749 §2.3: use only one).
                two = InvalidRequestError(  # logged and counted by the server's error hook
                    "the request uses more than one client authentication mechanism "
                    f"(TLS client certificate and {', '.join(other)}); send only the certificate"
                )
                two.metrics_reason = "two_mechanisms"
                raise two
            # Only a mechanism this server does not support: RFC 6749 §5.2 calls that a failed
            # client authentication (invalid_client, 401 and a challenge).
            raise self._refuse(
                request,
                f"the request uses client authentication this server does not accept ({', '.join(other)}); "
                "authenticate with a TLS client certificate instead", metrics_reason="unsupported_method",
                client_id=request.logged_client_id, reason="unsupported_method", mechanisms=other, cert=None,
            )
        client_id = request.form.get("client_id")
        if not client_id:
            raise self._refuse(
                request, "client_id is required with mutual-TLS client authentication (RFC 8705 section 2)",
                metrics_reason="missing_client_id", **self._cert_fields(request),
            )
        resolved = request.resolved_client
        if isinstance(resolved, UnusableRegistration):
            raise self._refuse(
                request, "the registration of this client is not usable; contact the server operator",
                metrics_reason="unusable_registration", client_id=request.logged_client_id, detail=resolved.reason,
                **self._cert_fields(request),
            )
        if resolved is None:
            raise self._refuse(request, "unknown client_id", metrics_reason="unknown_client",
                               client_id=request.logged_client_id,
                               **self._cert_fields(request))
        return resolved

    @staticmethod
    def _certificate_sent(request: ClientRequest) -> bool:
        try:
            return presented_certificate(request.asgi_scope) is not None
        except CertificateRejected:
            return True  # sent, but not X.509: still a second mechanism

    def _check(self, client: RegisteredClient, request: ClientRequest) -> None:
        presented: PresentedCertificate | None = None
        try:
            presented = presented_certificate(request.asgi_scope)
            check_client_certificate(client, presented, self.validator, self.revocation)
        except CertificateRejected as rejected:
            raise self._refuse(
                request,
                rejected.public_description,
                metrics_reason=rejected.reason.name.lower(),
                client_id=client.client_id,
                method=client.auth_method,
                reason=rejected.reason.name.lower(),
                detail=rejected.detail,
                **rejected.log_fields,
                **(presented.log_fields() if presented else _unpresented_fields(rejected)),
            ) from None
        request.presented_certificate = presented

    @staticmethod
    def _cert_fields(request: ClientRequest) -> dict[str, Any]:
        try:
            presented = presented_certificate(request.asgi_scope)
        except CertificateRejected as rejected:
            return _unparsable_fields(rejected)
        return presented.log_fields() if presented else {"cert": None}


def _unpresented_fields(rejected: CertificateRejected) -> dict[str, Any]:
    """Log fields of a refusal that came before a certificate could be parsed: none was sent,
    or what was sent is not X.509 or over the limits."""
    return {"cert": None} if rejected.reason is RejectionReason.NO_CERTIFICATE else _unparsable_fields(rejected)


def _unparsable_fields(rejected: CertificateRejected) -> dict[str, Any]:
    if rejected.reason is RejectionReason.UNPARSABLE:
        return {"cert": "unparsable", "cert_parse_error": rejected.detail, **_digests(rejected)}
    # Refused before parsing (authz.certificates.limits): what was over the limit.
    return {"cert": "refused", "cert_refusal": rejected.reason.name.lower(), "cert_problem": rejected.detail,
            **_digests(rejected)}


def _digests(rejected: CertificateRejected) -> dict[str, Any]:
    sha256 = rejected.cert_sha256
    return {"cert_x5t_s256": x5t_from_sha256_hex(sha256) if sha256 else None, "cert_sha256": sha256}


def _authorization_scheme(request: ClientRequest) -> str | None:
    """The scheme of the request's Authorization header (RFC 7235 token characters only, so
    that nothing the client sent can break the challenge), or None without the header."""
    value = request.headers.get("authorization")
    if value is None:
        return None
    scheme = str(value).strip().split(" ", 1)[0]
    if scheme and len(scheme) <= 32 and all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in scheme):
        return scheme
    return "Basic"  # unreadable: the scheme RFC 6749 §2.3.1 defines for client credentials
