import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from authz.certificates.presented import PresentedCertificate
from authz.certificates.subject import InvalidSubject, subject_matcher
from tests.support.pki import Issued, TestCA


def presented(issued: Issued) -> PresentedCertificate:
    return PresentedCertificate.from_der([issued.der])


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


def test_san_dns_is_case_insensitive_and_exact(ca: TestCA) -> None:
    cert = presented(ca.issue(san_dns=["Client.Example.COM", "*.wild.example"]))
    assert subject_matcher("tls_client_auth_san_dns", "client.example.com").matches(cert)
    assert subject_matcher("tls_client_auth_san_dns", "client.example.com.").matches(cert)
    assert not subject_matcher("tls_client_auth_san_dns", "other.example.com").matches(cert)
    # a wildcard SAN is not a pattern for the registered name
    assert not subject_matcher("tls_client_auth_san_dns", "x.wild.example").matches(cert)


def test_san_uri_is_exact(ca: TestCA) -> None:
    cert = presented(ca.issue(san_uri=["spiffe://example.org/ns/a/sa/b"]))
    assert subject_matcher("tls_client_auth_san_uri", "spiffe://example.org/ns/a/sa/b").matches(cert)
    assert not subject_matcher("tls_client_auth_san_uri", "spiffe://example.org/ns/a/sa/B").matches(cert)


@pytest.mark.parametrize(("registered", "in_cert"), [
    ("2001:db8::1", "2001:0db8:0000:0000:0000:0000:0000:0001"),
    ("2001:0DB8:0:0:0:0:0:1", "2001:db8::1"),
    ("192.0.2.7", "192.0.2.7"),
])
def test_san_ip_compares_binary_addresses(ca: TestCA, registered: str, in_cert: str) -> None:
    assert subject_matcher("tls_client_auth_san_ip", registered).matches(presented(ca.issue(san_ip=[in_cert])))


def test_san_ip_v4_is_not_its_mapped_v6_form(ca: TestCA) -> None:
    cert = presented(ca.issue(san_ip=["::ffff:192.0.2.7"]))
    assert not subject_matcher("tls_client_auth_san_ip", "192.0.2.7").matches(cert)


def test_san_email_domain_case_insensitive_local_part_exact(ca: TestCA) -> None:
    cert = presented(ca.issue(san_email=["Alice@Example.COM"]))
    assert subject_matcher("tls_client_auth_san_email", "Alice@example.com").matches(cert)
    assert not subject_matcher("tls_client_auth_san_email", "alice@example.com").matches(cert)


def test_missing_san_does_not_match(ca: TestCA) -> None:
    cert = presented(ca.issue(eku=[ExtendedKeyUsageOID.CLIENT_AUTH]))
    for parameter, value in [("tls_client_auth_san_dns", "a.example"), ("tls_client_auth_san_ip", "::1"),
                             ("tls_client_auth_san_uri", "urn:x"), ("tls_client_auth_san_email", "a@b")]:
        assert not subject_matcher(parameter, value).matches(cert)


@pytest.mark.parametrize(("parameter", "value"), [
    ("tls_client_auth_san_ip", "not-an-ip"),
    ("tls_client_auth_san_ip", "2001:db8::/64"),
    ("tls_client_auth_san_email", "no-at-sign"),
    ("tls_client_auth_san_uri", "relative/path"),
    ("tls_client_auth_subject_dn", "CN"),
    ("tls_client_auth_san_dns", "   "),
    ("tls_client_auth_something", "x"),
])
def test_unusable_registered_values_are_refused(parameter: str, value: str) -> None:
    with pytest.raises(InvalidSubject):
        subject_matcher(parameter, value)


# Found by tests/fuzz/test_client_metadata.py: these two said what was wrong but not where, and
# the message is all an operator registering a client (or reading `clients list`) gets.
@pytest.mark.parametrize(("parameter", "value"), [
    ("tls_client_auth_san_email", "@x"),
    ("tls_client_auth_san_email", "no-at-sign"),
    ("tls_client_auth_san_dns", "\u00e9" * 80 + ".example"),
    ("tls_client_auth_san_dns", "\ud800.example"),
])
def test_a_refused_value_names_its_parameter(parameter: str, value: str) -> None:
    with pytest.raises(InvalidSubject, match=f"^{parameter}: "):
        subject_matcher(parameter, value)
