"""Client metadata as the registration API receives and returns it (RFC 7591 §2, §3.2.1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from authz.certificates.subject import SUBJECT_PARAMETERS
from authz.clients.model import CA_PIN_PARAMETER, InvalidClientMetadata, RegisteredClient

__all__ = ["MAX_BODY_BYTES", "REGISTRABLE", "public_metadata", "requested_metadata"]

# A registration with a few certificate chains in jwks fits many times over.
MAX_BODY_BYTES = 64 * 1024

# What a client may register: RFC 7591 and RFC 8705 §2.1.2 names, allowed_resources (the
# resource servers it may ask tokens for, RFC 8707) and the CA pin (kept by a PUT that sends
# back what a GET showed).
REGISTRABLE = (
    "token_endpoint_auth_method", *SUBJECT_PARAMETERS, "jwks", "jwks_uri", "scope", "client_name", "contacts",
    "allowed_resources", "tls_client_certificate_bound_access_tokens", "grant_types", CA_PIN_PARAMETER,
)
# Set by the server; a PUT that sends them back (RFC 7592 §2.2 says it must not) loses nothing.
_SERVER_SET = ("client_id", "client_id_issued_at", "registration_access_token", "registration_client_uri")


def requested_metadata(body: object, client_id: str) -> dict[str, Any]:
    """The metadata to store for ``client_id``, validated as the CLI's (``InvalidClientMetadata``
    names the field). Fields this server does not understand are ignored, as RFC 7591 §2 asks,
    and left out of the answer, which tells the client what was registered."""
    if not isinstance(body, Mapping):
        raise InvalidClientMetadata("the body must be a JSON object of client metadata (RFC 7591 section 2)")
    metadata = {name: body[name] for name in REGISTRABLE if name in body and body[name] is not None}
    metadata["client_id"] = client_id
    RegisteredClient.from_metadata(metadata)
    return metadata


def public_metadata(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the API shows of a stored registration: its metadata, without server internals."""
    return {name: record[name] for name in (*_SERVER_SET[:2], *REGISTRABLE) if name in record}
