"""``openssl s_client`` against a server on loopback: did the handshake complete, with what,
and what did the server ask for."""

from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.debian import require_command

__all__ = ["SClient", "s_client"]

# One line per connection: "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384", "Reused, ..."
# or "New, (NONE), Cipher is (NONE)" when no handshake completed.
_CONNECTION = re.compile(r"^(New|Reused), (\S+), Cipher is (\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class SClient:
    output: str

    @property
    def connections(self) -> list[tuple[str, str, str]]:
        """(New or Reused, protocol, cipher) for each connection s_client made."""
        return [m.groups() for m in _CONNECTION.finditer(self.output)]

    @property
    def established(self) -> bool:
        """Every connection completed a handshake (with a verified server certificate)."""
        return bool(self.connections) and all(cipher != "(NONE)" for _, _, cipher in self.connections)

    @property
    def acceptable_ca_names(self) -> list[str] | None:
        """The CA names the server's CertificateRequest listed, one per line as s_client prints
        them (``-nameopt RFC2253``: RFC 4514 strings); None when s_client says "No client
        certificate CA names sent"."""
        if "\nNo client certificate CA names sent\n" in self.output:
            return None
        _, found, after = self.output.partition("\nAcceptable client certificate CA names\n")
        assert found, self.output
        # The list ends where s_client goes on to the next item of the CertificateRequest.
        names = re.split(r"^(?:Client Certificate Types|Requested Signature Algorithms):", after, maxsplit=1,
                         flags=re.MULTILINE)[0]
        return names.splitlines()

    def field(self, name: str) -> str | None:
        """The value of a ``Name: value`` line of the output (the first one, indented or not)."""
        match = re.search(rf"^ *{re.escape(name)}: ?(.*)$", self.output, re.MULTILINE)
        return match.group(1).strip() if match else None


_openssl = functools.cache(lambda: require_command("openssl", "openssl"))


def s_client(port: int, *args: str, ca_file: Path, timeout: float = 30) -> SClient:
    """Connect to 127.0.0.1:``port`` with ``args``, send nothing, and close."""
    result = subprocess.run([_openssl(), "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(ca_file),
                             "-verify_return_error", *args], input="", capture_output=True, text=True,
                            timeout=timeout)
    return SClient(result.stdout + result.stderr)
