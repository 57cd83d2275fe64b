"""Revocation data that is not used (a CRL, an OCSP answer): why, for the log."""

from __future__ import annotations

__all__ = ["RevocationDataUnusable"]


class RevocationDataUnusable(Exception):
    """``why`` is a short token for the log (``unparsable``, ``bad_signature``, ``stale``...),
    ``detail`` the rest."""

    def __init__(self, why: str, detail: str) -> None:
        super().__init__(f"{why}: {detail}")
        self.why = why
        self.detail = detail
