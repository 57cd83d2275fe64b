"""Certificates that must not authenticate the client: 401 invalid_client with the public
wording of the failed check (authz/certificates/rejection.py)."""

import pytest

from authz.certificates.rejection import RejectionReason as R
from tests.wire.client import WireClient, assert_invalid_client
from tests.wire.material import WirePKI

pytestmark = pytest.mark.wire

# (client_id, the certificate presented, why it is refused)
REFUSED = [
    # The subject does not match the registered one.
    ("dn-client", "other-subject", R.SUBJECT_DN_MISMATCH),
    ("dns-client", "other-subject", R.SAN_DNS_MISMATCH),
    ("uri-client", "other-subject", R.SAN_URI_MISMATCH),
    ("ipv4-client", "other-subject", R.SAN_IP_MISMATCH),
    ("ipv6-short-client", "other-subject", R.SAN_IP_MISMATCH),  # carries 2001:db8::2
    ("email-client", "other-subject", R.SAN_EMAIL_MISMATCH),
    # Another client's (valid, CA-issued) certificate.
    ("dn-client", "dns-client", R.SUBJECT_DN_MISMATCH),
    ("dns-client", "dn-client", R.SAN_DNS_MISMATCH),
    ("ipv4-client", "ipv6-short-client", R.SAN_IP_MISMATCH),
    # The right subject, but not from a trust anchor.
    ("dn-client", "untrusted-ca", R.UNTRUSTED_CHAIN),
    ("dn-client", "impostor-ca", R.UNTRUSTED_CHAIN),  # issuer named like the trusted root
    ("dn-client", "bad-signature", R.UNTRUSTED_CHAIN),  # names the root and its key, signed by another
    # A self-signed certificate, even with the right DN: said as such (the client may have
    # registered with the wrong method), a CA:TRUE one too ("not acceptable" before).
    ("dn-client", "self-signed-with-dn", R.SELF_SIGNED),
    ("dn-client", "self-signed-ca-client", R.SELF_SIGNED),
    # A registered self-signed CA:TRUE certificate (self-signed-ca-client's) signed a leaf
    # copying dn-client's DN; the chain [leaf, self-signed CA] is sent.
    ("dn-client", "forged-by-registered-ca", R.UNTRUSTED_CHAIN),
    # Validity and key usage.
    ("dn-client", "expired", R.EXPIRED),
    ("dn-client", "not-yet-valid", R.NOT_YET_VALID),
    ("dn-client", "server-auth-only", R.EKU_NOT_CLIENT_AUTH),
    # self_signed_tls_client_auth: only the registered certificates, byte for byte.
    ("self-signed-client", "unregistered-self-signed", R.NOT_REGISTERED),  # same subject, other key
    ("self-signed-client", "two-certs-client", R.NOT_REGISTERED),
    ("two-certs-client", "self-signed-client", R.NOT_REGISTERED),
    ("self-signed-client", "dn-client", R.NOT_REGISTERED),  # CA-issued is not registered either
    ("self-signed-ca-client", "forged-by-registered-ca", R.NOT_REGISTERED),
    # A registered self-signed certificate does not make a tls_client_auth client.
    ("dn-client", "self-signed-client", R.SELF_SIGNED),
]


@pytest.mark.parametrize(("client_id", "cert", "reason"), REFUSED, ids=[f"{c}:{p}" for c, p, _ in REFUSED])
def test_certificate_is_refused(wire: WireClient, pki: WirePKI, client_id: str, cert: str, reason: R) -> None:
    assert_invalid_client(wire.token(pki[cert], client_id), reason, client_id)


@pytest.mark.parametrize("client_id", ["dn-client", "self-signed-client"])
def test_no_certificate(wire: WireClient, client_id: str) -> None:
    assert_invalid_client(wire.token(None, client_id), R.NO_CERTIFICATE, client_id)


def test_unknown_client_id(wire: WireClient, pki: WirePKI) -> None:
    assert_invalid_client(wire.token(pki["dn-client"], "no-such-client"), "unknown client_id", "no-such-client")


@pytest.mark.parametrize("client_id", [None, ""], ids=["absent", "empty"])
def test_missing_client_id(wire: WireClient, pki: WirePKI, client_id: str | None) -> None:
    form = {"grant_type": "client_credentials"} | ({} if client_id is None else {"client_id": client_id})
    response = wire.post("/token", pki["dn-client"], form)
    assert_invalid_client(response, "client_id is required with mutual-TLS client authentication (RFC 8705 section 2)",
                          None)
