"""Debian packages the tests run (openssl, testssl.sh, nginx, HAProxy, Apache, Go and the x/oauth2
sources): installed by the tests themselves when missing, since CI runs the suite as root on a clean clone."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

__all__ = ["require_command", "require_package"]

# Daemons (nginx, apache2...) are installed without starting: the tests run their own, on ports
# of their own, and a service started by the package would hold port 80, where the next
# package's start fails and leaves dpkg half-configured (invoke-rc.d asks policy-rc.d first).
_POLICY = Path("/usr/sbin/policy-rc.d")
_DENY_STARTS = "#!/bin/sh\n# written by the authz tests while they install packages\nexit 101\n"
# Commands such as nginx and apache2 live in sbin, which a non-login PATH may lack.
_SBIN = ("/usr/sbin", "/sbin")


def _which(command: str) -> str | None:
    return shutil.which(command) or shutil.which(command, path=os.pathsep.join(_SBIN))


@contextlib.contextmanager
def _services_not_started() -> Iterator[None]:
    if _POLICY.exists():  # the machine already has a policy (Docker images deny every start)
        yield
        return
    _POLICY.write_text(_DENY_STARTS)
    _POLICY.chmod(0o755)
    try:
        yield
    finally:
        _POLICY.unlink(missing_ok=True)


def require_command(command: str, package: str) -> str:
    """The path of ``command``, after installing the Debian ``package`` that provides it if
    it is missing (without starting any service it brings); fails (never skips) when it cannot
    be installed."""
    path = _which(command)
    if path is not None:
        return path
    _install(package, f"{command} is missing")
    path = _which(command)
    if path is None:
        raise RuntimeError(f"the Debian package {package} did not install {command}")
    return path


def require_package(package: str, provides: Path) -> Path:
    """``provides`` (a file or directory the Debian ``package`` installs: a library's sources,
    say), after installing the package if it is missing; fails (never skips) when it cannot be
    installed."""
    if not provides.exists():
        _install(package, f"{provides} is missing")
        if not provides.exists():
            raise RuntimeError(f"the Debian package {package} did not install {provides}")
    return provides


def _install(package: str, missing: str) -> None:
    if os.geteuid() != 0:
        raise RuntimeError(f"{missing}: install the Debian package {package} (apt-get install {package})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _services_not_started():
        for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
            result = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr}")
