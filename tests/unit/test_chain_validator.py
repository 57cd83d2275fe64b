import datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from authz.certificates.chain import MAX_INTERMEDIATES, ChainValidator
from authz.certificates.presented import PresentedCertificate, presented_certificate
from authz.certificates.rejection import CertificateRejected, RejectionReason
from tests.support.pki import NOW, Issued, TestCA, self_signed, sign_with


def presented(issued: Issued, *, send_chain: bool = True) -> PresentedCertificate:
    chain = [issued.pem.decode()]
    if send_chain:
        chain += [c.public_bytes(serialization.Encoding.PEM).decode() for c in issued.chain]
    found = presented_certificate({"extensions": {"tls": {"client_cert_chain": chain}}})
    assert found is not None
    return found


@pytest.fixture(scope="module")
def root() -> TestCA:
    return TestCA()


def reason_of(validator: ChainValidator, issued: Issued, **kwargs: bool) -> RejectionReason:
    with pytest.raises(CertificateRejected) as info:
        validator.validate(presented(issued, **kwargs))
    return info.value.reason


def test_valid_chain_cn_only_and_without_eku(root: TestCA) -> None:
    validator = ChainValidator([root.cert])
    validator.validate(presented(root.issue("CN=cn-only")))
    validator.validate(presented(root.issue("CN=no-eku", eku=[])))


def test_failures_are_named(root: TestCA) -> None:
    validator = ChainValidator([root.cert])
    assert reason_of(validator, root.issue(not_after=NOW - datetime.timedelta(minutes=1),
                                          not_before=NOW - datetime.timedelta(days=2))) is RejectionReason.EXPIRED
    assert reason_of(validator, root.issue(not_before=NOW + datetime.timedelta(days=1))) \
        is RejectionReason.NOT_YET_VALID
    assert reason_of(validator, root.issue(eku=[ExtendedKeyUsageOID.SERVER_AUTH])) \
        is RejectionReason.EKU_NOT_CLIENT_AUTH
    assert reason_of(validator, TestCA("CN=Other Root").issue()) is RejectionReason.UNTRUSTED_CHAIN


def test_self_signed_ca_true_cannot_mint_pki_identities(root: TestCA) -> None:
    forger = self_signed("CN=registered self-signed", ca=True)
    forged = sign_with(forger, "CN=victim,O=authz tests")
    assert reason_of(ChainValidator([root.cert]), forged) is RejectionReason.UNTRUSTED_CHAIN


@pytest.mark.parametrize("ca", [False, True], ids=["leaf", "ca-true"])
def test_a_self_signed_certificate_is_named_first(root: TestCA, ca: bool) -> None:
    """Whatever else is wrong with it (here: expired too), a self-signed certificate never
    leads to an anchor: the refusal says so, in words that name the method."""
    issued = self_signed("CN=svc", ca=ca)
    assert reason_of(ChainValidator([root.cert]), issued) is RejectionReason.SELF_SIGNED
    assert RejectionReason.SELF_SIGNED.public_description == \
        "the certificate is self-signed; this client uses tls_client_auth"
    expired = self_signed("CN=svc", not_before=NOW - datetime.timedelta(days=9),
                          not_after=NOW - datetime.timedelta(days=1))
    assert reason_of(ChainValidator([root.cert]), expired) is RejectionReason.SELF_SIGNED


def test_a_leaf_issued_under_its_own_name_by_another_key_is_not_self_signed(root: TestCA) -> None:
    impostor = TestCA("CN=Test Root CA,O=authz tests")  # the root's name, another key
    leaf = impostor.issue("CN=Test Root CA,O=authz tests")  # issuer = subject, not its own key
    assert reason_of(ChainValidator([root.cert]), leaf) is RejectionReason.UNTRUSTED_CHAIN


def test_intermediates_sent_or_from_the_pool(root: TestCA) -> None:
    intermediate = TestCA("CN=Issuing CA", parent=root)
    leaf = intermediate.issue("CN=via intermediate")
    ChainValidator([root.cert]).validate(presented(leaf))
    assert reason_of(ChainValidator([root.cert]), leaf, send_chain=False) is RejectionReason.UNTRUSTED_CHAIN
    ChainValidator([root.cert], [intermediate.cert]).validate(presented(leaf, send_chain=False))


def test_intermediate_is_not_an_anchor(root: TestCA) -> None:
    # trusting only the root: a leaf from a rogue intermediate (not under root) fails
    rogue = TestCA("CN=Rogue Issuing CA", parent=TestCA("CN=Rogue Root"))
    assert reason_of(ChainValidator([root.cert]), rogue.issue()) is RejectionReason.UNTRUSTED_CHAIN


def test_cache_expires_with_the_certificate(root: TestCA) -> None:
    now = [NOW]
    validator = ChainValidator([root.cert], clock=lambda: now[0])
    leaf = root.issue(not_after=NOW + datetime.timedelta(hours=1))
    validator.validate(presented(leaf))
    validator.validate(presented(leaf))  # cached
    now[0] = NOW + datetime.timedelta(hours=2)
    assert reason_of(validator, leaf) is RejectionReason.EXPIRED


def test_no_anchors_means_untrusted(root: TestCA) -> None:
    assert reason_of(ChainValidator([]), root.issue()) is RejectionReason.UNTRUSTED_CHAIN


def test_garbage_certificate_is_unparsable() -> None:
    bogus = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(CertificateRejected) as info:
        presented_certificate({"extensions": {"tls": {"client_cert_chain": [bogus]}}})
    assert info.value.reason is RejectionReason.UNPARSABLE


def test_no_certificate_in_scope() -> None:
    assert presented_certificate({}) is None
    assert presented_certificate({"extensions": {"tls": {"client_cert_chain": []}}}) is None


def _issuing_ca(root: TestCA, intermediates: int) -> TestCA:
    issuing = root
    for level in range(intermediates):
        issuing = TestCA(f"CN=Intermediate {level},O=authz tests", parent=issuing)
    return issuing


@pytest.mark.parametrize("intermediates", [MAX_INTERMEDIATES + 1, 12, 40])
def test_chain_longer_than_the_validator_follows_is_named(root: TestCA, intermediates: int) -> None:
    leaf = _issuing_ca(root, intermediates).issue()
    # Sent whole, it is more certificates than a client may send: refused before any parse.
    with pytest.raises(CertificateRejected) as info:
        presented(leaf)
    assert info.value.reason is RejectionReason.CHAIN_TOO_LARGE
    # With the upper intermediates in the server's pool, path building runs out of depth.
    sent, pooled = leaf.chain[:2], leaf.chain[2:]
    validator = ChainValidator([root.cert], pooled)
    found = presented_certificate({"extensions": {"tls": {"client_cert_chain": [
        c.public_bytes(serialization.Encoding.PEM).decode() for c in [leaf.cert, *sent]]}}})
    assert found is not None
    with pytest.raises(CertificateRejected) as info:
        validator.validate(found)
    assert info.value.reason is RejectionReason.CHAIN_TOO_LONG


def test_chain_as_long_as_the_validator_follows_validates(root: TestCA) -> None:
    ChainValidator([root.cert]).validate(presented(_issuing_ca(root, MAX_INTERMEDIATES).issue()))
