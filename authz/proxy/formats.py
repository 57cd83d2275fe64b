"""How each TLS-terminating proxy writes the client certificate into a request header, and
how to read it back: one named format per proxy, each decoding to the DER chain, leaf first.

Everything here reads bytes an anonymous client may have chosen (the proxy forwards whatever
certificate it was shown), so decoding is linear in the header's size, and a refusal names the
header and what is wrong with it in fixed words, never the value.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = ["FORMATS", "CertificateHeaderError", "HeaderFormat", "header_format"]


class CertificateHeaderError(ValueError):
    """The certificate header is present but cannot be decoded."""

    def __init__(self, header: str, problem: str) -> None:
        super().__init__(f"{header}: {problem}")
        self.header = header
        self.problem = problem


Headers = Mapping[str, str]  # lower-case names; repeated fields joined with ", "
Decoder = Callable[[Headers, str], list[bytes] | None]

_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)
_WHITESPACE = re.compile(r"\s+")


def _base64(header: str, text: str, what: str = "base64") -> bytes:
    try:
        return base64.b64decode(_WHITESPACE.sub("", text), validate=True)
    except (binascii.Error, ValueError):
        raise CertificateHeaderError(header, f"not {what}") from None


def _pem_chain(header: str, text: str) -> list[bytes]:
    blocks = _PEM_BLOCK.findall(text)
    if not blocks:
        raise CertificateHeaderError(header, "holds no PEM certificate")
    return [_base64(header, block, "base64 inside its PEM armour") for block in blocks]


def _url_decoded(header: str, text: str) -> str:
    # unquote, not unquote_plus: base64's "+" is escaped by the proxies that escape (%2B), and a
    # literal "+" must stay a "+".
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise CertificateHeaderError(header, "URL-encoding that is not UTF-8") from None


def _split_der(header: str, data: bytes) -> list[bytes]:
    """Concatenated DER certificates (HAProxy's ``ssl_c_chain_der``), split by their
    SEQUENCE lengths."""
    certificates = []
    position = 0
    while position < len(data):
        if data[position] != 0x30 or position + 2 > len(data):
            raise CertificateHeaderError(header, "not a sequence of DER certificates")
        first = data[position + 1]
        if first < 0x80:
            length, header_size = first, 2
        else:
            count = first & 0x7F
            if not 1 <= count <= 4 or position + 2 + count > len(data):
                raise CertificateHeaderError(header, "not a sequence of DER certificates")
            length = int.from_bytes(data[position + 2:position + 2 + count], "big")
            header_size = 2 + count
        end = position + header_size + length
        if end > len(data):
            raise CertificateHeaderError(header, "a DER certificate is cut short")
        certificates.append(data[position:end])
        position = end
    return certificates


def _sf_binary(header: str, item: str) -> bytes:
    """An RFC 8941 byte sequence: ``:base64:``."""
    item = item.strip(" \t")
    if len(item) < 2 or item[0] != ":" or item[-1] != ":":
        raise CertificateHeaderError(header, "not a structured-field byte sequence (:base64:)")
    return _base64(header, item[1:-1])


def _rfc9440(headers: Headers, name: str) -> list[bytes] | None:
    """RFC 9440: ``Client-Cert: :DER:`` and ``Client-Cert-Chain: :DER:, :DER:`` (the chain
    without the leaf)."""
    leaf = headers.get(name)
    if leaf is None:
        return None
    chain_name = f"{name}-chain"
    chain = headers.get(chain_name, "")
    return [_sf_binary(name, leaf), *(_sf_binary(chain_name, item) for item in chain.split(",") if item.strip())]


def _nginx(headers: Headers, name: str) -> list[bytes] | None:
    """nginx ``$ssl_client_escaped_cert``: the URL-encoded PEM of the leaf (nginx has no
    variable for the chain); empty when the client sent no certificate."""
    value = headers.get(name)
    if not value:
        return None
    return _pem_chain(name, _url_decoded(name, value))


def _haproxy(headers: Headers, name: str) -> list[bytes] | None:
    """HAProxy ``%[ssl_c_der,base64]``, and optionally ``%[ssl_c_chain_der,base64]`` (the
    intermediates, concatenated) in ``NAME-Chain``."""
    value = headers.get(name)
    if not value:
        return None
    chain_name = f"{name}-chain"
    chain = headers.get(chain_name)
    return [_base64(name, value), *(_split_der(chain_name, _base64(chain_name, chain)) if chain else [])]


_APACHE_ABSENT = {"", "(null)"}
_MAX_APACHE_CHAIN = 16  # SSL_CLIENT_CERT_CHAIN_0..n: no client chain is longer


def _apache(headers: Headers, name: str) -> list[bytes] | None:
    """Apache ``RequestHeader set NAME "%{SSL_CLIENT_CERT}s"``: the PEM of the leaf (mod_headers
    turns its line breaks into spaces), ``(null)`` or empty without a certificate; optionally
    ``NAME-Chain-0``, ``-1``... from ``%{SSL_CLIENT_CERT_CHAIN_n}s``."""
    value = headers.get(name)
    if value is None or value.strip() in _APACHE_ABSENT:
        return None
    chain = _pem_chain(name, value)[:1]
    for index in range(_MAX_APACHE_CHAIN):
        link_name = f"{name}-chain-{index}"
        link = headers.get(link_name)
        if link is None or link.strip() in _APACHE_ABSENT:
            break
        chain.extend(_pem_chain(link_name, link)[:1])
    return chain


# One ``key=value`` pair of an XFCC element and the separator after it; and what separates
# elements: a comma outside a quoted value. Regular expressions rather than a loop over
# characters: the header can be as long as a request head (32 KiB), and a proxy that appends
# (Envoy's APPEND_FORWARD) forwards what the client sent. Only the nearest element is parsed.
_XFCC_PAIR = re.compile(r'\s*([^=;,\s"]+)=("(?:[^"\\]|\\.)*"|[^;,"]*)\s*(;|$)')
_XFCC_QUOTED_OR_COMMA = re.compile(r'"(?:[^"\\]|\\.)*"|,')
_XFCC_ESCAPE = re.compile(r"\\(.)")


def _xfcc_nearest_element(header: str, value: str) -> dict[str, str]:
    """The last element of Envoy's ``X-Forwarded-Client-Cert`` (comma-separated elements, one
    per proxy, each ``key=value`` pairs separated by ``;``, values optionally double-quoted):
    the one the nearest proxy appended."""
    start = 0
    for token in _XFCC_QUOTED_OR_COMMA.finditer(value):
        if token.group() == ",":
            start = token.end()
    element: dict[str, str] = {}
    position = start
    while position < len(value):
        pair = _XFCC_PAIR.match(value, position)
        if pair is None:
            if value[position:].strip(" \t;"):
                raise CertificateHeaderError(header, "not Envoy's key=value;key=value,... format")
            break
        key, raw, _ = pair.groups()
        element[key.lower()] = _XFCC_ESCAPE.sub(r"\1", raw[1:-1]) if raw.startswith('"') else raw.strip()
        position = pair.end()
    return element


def _envoy(headers: Headers, name: str) -> list[bytes] | None:
    """Envoy ``X-Forwarded-Client-Cert`` with ``Cert`` (and ``Chain``) in its details: the
    last element is the one the nearest proxy appended."""
    value = headers.get(name)
    if not value:
        return None
    nearest = _xfcc_nearest_element(name, value)
    if "chain" in nearest:
        return _pem_chain(name, _url_decoded(name, nearest["chain"]))
    if "cert" in nearest:
        return _pem_chain(name, _url_decoded(name, nearest["cert"]))
    return None  # the proxy forwarded details (Hash, Subject...) but no certificate


def _traefik(headers: Headers, name: str) -> list[bytes] | None:
    """Traefik PassTLSClientCert ``pem: true``: the URL-escaped certificates with their PEM
    armour and line breaks removed, comma-separated, leaf first."""
    value = headers.get(name)
    if not value:
        return None
    text = _url_decoded(name, value)
    if "-----BEGIN" in text:
        return _pem_chain(name, text)
    return [_base64(name, part) for part in text.split(",") if part.strip()]


def _aws_alb(headers: Headers, name: str) -> list[bytes] | None:
    """AWS Application Load Balancer mTLS: the URL-encoded PEM of the client's certificate
    (its whole chain in passthrough mode)."""
    value = headers.get(name)
    if not value:
        return None
    return _pem_chain(name, _url_decoded(name, value))


@dataclass(frozen=True)
class HeaderFormat:
    name: str
    default_header: str
    decode_with: Decoder
    # Whether the proxy lets its operator choose the header's name.
    header_configurable: bool

    def decode(self, headers: Headers, header: str | None = None) -> list[bytes] | None:
        """The DER chain (leaf first) the proxy forwarded, None when it forwarded none;
        ``CertificateHeaderError`` when the header does not decode."""
        name = header or self.default_header
        try:
            chain = self.decode_with(headers, name.lower())
        except CertificateHeaderError as exc:
            # Decoders look headers up by their lower-case names; name them as configured.
            shown = name + "-".join(part.capitalize() for part in exc.header[len(name):].split("-"))
            raise CertificateHeaderError(shown, exc.problem) from None
        if chain is not None and not chain:
            raise CertificateHeaderError(name, "holds no certificate")
        return chain

    def header_names(self, header: str | None = None) -> Sequence[str]:
        """The lower-case names of the headers this format reads (for stripping and logging)."""
        name = (header or self.default_header).lower()
        if self.decode_with is _apache:
            return [name, *(f"{name}-chain-{i}" for i in range(_MAX_APACHE_CHAIN))]
        if self.decode_with in (_rfc9440, _haproxy):
            return [name, f"{name}-chain"]
        return [name]


FORMATS: dict[str, HeaderFormat] = {
    f.name: f
    for f in (
        HeaderFormat("rfc9440", "Client-Cert", _rfc9440, header_configurable=False),
        HeaderFormat("nginx", "X-SSL-Client-Cert", _nginx, header_configurable=True),
        HeaderFormat("haproxy", "X-SSL-Client-Cert", _haproxy, header_configurable=True),
        HeaderFormat("apache", "X-SSL-Client-Cert", _apache, header_configurable=True),
        HeaderFormat("envoy", "X-Forwarded-Client-Cert", _envoy, header_configurable=False),
        HeaderFormat("traefik", "X-Forwarded-Tls-Client-Cert", _traefik, header_configurable=False),
        HeaderFormat("aws-alb", "X-Amzn-Mtls-Clientcert", _aws_alb, header_configurable=False),
    )
}


def header_format(name: str) -> HeaderFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown certificate header format {name!r}; one of {', '.join(FORMATS)}") from None
