"""RFC 8705 §3.1 certificate thumbprint: base64url(SHA-256(DER)), no padding."""

from __future__ import annotations

import base64
import hashlib

__all__ = ["x5t_from_sha256_hex", "x5t_s256"]


def x5t_s256(der: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


def x5t_from_sha256_hex(sha256_hex: str) -> str:
    """The same thumbprint from a SHA-256 written in hex (log lines carry both encodings)."""
    return base64.urlsafe_b64encode(bytes.fromhex(sha256_hex)).rstrip(b"=").decode("ascii")
