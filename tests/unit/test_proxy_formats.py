"""Each proxy's certificate header, written the way that proxy writes it, decodes to the chain
it carried; a malformed one is a refusal naming the header and the problem."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from authz.networks import parse_networks
from authz.proxy.formats import FORMATS, CertificateHeaderError
from authz.proxy.forwarded import forwarded_client
from authz.proxy.trust import ProxyTrust
from tests.support.pki import Issued, TestCA


@pytest.fixture(scope="module")
def issued() -> Issued:
    return TestCA(parent=TestCA()).issue("CN=proxied,O=authz tests")


def _pems(issued: Issued) -> list[str]:
    from cryptography.hazmat.primitives import serialization

    return [c.public_bytes(serialization.Encoding.PEM).decode() for c in [issued.cert, *issued.chain]]


def _ders(issued: Issued) -> list[bytes]:
    from cryptography.hazmat.primitives import serialization

    return [c.public_bytes(serialization.Encoding.DER) for c in [issued.cert, *issued.chain]]


def _b64(der: bytes) -> str:
    return base64.b64encode(der).decode()


def test_rfc9440(issued: Issued) -> None:
    leaf, *chain = _ders(issued)
    headers = {"client-cert": f":{_b64(leaf)}:", "client-cert-chain": ", ".join(f":{_b64(d)}:" for d in chain)}
    assert FORMATS["rfc9440"].decode(headers) == [leaf, *chain]
    assert FORMATS["rfc9440"].decode({"client-cert": f":{_b64(leaf)}:"}) == [leaf]


def test_nginx_escaped_pem(issued: Issued) -> None:
    # $ssl_client_escaped_cert: the leaf's PEM, URL-encoded (nginx exposes no chain).
    assert FORMATS["nginx"].decode({"x-ssl-client-cert": quote(_pems(issued)[0], safe="")}) == _ders(issued)[:1]
    assert FORMATS["nginx"].decode({"x-ssl-client-cert": ""}) is None  # no certificate: nginx sends it empty
    assert FORMATS["nginx"].decode({"x-client": quote(_pems(issued)[0])}, "X-Client") == _ders(issued)[:1]


def test_haproxy_der_and_chain(issued: Issued) -> None:
    leaf, *chain = _ders(issued)
    headers = {"x-ssl-client-cert": _b64(leaf), "x-ssl-client-cert-chain": _b64(b"".join(chain))}
    assert FORMATS["haproxy"].decode(headers) == [leaf, *chain]


def test_apache_pem_with_spaces(issued: Issued) -> None:
    # mod_headers forwards %{SSL_CLIENT_CERT}s with its line breaks turned into spaces.
    pems = [p.replace("\n", " ") for p in _pems(issued)]
    headers = {"x-ssl-client-cert": pems[0], "x-ssl-client-cert-chain-0": pems[1], "x-ssl-client-cert-chain-1": ""}
    assert FORMATS["apache"].decode(headers) == _ders(issued)
    assert FORMATS["apache"].decode({"x-ssl-client-cert": "(null)"}) is None


def test_envoy_xfcc_nearest_element(issued: Issued) -> None:
    pems = _pems(issued)
    other = TestCA().issue("CN=further away")
    further = f'By=spiffe://edge;Hash=00;Cert="{quote(_pems(other)[0])}";Subject="CN=further away"'
    nearest = (f'By=spiffe://as;Hash=abcd;Cert="{quote(pems[0])}";Chain="{quote("".join(pems))}";'
               f'Subject="CN=proxied,O=authz tests";URI=spiffe://client')
    assert FORMATS["envoy"].decode({"x-forwarded-client-cert": f"{further},{nearest}"}) == _ders(issued)
    only_cert = f'Hash=abcd;Cert="{quote(pems[0])}"'
    assert FORMATS["envoy"].decode({"x-forwarded-client-cert": only_cert}) == _ders(issued)[:1]
    assert FORMATS["envoy"].decode({"x-forwarded-client-cert": "By=spiffe://as;Hash=abcd"}) is None


def test_traefik_sanitized_pem(issued: Issued) -> None:
    # PassTLSClientCert pem: true: armour and line breaks removed, comma-separated, URL-escaped.
    value = quote(",".join(_b64(d) for d in _ders(issued)), safe="")
    assert FORMATS["traefik"].decode({"x-forwarded-tls-client-cert": value}) == _ders(issued)


def test_aws_alb_url_encoded_pem_chain(issued: Issued) -> None:
    value = quote("".join(_pems(issued)), safe="")
    assert FORMATS["aws-alb"].decode({"x-amzn-mtls-clientcert": value}) == _ders(issued)


@pytest.mark.parametrize(("format_name", "headers", "message"), [
    ("rfc9440", {"client-cert": "MIIB"}, "Client-Cert: not a structured-field byte sequence (:base64:)"),
    ("rfc9440", {"client-cert": ":!!:"}, "Client-Cert: not base64"),
    ("rfc9440", {"client-cert": ":AA==:", "client-cert-chain": "AA=="},
     "Client-Cert-Chain: not a structured-field byte sequence (:base64:)"),
    ("nginx", {"x-ssl-client-cert": "garbage"}, "X-SSL-Client-Cert: holds no PEM certificate"),
    ("nginx", {"x-ssl-client-cert": "%FF%FE"}, "X-SSL-Client-Cert: URL-encoding that is not UTF-8"),
    ("haproxy", {"x-ssl-client-cert": "@@"}, "X-SSL-Client-Cert: not base64"),
    ("haproxy", {"x-ssl-client-cert": "AA==", "x-ssl-client-cert-chain": _b64(b"\x30\x82\x01")},
     "X-SSL-Client-Cert-Chain: not a sequence of DER certificates"),
    ("haproxy", {"x-ssl-client-cert": "AA==", "x-ssl-client-cert-chain": _b64(b"\x30\x05\x01")},
     "X-SSL-Client-Cert-Chain: a DER certificate is cut short"),
    ("apache", {"x-ssl-client-cert": "-----BEGIN CERTIFICATE----- !!! -----END CERTIFICATE-----"},
     "X-SSL-Client-Cert: not base64 inside its PEM armour"),
    ("envoy", {"x-forwarded-client-cert": 'Cert="unterminated'},
     "X-Forwarded-Client-Cert: not Envoy's key=value;key=value,... format"),
    ("envoy", {"x-forwarded-client-cert": "Cert=%2D%2D"}, "X-Forwarded-Client-Cert: holds no PEM certificate"),
    ("traefik", {"x-forwarded-tls-client-cert": "not*base64"}, "X-Forwarded-Tls-Client-Cert: not base64"),
    ("aws-alb", {"x-amzn-mtls-clientcert": "x"}, "X-Amzn-Mtls-Clientcert: holds no PEM certificate"),
])
def test_malformed_headers_are_named(format_name: str, headers: dict[str, str], message: str) -> None:
    with pytest.raises(CertificateHeaderError) as info:
        FORMATS[format_name].decode(headers)
    assert str(info.value) == message


def test_forwarded_client_is_the_nearest_untrusted_hop() -> None:
    trust = ProxyTrust(parse_networks(["10.0.0.0/8", "::1"], strict=False))
    assert forwarded_client({"x-forwarded-for": "198.51.100.7, 203.0.113.9, 10.1.2.3"},
                            trust.is_trusted_address) == "203.0.113.9"
    assert forwarded_client({"forwarded": 'for=192.0.2.60;proto=https, for="[2001:db8::17]:4711"'},
                            trust.is_trusted_address) == "2001:db8::17"
    assert forwarded_client({"x-forwarded-for": "10.0.0.1"}, trust.is_trusted_address) == "10.0.0.1"
    assert forwarded_client({}, trust.is_trusted_address) is None


def test_trusted_addresses() -> None:
    trust = ProxyTrust(parse_networks(["10.0.0.0/8", "2001:db8::/32", "127.0.0.1"], strict=False))
    assert trust.is_trusted_address("10.9.8.7") and trust.is_trusted_address("::ffff:10.0.0.1")
    assert trust.is_trusted_address("2001:db8::5") and trust.is_trusted_address("127.0.0.1")
    assert not trust.is_trusted_address("127.0.0.2") and not trust.is_trusted_address("not an address")
    with pytest.raises(ValueError, match="is not an address or CIDR network"):
        parse_networks(["10.0.0.0/33"], strict=False)


def test_a_long_xfcc_header_decodes_in_linear_time(issued: Issued) -> None:
    import time

    nearest = f'Hash=abcd;Cert="{quote(_pems(issued)[0])}"'
    value = ",".join(['By=spiffe://x;Hash=00;Subject="CN=a\\"b;c,d"'] * 700 + [nearest])  # about 32 KiB
    started = time.perf_counter()
    assert FORMATS["envoy"].decode({"x-forwarded-client-cert": value}) == _ders(issued)[:1]
    assert time.perf_counter() - started < 0.05
