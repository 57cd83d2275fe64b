"""Client metadata (``RegisteredClient.from_metadata``, what ``authz clients add`` and every
stored record go through) and the subject matchers it builds (``subject_matcher``).

Properties: any JSON-like metadata is a client or ``InvalidClientMetadata`` whose message names
the offending field, never another exception (the directory turns only that one into "this
registration is unusable"; anything else would be a 500 on every request naming the client);
an accepted registration survives being stored (JSON) and validated again unchanged; any
subject value is a matcher or ``InvalidSubject`` naming the parameter; and an accepted SAN
matches a certificate that carries it."""

from __future__ import annotations

import base64
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st
from joserfc.jwk import JWKRegistry

from authz.certificates.subject import SUBJECT_PARAMETERS, InvalidSubject, subject_matcher
from authz.clients.model import MTLS_AUTH_METHODS, InvalidClientMetadata, RegisteredClient, jwk_for_certificate
from tests.fuzz.profiles import budget
from tests.fuzz.strategies import any_text, json_values, text_of
from tests.support.pki import self_signed

FIELDS = ("client_id", "token_endpoint_auth_method", "scope", "grant_types",
          "tls_client_certificate_bound_access_tokens", "jwks", *SUBJECT_PARAMETERS)

_SELF_SIGNED = self_signed()
_JWK = jwk_for_certificate(_SELF_SIGNED.cert)
_OTHER_KEYS = [
    JWKRegistry.import_key(rsa.generate_private_key(65537, 2048).public_key(), "RSA").as_dict(),  # type: ignore[arg-type]
    JWKRegistry.import_key(ed25519.Ed25519PrivateKey.generate().public_key(), "OKP").as_dict(),  # type: ignore[arg-type]
    JWKRegistry.import_key(ec.generate_private_key(ec.SECP384R1()).public_key(), "EC").as_dict(),  # type: ignore[arg-type]
    {"kty": "oct", "k": base64.urlsafe_b64encode(b"k" * 32).rstrip(b"=").decode()},
    {"kty": "OKP", "crv": "X25519", "x": base64.urlsafe_b64encode(b"x" * 32).rstrip(b"=").decode()},
]

# --- plausible values, so that validation gets past its first checks, mixed with anything -------

_SCOPE_CHARS = st.sampled_from([*"abcrw:._-!#[]~ ", "\t", "\n", '"', "\\", "é", "\x7f", "\ud800"])
_DN_VALUES = st.sampled_from(["CN=client,O=t", "cn=a+o=b;c=FR", "OID.2.5.4.3=x", "CN=\\", "CN=\ud800", "=", "OID.="])
_DNS_VALUES = st.sampled_from(["client.example", "*.example.com", "Bücher.example.", "-bad-.example", "a" * 64 + ".x",
                               "xn--", "ex ample", "a..b", "*", "\ud800.example", "é" * 80]) | any_text
_IP_VALUES = st.sampled_from(["192.0.2.1", " 2001:db8::1 ", "fe80::1%eth0", "::ffff:1.2.3.4", "1.2.3", "300.1.1.1",
                              "\ud800"]) | any_text
_EMAIL_VALUES = st.sampled_from(["a@B.example", "@x", "a@", "a@b@c", "\ud800@x", " a@x "]) | any_text
_SUBJECT_VALUES = {
    "tls_client_auth_subject_dn": _DN_VALUES | any_text,
    "tls_client_auth_san_dns": _DNS_VALUES,
    "tls_client_auth_san_uri": st.sampled_from(["spiffe://example/client", "urn:x", "no-colon"]) | any_text,
    "tls_client_auth_san_ip": _IP_VALUES,
    "tls_client_auth_san_email": _EMAIL_VALUES,
}


@st.composite
def jwks(draw: st.DrawFn) -> Any:
    """A JWK Set around a real certificate, with members replaced, dropped or added."""
    keys = []
    for _ in range(draw(st.integers(0, 3))):
        jwk: dict[str, Any] = dict(_JWK)
        if draw(st.booleans()):  # another key (or no key at all) beside the certificate
            jwk = {**draw(st.sampled_from([*_OTHER_KEYS, {}])), "x5c": jwk["x5c"]}
        for _ in range(draw(st.integers(0, 2)) if keys else draw(st.sampled_from([0, 0, 1]))):
            member = draw(st.sampled_from(["kty", "crv", "x", "y", "n", "e", "k", "x5c", "use", "key_ops", "alg",
                                           "kid"]))
            jwk[member] = draw(json_values | st.sampled_from(
                [["sign"], ["encrypt"], ["verify"], "enc", "sig", [base64.b64encode(b"\x30\x00").decode()],
                 ["!!"], [], [_JWK["x5c"][0] + "="]]))
        keys.append(jwk if draw(st.integers(0, 9)) else draw(json_values))
    return {"keys": keys} if draw(st.integers(0, 9)) else draw(json_values)


_VALID_SUBJECTS = {
    "tls_client_auth_subject_dn": "CN=client,O=t",
    "tls_client_auth_san_dns": "client.example",
    "tls_client_auth_san_uri": "spiffe://example/client",
    "tls_client_auth_san_ip": "192.0.2.1",
    "tls_client_auth_san_email": "client@example.com",
}
_PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "client_id": st.sampled_from(["c", "client-1", "a" * 255, "a" * 256, "", "tab\there", "\ud800"]) | any_text,
    "token_endpoint_auth_method": st.sampled_from([*MTLS_AUTH_METHODS, "client_secret_basic", "none"]),
    "scope": text_of(_SCOPE_CHARS, max_size=20),
    "grant_types": st.sampled_from([["client_credentials"], [], ["password"], "client_credentials",
                                    ["client_credentials", "client_credentials"]]),
    "tls_client_certificate_bound_access_tokens": st.booleans(),
    "jwks": jwks(),
    **_SUBJECT_VALUES,
}


@st.composite
def metadata(draw: st.DrawFn) -> dict[str, Any]:
    """A valid registration of either method with a few members replaced (by a plausible or
    any JSON value), dropped or added: each example has one or two things wrong, or none."""
    # The subject or the JWK Set, what each method validates most, is half the time not the valid one.
    if draw(st.booleans()):
        subject = draw(st.sampled_from(SUBJECT_PARAMETERS))
        out: dict[str, Any] = {"client_id": "c", "token_endpoint_auth_method": "tls_client_auth",
                               subject: draw(st.just(_VALID_SUBJECTS[subject]) | _SUBJECT_VALUES[subject])}
    else:
        out = {"client_id": "c", "token_endpoint_auth_method": "self_signed_tls_client_auth",
               "jwks": draw(st.just({"keys": [_JWK]}) | jwks())}
    out.update({"scope": "read write", "grant_types": ["client_credentials"]})
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(FIELDS))
        action = draw(st.sampled_from(["plausible", "plausible", "any", "drop"]))
        if action == "drop":
            out.pop(name, None)
        else:
            out[name] = draw(_PLAUSIBLE[name] if action == "plausible" else json_values)
    out.update(draw(st.dictionaries(st.text(max_size=12), json_values, max_size=2)))  # unknown members
    return out


def _validate(value: dict[str, Any]) -> RegisteredClient | None:
    try:
        return RegisteredClient.from_metadata(value)
    except InvalidClientMetadata as exc:
        message = str(exc)
        assert any(field in message for field in FIELDS), message
        return None


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")  # joserfc on a 32-byte "oct" key
@budget(500)
@given(metadata())
def test_metadata_is_a_client_or_invalid_client_metadata_naming_the_field(value: dict[str, Any]) -> None:
    client = _validate(value)
    if client is None:
        return
    # What the store keeps and every later load validates again: the same client.
    stored = json.loads(json.dumps(dict(client.metadata)))
    again = RegisteredClient.from_metadata(stored)
    assert (again.client_id, again.auth_method, again.scopes, again.grant_types, again.subject_value,
            again.registered_certificates, again.certificate_bound_access_tokens) == \
        (client.client_id, client.auth_method, client.scopes, client.grant_types, client.subject_value,
         client.registered_certificates, client.certificate_bound_access_tokens)


@budget(300)
@given(st.sampled_from([*SUBJECT_PARAMETERS, "tls_client_auth_san_other"]), any_text | json_values)
def test_any_subject_value_is_a_matcher_or_invalid_subject_naming_the_parameter(parameter: str, value: Any) -> None:
    try:
        subject_matcher(parameter, value)
    except InvalidSubject as exc:
        assert parameter in str(exc), str(exc)


# --- an accepted SAN matches a certificate that carries it --------------------------------------


@dataclass
class _Presented:
    """What the matchers read of a presented certificate."""

    subject_alt_names: x509.SubjectAlternativeName | None


_LABEL = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", fullmatch=True)


@budget(200)
@given(st.lists(_LABEL, min_size=1, max_size=4).map(".".join), st.booleans(), st.booleans())
def test_a_registered_dns_name_matches_it_in_any_case(name: str, upper: bool, dot: bool) -> None:
    registered = (name.upper() if upper else name) + ("." if dot else "")
    matcher = subject_matcher("tls_client_auth_san_dns", registered)
    assert matcher.matches(_Presented(x509.SubjectAlternativeName([x509.DNSName(name.lower())])))  # type: ignore[arg-type]
    assert not matcher.matches(_Presented(x509.SubjectAlternativeName([x509.DNSName("x" + name)])))  # type: ignore[arg-type]


@budget(200)
@given(st.ip_addresses())
def test_a_registered_ip_matches_in_any_spelling(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    spellings = [str(address), f" {address} "]
    if address.version == 6:
        spellings.append(":".join(f"{int.from_bytes(address.packed[i:i + 2]):04X}" for i in range(0, 16, 2)))
    for spelling in spellings:
        matcher = subject_matcher("tls_client_auth_san_ip", spelling)
        assert matcher.matches(_Presented(x509.SubjectAlternativeName([x509.IPAddress(address)])))  # type: ignore[arg-type]


@budget(200)
@given(st.emails())
def test_a_registered_email_matches_with_the_domain_in_any_case(address: str) -> None:
    local, _, domain = address.rpartition("@")
    matcher = subject_matcher("tls_client_auth_san_email", f"{local}@{domain.upper()}")
    assert matcher.matches(_Presented(x509.SubjectAlternativeName([x509.RFC822Name(address)])))  # type: ignore[arg-type]
