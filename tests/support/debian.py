"""Debian packages the tests run (openssl, testssl.sh): installed by the tests themselves when
missing, since CI runs the suite as root on a clean clone."""

from __future__ import annotations

import os
import shutil
import subprocess

__all__ = ["require_command"]


def require_command(command: str, package: str) -> str:
    """The path of ``command``, after installing the Debian ``package`` that provides it if
    it is missing; fails (never skips) when it cannot be installed."""
    path = shutil.which(command)
    if path is not None:
        return path
    if os.geteuid() != 0:
        raise RuntimeError(f"{command} is missing: install the Debian package {package} (apt-get install {package})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        result = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr}")
    path = shutil.which(command)
    if path is None:
        raise RuntimeError(f"the Debian package {package} did not install {command}")
    return path
