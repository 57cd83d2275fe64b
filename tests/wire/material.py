"""The certificates and client registrations of the wire suite, made once per session.

Every client's own certificate is stored under its client_id; the certificates that must be
refused have descriptive names. The server's certificate comes from a CA of its own, so
clients never hold a client-issuing CA in their trust store (OpenSSL would otherwise
complete the chains they send from it).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.pki import Issued, TestCA, forge, path_building_bomb, self_signed, sign_with
from tests.support.server import authz_cli_all

DN_CLIENT_SUBJECT = "CN=dn-client,O=authz tests,C=DE"
SAN_DNS = "dns-client.wire.test"
SAN_URI = "spiffe://wire.test/workload/uri-client"
SAN_IPV4 = "192.0.2.10"
SAN_EMAIL = "wire.client@example.org"
# One subject with the characters RFC 4514 makes interesting: an escaped ',' and '+',
# inner spaces and a non-ASCII letter.
SPELLING_SUBJECT = "CN=Spelling Client,OU=R\\+D,O=Example\\, Inc.,L=Zürich,C=CH"

# Registered spellings of SPELLING_SUBJECT that must match it (RFC 4517 distinguishedNameMatch)...
DN_SPELLINGS_MATCHING = {
    "exact": "CN=Spelling Client,OU=R\\+D,O=Example\\, Inc.,L=Zürich,C=CH",
    "spaces": "  CN = Spelling   Client ,  OU=R\\+D  , O =  Example\\,   Inc. ,L=Zürich , C = CH  ",
    "lower-case-types": "cn=Spelling Client,ou=R\\+D,o=Example\\, Inc.,l=Zürich,c=CH",
    "value-case": "CN=SPELLING CLIENT,OU=r\\+d,O=EXAMPLE\\, INC.,L=ZÜRICH,C=ch",
    "numeric-oids": "2.5.4.3=Spelling Client,2.5.4.11=R\\+D,2.5.4.10=Example\\, Inc.,2.5.4.7=Zürich,2.5.4.6=CH",
    "oid-prefix": "OID.2.5.4.3=Spelling Client,OU=R\\+D,O=Example\\, Inc.,L=Zürich,OID.2.5.4.6=CH",
    "hex-escapes": "CN=Spelling\\20Client,OU=R\\2BD,O=Example\\2C Inc.,L=Z\\C3\\BCrich,C=CH",
    "ber-value": "CN=Spelling Client,OU=R\\+D,O=Example\\, Inc.,L=Zürich,C=#13024348",
}
# ... and spellings that name another DN.
DN_SPELLINGS_NOT_MATCHING = {
    "rdn-order": "OU=R\\+D,CN=Spelling Client,O=Example\\, Inc.,L=Zürich,C=CH",
    "certificate-order": "C=CH,L=Zürich,O=Example\\, Inc.,OU=R\\+D,CN=Spelling Client",
    "other-value": "CN=Spelling Clients,OU=R\\+D,O=Example\\, Inc.,L=Zürich,C=CH",
    "no-diacritic": "CN=Spelling Client,OU=R\\+D,O=Example\\, Inc.,L=Zurich,C=CH",
    "extra-rdn": "CN=Spelling Client,OU=R\\+D,OU=Extra,O=Example\\, Inc.,L=Zürich,C=CH",
    "missing-rdn": "CN=Spelling Client,OU=R\\+D,O=Example\\, Inc.,C=CH",
    "multi-valued-rdn": "CN=Spelling Client+OU=R\\+D,O=Example\\, Inc.,L=Zürich,C=CH",
}


@dataclass(frozen=True)
class Credentials:
    """A certificate file (leaf, then the chain to send) and its key, as clients load them."""

    cert: Path
    key: Path
    leaf_der: bytes

    @property
    def thumbprint(self) -> str:
        """RFC 8705 §3.1 x5t#S256 of the leaf, computed here independently of the server."""
        return base64.urlsafe_b64encode(hashlib.sha256(self.leaf_der).digest()).rstrip(b"=").decode()

    @property
    def sha256_hex(self) -> str:
        return hashlib.sha256(self.leaf_der).hexdigest()


@dataclass(frozen=True)
class WirePKI:
    directory: Path
    server_ca: Path
    server_cert: Path
    server_key: Path
    trust_anchor: Path
    intermediate: Path
    credentials: dict[str, Credentials]

    def __getitem__(self, name: str) -> Credentials:
        return self.credentials[name]


def _certificates() -> tuple[dict[str, Issued], TestCA, TestCA]:
    now = datetime.datetime.now(datetime.UTC)
    root = TestCA("CN=Wire Root CA,O=authz tests")
    issuing = TestCA("CN=Wire Issuing CA,O=authz tests", parent=root)
    rogue = TestCA("CN=Rogue CA,O=elsewhere")
    impostor = TestCA("CN=Wire Root CA,O=authz tests")  # the trusted root's name, another key
    self_signed_ca = self_signed("CN=self-signed CA client,O=authz tests", ca=True)
    intermediate_leaf = issuing.issue("CN=intermediate-client,O=authz tests")
    deep = {}  # issuing CAs with 12 and 40 intermediates between them and the root
    for depth in (12, 40):
        ca = root
        for level in range(depth):
            ca = TestCA(f"CN=Wire Deep CA {level},O=authz tests", parent=ca)
        deep[depth] = ca
    issued = {
        # Each client's own certificate.
        "dn-client": root.issue(DN_CLIENT_SUBJECT),
        "dns-client": root.issue("CN=dns,O=authz tests", san_dns=[SAN_DNS]),
        "uri-client": root.issue("CN=uri,O=authz tests", san_uri=[SAN_URI]),
        "ipv4-client": root.issue("CN=ipv4,O=authz tests", san_ip=[SAN_IPV4]),
        # Registered 2001:db8::1 (see REGISTRATIONS); the other textual form here, and vice versa.
        "ipv6-short-client": root.issue("CN=ipv6 short,O=authz tests", san_ip=["2001:0db8:0:0:0:0:0:1"]),
        "ipv6-long-client": root.issue("CN=ipv6 long,O=authz tests", san_ip=["2001:db8::1"]),
        "email-client": root.issue("CN=email,O=authz tests", san_email=[SAN_EMAIL]),
        "self-signed-client": self_signed("CN=self-signed client,O=authz tests"),
        "two-certs-client": self_signed("CN=two certs A,O=authz tests"),
        "two-certs-client-b": self_signed("CN=two certs B,O=authz tests"),
        "self-signed-ca-client": self_signed_ca,
        "intermediate-client": intermediate_leaf,
        "unbound-client": root.issue("CN=unbound,O=authz tests"),
        "spelling": root.issue(SPELLING_SUBJECT),
        # Certificates that must be refused.
        "other-subject": root.issue("CN=someone else,O=authz tests", san_dns=["other.wire.test"],
                                    san_uri=["spiffe://wire.test/workload/other"],
                                    san_ip=["192.0.2.11", "2001:db8::2"], san_email=["other@example.org"]),
        "untrusted-ca": rogue.issue(DN_CLIENT_SUBJECT),
        "impostor-ca": impostor.issue(DN_CLIENT_SUBJECT),
        "bad-signature": forge(root, DN_CLIENT_SUBJECT),
        "self-signed-with-dn": self_signed(DN_CLIENT_SUBJECT),
        "forged-by-registered-ca": sign_with(self_signed_ca, DN_CLIENT_SUBJECT),
        "expired": root.issue(DN_CLIENT_SUBJECT, not_before=now - datetime.timedelta(days=10),
                              not_after=now - datetime.timedelta(days=1)),
        "not-yet-valid": root.issue(DN_CLIENT_SUBJECT, not_before=now + datetime.timedelta(days=1),
                                    not_after=now + datetime.timedelta(days=30)),
        "server-auth-only": root.issue(DN_CLIENT_SUBJECT, eku=[ExtendedKeyUsageOID.SERVER_AUTH]),
        "unregistered-self-signed": self_signed("CN=self-signed client,O=authz tests"),
        "intermediate-client-leaf-only": dataclasses.replace(intermediate_leaf, chain=[]),
        "intermediate-client-with-root": dataclasses.replace(intermediate_leaf, chain=[issuing.cert, root.cert]),
        "intermediate-client-unordered": dataclasses.replace(intermediate_leaf, chain=[root.cert, issuing.cert]),
        "chain-of-12": deep[12].issue(DN_CLIENT_SUBJECT),
        "chain-of-40": deep[40].issue(DN_CLIENT_SUBJECT),
        "path-building-bomb": path_building_bomb(DN_CLIENT_SUBJECT),
        # Over 32 KiB: the registered subject, and 400 long SANs.
        "oversized": root.issue(DN_CLIENT_SUBJECT, san_dns=[f"host-{i:05d}.{'x' * 80}.wire.test" for i in range(400)]),
    }
    return issued, root, issuing


def build_wire_pki(directory: Path) -> WirePKI:
    issued, root, issuing = _certificates()
    server_ca = TestCA("CN=Wire Server CA,O=authz tests")
    server_cert, server_key = server_ca.issue("CN=127.0.0.1", san_ip=["127.0.0.1"],
                                              eku=[ExtendedKeyUsageOID.SERVER_AUTH]).write(directory, "server")
    credentials = {}
    for name, certificate in issued.items():
        cert, key = certificate.write(directory, name)
        credentials[name] = Credentials(cert, key, certificate.der)
    return WirePKI(
        directory=directory,
        server_ca=server_ca.write(directory / "server-ca.pem"),
        server_cert=server_cert,
        server_key=server_key,
        trust_anchor=root.write(directory / "root.pem"),
        intermediate=issuing.write(directory / "intermediate.pem"),
        credentials=credentials,
    )


def register_clients(pki: WirePKI, data_dir: Path, client_ids: Sequence[str] | None = None) -> None:
    """Register the suite's clients (``client_ids``, or all of them) in the store at ``data_dir``
    through the CLI."""
    every = registrations(pki)
    authz_cli_all([["clients", "add", c, *every[c]] for c in (client_ids or every)], data_dir=data_dir)


def registrations(pki: WirePKI) -> dict[str, list[str]]:
    """``authz clients add`` arguments of every client of the suite, by client_id."""
    tls = ["--auth-method", "tls_client_auth"]
    self_signed_method = ["--auth-method", "self_signed_tls_client_auth"]
    clients = {
        "dn-client": [*tls, "--subject-dn", DN_CLIENT_SUBJECT, "--scope", "read write"],
        "dns-client": [*tls, "--san-dns", SAN_DNS, "--scope", "read"],
        "uri-client": [*tls, "--san-uri", SAN_URI, "--scope", "read"],
        "ipv4-client": [*tls, "--san-ip", SAN_IPV4, "--scope", "read"],
        "ipv6-short-client": [*tls, "--san-ip", "2001:db8::1", "--scope", "read"],
        "ipv6-long-client": [*tls, "--san-ip", "2001:0DB8:0000:0000:0000:0000:0000:0001", "--scope", "read"],
        "email-client": [*tls, "--san-email", SAN_EMAIL, "--scope", "read"],
        "intermediate-client": [*tls, "--subject-dn", "CN=intermediate-client,O=authz tests", "--scope", "read"],
        "unbound-client": [*tls, "--subject-dn", "CN=unbound,O=authz tests", "--scope", "read",
                           "--unbound-tokens"],
        "self-signed-client": [*self_signed_method, "--cert", str(pki["self-signed-client"].cert),
                               "--scope", "read write"],
        "two-certs-client": [*self_signed_method, "--cert", str(pki["two-certs-client"].cert),
                             "--cert", str(pki["two-certs-client-b"].cert), "--scope", "read"],
        "self-signed-ca-client": [*self_signed_method, "--cert", str(pki["self-signed-ca-client"].cert),
                                  "--scope", "read"],
    }
    for slug, dn in {**DN_SPELLINGS_MATCHING, **DN_SPELLINGS_NOT_MATCHING}.items():
        clients[f"spelling-{slug}"] = [*tls, "--subject-dn", dn, "--scope", "read"]
    return clients
