"""Where the registration API lives and the scope an administrator's token needs for it."""

from __future__ import annotations

__all__ = ["REGISTRATION_PATH", "REGISTRATION_SCOPE"]

REGISTRATION_PATH = "/register"
REGISTRATION_SCOPE = "clients:manage"
