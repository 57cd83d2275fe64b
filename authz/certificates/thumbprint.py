"""RFC 8705 §3.1 certificate thumbprint: base64url(SHA-256(DER)), no padding."""

from __future__ import annotations

import base64
import hashlib

__all__ = ["x5t_s256"]


def x5t_s256(der: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")
