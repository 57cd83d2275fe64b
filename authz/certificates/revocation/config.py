"""What revocation checking does, as configured (``authz.settings``), and its fixed bounds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "CRL_FILE_POLL_SECONDS",
    "DEFAULT_CRL_MAX_BYTES",
    "MAX_CRL_SOURCES",
    "MAX_OCSP_ANSWERS",
    "OCSP_MAX_BYTES",
    "Mode",
    "Policy",
    "RevocationConfig",
]

Mode = Literal["crl", "ocsp", "crl+ocsp"]
Policy = Literal["hard-fail", "soft-fail"]

# A CA with a few hundred thousand revocations publishes CRLs of several MiB.
DEFAULT_CRL_MAX_BYTES = 10 * 1024 * 1024
# An OCSP response is one signed status with, at most, the responder's certificate chain.
OCSP_MAX_BYTES = 64 * 1024
# Distribution point URLs whose CRLs are kept (least recently used dropped first), and OCSP
# answers (per issuer key and serial). Only certificates on a validated path name them.
MAX_CRL_SOURCES = 256
MAX_OCSP_ANSWERS = 10_000
# Seconds between two looks at the --crl files (a stat each, off the event loop).
CRL_FILE_POLL_SECONDS = 2.0


@dataclass(frozen=True)
class RevocationConfig:
    mode: Mode
    policy: Policy = "hard-fail"
    crl_files: tuple[Path, ...] = ()
    fetch_timeout: float = 3.0  # seconds a fetch of a CRL or an OCSP answer may take, all in all
    max_wait: float = 1.0  # seconds a token request may wait for revocation data
    crl_grace: float = 0.0  # seconds past nextUpdate a CRL stays usable
    crl_max_bytes: int = DEFAULT_CRL_MAX_BYTES
    ocsp_nonce: bool = False

    @property
    def crl(self) -> bool:
        return self.mode in ("crl", "crl+ocsp")

    @property
    def ocsp(self) -> bool:
        return self.mode in ("ocsp", "crl+ocsp")

    @property
    def hard_fail(self) -> bool:
        return self.policy == "hard-fail"
