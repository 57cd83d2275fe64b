"""Authorization server metadata (RFC 8414) with the RFC 8705 additions (§3.3, §5)."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from authz.clients.model import MTLS_AUTH_METHODS
from authz.registration.constants import REGISTRATION_PATH

__all__ = ["MTLS_ENDPOINTS", "build_metadata"]

# Endpoints a client reaches with its certificate: listed in mtls_endpoint_aliases.
MTLS_ENDPOINTS = {
    "token_endpoint": "/token",
    "introspection_endpoint": "/introspect",
    "revocation_endpoint": "/revoke",
}


# RFC 8414 requires response_types_supported, and clients' validators (authlib's
# AuthorizationServerMetadata, for one) refuse an empty array. This server has no
# authorization endpoint: "none" (OAuth 2.0 Multiple Response Type Encoding Practices §4) is
# the one registered value that grants nothing, so listing it promises no flow we lack.
RESPONSE_TYPES_SUPPORTED = ["none"]


def build_metadata(issuer: str, mtls_alias_base: str | None = None) -> dict[str, Any]:
    """The metadata document; validated with authlib's RFC 8414 rules."""
    metadata: dict[str, Any] = {
        "issuer": issuer,
        **{name: issuer + path for name, path in MTLS_ENDPOINTS.items()},
        "jwks_uri": issuer + "/jwks",
        # RFC 7591: registration needs an administrator's token or an initial access token.
        "registration_endpoint": issuer + REGISTRATION_PATH,
        "response_types_supported": RESPONSE_TYPES_SUPPORTED,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": list(MTLS_AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(MTLS_AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(MTLS_AUTH_METHODS),
        "tls_client_certificate_bound_access_tokens": True,
    }
    if mtls_alias_base:
        metadata["mtls_endpoint_aliases"] = {
            name: mtls_alias_base + path for name, path in MTLS_ENDPOINTS.items()
        }
    # authlib's own validation, unmodified: clients run the same one.
    AuthorizationServerMetadata(metadata).validate()
    return metadata
