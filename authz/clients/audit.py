"""One audit line per change to a client registration, whoever makes it (CLI or API).

The line says who (``actor``: ``cli:USER``, ``admin:CLIENT_ID``, ``registration_access_token``,
``initial_access_token:ID``), what (created, updated, deleted) and a before/after summary of
what decides authentication and authorization: method, subject, CA pin, certificate thumbprints
(x5t#S256, as in ``cnf``), jwks_uri, scopes, resources. Never a certificate, a key or a token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any

import structlog

from authz.certificates.subject import SUBJECT_PARAMETERS

__all__ = ["audit_change", "summary"]

log = structlog.get_logger("authz.audit")


def summary(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What an auditor compares between two versions of a registration."""
    if metadata is None:
        return None
    found: dict[str, Any] = {"token_endpoint_auth_method": metadata.get("token_endpoint_auth_method")}
    for subject in SUBJECT_PARAMETERS:
        if metadata.get(subject) is not None:
            found[subject] = metadata[subject]
    jwks = metadata.get("jwks")
    if isinstance(jwks, Mapping) and isinstance(jwks.get("keys"), list):
        found["cert_x5t_s256"] = [_thumbprint(key) for key in jwks["keys"]]
    for name in ("tls_client_auth_ca_spki_sha256", "jwks_uri", "scope", "allowed_resources",
                 "tls_client_certificate_bound_access_tokens", "client_name"):
        if metadata.get(name) is not None:
            found[name] = metadata[name]
    return found


def audit_change(*, actor: str, action: str, client_id: str, before: Mapping[str, Any] | None,
                 after: Mapping[str, Any] | None) -> None:
    log.info("client_registration_changed", actor=actor, action=action, client_id=client_id,
             before=summary(before), after=summary(after))


def _thumbprint(jwk: object) -> str | None:
    try:
        der = base64.b64decode(jwk["x5c"][0], validate=True)  # type: ignore[index]
    except (KeyError, IndexError, TypeError, binascii.Error):
        return None
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")
