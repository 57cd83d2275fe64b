"""A registered client, as the token endpoint uses it.

Clients are stored as RFC 7591 metadata (a JSON object with the names of RFC 8705 §2.1.2,
``jwks`` with ``x5c`` for self-signed certificates, ...). ``RegisteredClient.from_metadata``
validates that object once, when it is loaded, and precomputes what the hot path needs: the
subject matcher, the set of registered certificates.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry

from authz.audiences.model import resource_uri_problem
from authz.certificates.subject import SUBJECT_PARAMETERS, InvalidSubject, SubjectMatcher, subject_matcher
from authz.clients.jwks_uri.uri import jwks_uri_problem

__all__ = [
    "CA_PIN_PARAMETER",
    "MAX_CLIENT_ID_CHARS",
    "MTLS_AUTH_METHODS",
    "InvalidClientMetadata",
    "RegisteredClient",
    "jwk_for_certificate",
]

AuthMethod = Literal["tls_client_auth", "self_signed_tls_client_auth"]
MTLS_AUTH_METHODS: tuple[AuthMethod, ...] = ("tls_client_auth", "self_signed_tls_client_auth")
SUPPORTED_GRANT_TYPES = ("client_credentials",)
# tls_client_auth clients pinned to one CA: the SHA-256 (hex) of its SubjectPublicKeyInfo.
CA_PIN_PARAMETER = "tls_client_auth_ca_spki_sha256"
MAX_CLIENT_ID_CHARS = 255


class InvalidClientMetadata(ValueError):
    """RFC 7591 ``invalid_client_metadata``: the message says which field and why."""


_KEY_TYPES: dict[type, str] = {
    ec.EllipticCurvePublicKey: "EC",
    rsa.RSAPublicKey: "RSA",
    ed25519.Ed25519PublicKey: "OKP",
    ed448.Ed448PublicKey: "OKP",
}


def _spki(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def jwk_for_certificate(cert: x509.Certificate) -> dict[str, Any]:
    """The JWK (public key plus ``x5c``) that registers ``cert`` for
    ``self_signed_tls_client_auth`` (RFC 8705 §2.2)."""
    public_key = cert.public_key()
    key_type = next((kty for base, kty in _KEY_TYPES.items() if isinstance(public_key, base)), None)
    if key_type is None:
        raise InvalidClientMetadata(f"unsupported public key type in certificate: {type(public_key).__name__}")
    try:
        key = JWKRegistry.import_key(public_key, key_type)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidClientMetadata(f"unsupported public key type in certificate: {exc}") from exc
    jwk: dict[str, Any] = dict(key.as_dict(private=False))
    jwk["x5c"] = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")]
    return jwk


def _registered_certificates(jwks: Any) -> frozenset[bytes]:
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise InvalidClientMetadata("jwks must be a JWK Set with at least one key carrying x5c")
    ders: set[bytes] = set()
    for index, jwk in enumerate(jwks["keys"]):
        where = f"jwks.keys[{index}]"
        if not isinstance(jwk, Mapping) or not isinstance(jwk.get("x5c"), list) or not jwk["x5c"]:
            raise InvalidClientMetadata(f"{where} has no x5c certificate")
        try:
            der = base64.b64decode(jwk["x5c"][0], validate=True)
            cert = x509.load_der_x509_certificate(der)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise InvalidClientMetadata(f"{where}.x5c[0] is not a base64 DER certificate: {exc}") from exc
        # RFC 7517 §4.7: the key in the first x5c certificate must be the JWK's key.
        if "kty" in jwk:
            try:
                key = JWKRegistry.import_key(dict(jwk))
                # Inside the try: a JWK whose key_ops or use exclude verifying raises here.
                raw = key.get_op_key("verify")
            # KeyError: joserfc's for a curve it does not know ("crv": "enc").
            except (JoseError, ValueError, TypeError, KeyError) as exc:
                raise InvalidClientMetadata(f"{where} is not a valid JWK: {exc}") from exc
            # A symmetric ("oct") key is bytes: no public key, so not the certificate's.
            if isinstance(raw, bytes) or _spki(raw) != _spki(cert.public_key()):
                raise InvalidClientMetadata(f"{where}: the JWK's key is not the key of its x5c[0] certificate")
        ders.add(der)
    return frozenset(ders)


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    auth_method: AuthMethod
    scopes: tuple[str, ...]
    grant_types: tuple[str, ...]
    certificate_bound_access_tokens: bool
    subject: SubjectMatcher | None = None
    subject_value: str | None = None
    registered_certificates: frozenset[bytes] = frozenset()
    # Resource servers (their identifiers) this client may get tokens for; none: tokens for
    # the configured default audience only.
    allowed_resources: tuple[str, ...] = ()
    # tls_client_auth: SHA-256 of the SubjectPublicKeyInfo of the one CA (anchor or
    # intermediate) the client's certificate paths must go through (CA_PIN_PARAMETER).
    pinned_ca_spki_sha256: bytes | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # self_signed_tls_client_auth with jwks_uri instead of jwks: registered_certificates stays
    # empty here; the client endpoint fills it from the fetched set (authz.clients.jwks_uri).
    jwks_uri: str | None = None

    # --- authlib ClientMixin ---------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types

    def get_allowed_scope(self, scope: str) -> str:
        if not scope:
            return " ".join(self.scopes)
        return " ".join(s for s in scope.split() if s in self.scopes)

    # --- construction ------------------------------------------------------------------
    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> RegisteredClient:
        """Validate RFC 7591/8705 client metadata; ``InvalidClientMetadata`` names the problem."""
        client_id = metadata.get("client_id")
        if (not isinstance(client_id, str) or not client_id or not client_id.isprintable()
                or len(client_id) > MAX_CLIENT_ID_CHARS):
            raise InvalidClientMetadata(
                f"client_id must be a printable string of 1 to {MAX_CLIENT_ID_CHARS} characters"
            )
        method = metadata.get("token_endpoint_auth_method")
        if method not in MTLS_AUTH_METHODS:
            raise InvalidClientMetadata(
                f"token_endpoint_auth_method must be one of {', '.join(MTLS_AUTH_METHODS)} (got {method!r})"
            )
        scope = metadata.get("scope", "")
        # Split on spaces only: a tab or a newline is no separator (RFC 6749 §3.3), and the
        # token endpoint refuses it in a request, so it must not be registrable either.
        if not isinstance(scope, str) or any(not _is_scope_token(s) for s in scope.split(" ") if s):
            raise InvalidClientMetadata("scope must be a space-separated list of scope tokens (RFC 6749 §3.3)")
        if scope:
            # Stored and listed as it is used: single spaces, each scope once.
            metadata = {**metadata, "scope": " ".join(dict.fromkeys(s for s in scope.split(" ") if s))}
            scope = metadata["scope"]
        grant_types = metadata.get("grant_types", list(SUPPORTED_GRANT_TYPES))
        if not isinstance(grant_types, list) or any(g not in SUPPORTED_GRANT_TYPES for g in grant_types):
            raise InvalidClientMetadata(f"grant_types may only contain {', '.join(SUPPORTED_GRANT_TYPES)}")
        bound = metadata.get("tls_client_certificate_bound_access_tokens", True)
        if not isinstance(bound, bool):
            raise InvalidClientMetadata("tls_client_certificate_bound_access_tokens must be a boolean")
        _check_descriptive(metadata)
        resources = metadata.get("allowed_resources", [])
        if not isinstance(resources, list):
            raise InvalidClientMetadata("allowed_resources must be a list of resource identifiers (absolute URIs)")
        for index, resource in enumerate(resources):
            problem = resource_uri_problem(resource)
            if problem is not None:
                raise InvalidClientMetadata(f"allowed_resources[{index}] {problem}")
        present = [p for p in SUBJECT_PARAMETERS if metadata.get(p) is not None]
        common: dict[str, Any] = {
            "client_id": client_id,
            "auth_method": method,
            "scopes": tuple(dict.fromkeys(scope.split())),
            "grant_types": tuple(grant_types),
            "certificate_bound_access_tokens": bound,
            "allowed_resources": tuple(dict.fromkeys(resources)),
            "metadata": dict(metadata),
        }
        if method == "tls_client_auth":
            if len(present) != 1:
                raise InvalidClientMetadata(
                    "a tls_client_auth client registers exactly one of "
                    f"{', '.join(SUBJECT_PARAMETERS)} (RFC 8705 §2.1.2); got {len(present)}"
                    + (f": {', '.join(present)}" if present else "")
                )
            if metadata.get("jwks") is not None:
                raise InvalidClientMetadata(
                    "jwks (certificates registered as they are) belongs to self_signed_tls_client_auth; this "
                    "client's token_endpoint_auth_method is tls_client_auth, which registers the one subject value "
                    "its CA-issued certificates carry instead")
            if metadata.get("jwks_uri") is not None:
                raise InvalidClientMetadata("jwks_uri is for self_signed_tls_client_auth clients")
            value = metadata[present[0]]
            try:
                matcher = subject_matcher(present[0], value)
            except InvalidSubject as exc:
                raise InvalidClientMetadata(str(exc)) from exc
            pin = _ca_pin(metadata.get(CA_PIN_PARAMETER))
            if pin is not None:
                common["metadata"][CA_PIN_PARAMETER] = pin.hex()  # stored and shown in lower case
            return cls(subject=matcher, subject_value=value, pinned_ca_spki_sha256=pin, **common)
        if metadata.get(CA_PIN_PARAMETER) is not None:
            raise InvalidClientMetadata(f"{CA_PIN_PARAMETER} only applies to tls_client_auth clients")
        if present:
            raise InvalidClientMetadata(
                f"{', '.join(present)} only apply to tls_client_auth (certificates from a CA the server trusts, "
                "matched by subject); this client's token_endpoint_auth_method is self_signed_tls_client_auth, "
                "which registers its certificates themselves in jwks (x5c)"
            )
        jwks_uri = metadata.get("jwks_uri")
        if jwks_uri is not None:
            if metadata.get("jwks") is not None:
                raise InvalidClientMetadata("jwks and jwks_uri must not both be present (RFC 7591 §2); register one")
            problem = jwks_uri_problem(jwks_uri)
            if problem is not None:
                raise InvalidClientMetadata(f"jwks_uri {problem}")
            return cls(jwks_uri=jwks_uri, **common)
        if metadata.get("jwks") is None:
            raise InvalidClientMetadata(
                "a self_signed_tls_client_auth client registers its certificates in jwks (a JWK Set with x5c) "
                "or jwks_uri (an https URL serving one)"
            )
        return cls(registered_certificates=_registered_certificates(metadata.get("jwks")), **common)


def _ca_pin(value: Any) -> bytes | None:
    """``tls_client_auth_ca_spki_sha256``: 64 hexadecimal digits, the SHA-256 of a CA's DER
    SubjectPublicKeyInfo (``openssl x509 -in ca.pem -pubkey -noout | openssl pkey -pubin
    -outform DER | openssl dgst -sha256``)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise InvalidClientMetadata(f"{CA_PIN_PARAMETER} must be the SHA-256 of a CA's SubjectPublicKeyInfo "
                                    "in 64 hexadecimal digits")
    return bytes.fromhex(value)


def _check_descriptive(metadata: Mapping[str, Any]) -> None:
    """RFC 7591 §2 fields that only describe the client: bounded, printable (they reach logs
    and consoles)."""
    name = metadata.get("client_name")
    if name is not None and (not isinstance(name, str) or not name.isprintable() or not 0 < len(name) <= 200):
        raise InvalidClientMetadata("client_name must be a printable string of 1 to 200 characters")
    contacts = metadata.get("contacts")
    if contacts is not None and (
            not isinstance(contacts, list) or len(contacts) > 10
            or any(not isinstance(c, str) or not c.isprintable() or not 0 < len(c) <= 254 for c in contacts)):
        raise InvalidClientMetadata("contacts must be a list of at most 10 printable strings (e-mail addresses) "
                                    "of 1 to 254 characters")


def _is_scope_token(token: str) -> bool:
    # RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
    return all(c == "\x21" or "\x23" <= c <= "\x5b" or "\x5d" <= c <= "\x7e" for c in token)
