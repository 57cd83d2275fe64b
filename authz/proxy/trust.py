"""Which peers may set the client certificate header: addresses (CIDRs), or proxies that
authenticated to this server with a client certificate of their own over TLS."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from authz.certificates.chain import ChainValidator
from authz.certificates.presented import presented_certificate
from authz.certificates.rejection import CertificateRejected
from authz.networks import Network

__all__ = ["ProxyTrust"]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    # An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ProxyTrust:
    def __init__(
        self,
        networks: Sequence[Network] = (),
        certificates: Sequence[x509.Certificate] = (),
        authorities: Sequence[x509.Certificate] = (),
    ) -> None:
        self._networks = list(networks)
        self._pinned = {c.fingerprint(hashes.SHA256()).hex() for c in certificates}
        self._authorities = ChainValidator(authorities) if authorities else None

    @property
    def configured(self) -> bool:
        return bool(self._networks or self._pinned or self._authorities)

    def is_trusted_address(self, host: str) -> bool:
        address = _address(host)
        return address is not None and any(address in network for network in self._networks)

    async def prepare(self, scope: Mapping[str, Any]) -> None:
        """Validate the connection's certificate against the proxies' CAs off the event loop
        (as the client endpoints do for client chains), so that ``trusted_by`` finds the
        verdict remembered: any TLS client can present a chain here."""
        if self._authorities is None:
            return
        try:
            presented = presented_certificate(scope)
        except CertificateRejected:
            return
        if presented is not None and not self._authorities.has_verdict(presented):
            await self._authorities.prepare(presented)

    def trusted_by(self, scope: Mapping[str, Any]) -> str | None:
        """Why the peer of this request may set the certificate header ("address",
        "certificate"), or None."""
        client = scope.get("client")
        if client and self.is_trusted_address(str(client[0])):
            return "address"
        if self._pinned or self._authorities:
            try:
                proxy = presented_certificate(scope)  # the TLS connection's: the proxy's own
            except CertificateRejected:
                return None
            if proxy is None:
                return None
            if proxy.sha256_hex in self._pinned:
                return "certificate"
            if self._authorities is not None:
                try:
                    self._authorities.validate(proxy)
                except CertificateRejected:
                    return None
                return "certificate"
        return None
