import base64

import pytest

from authz.clients.model import InvalidClientMetadata, RegisteredClient, jwk_for_certificate
from tests.support.pki import self_signed


def pki_client(**extra: object) -> dict[str, object]:
    return {"client_id": "c1", "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "CN=c1,O=Example", **extra}


def test_defaults_for_an_mtls_client() -> None:
    client = RegisteredClient.from_metadata(pki_client(scope="read write read"))
    assert client.certificate_bound_access_tokens is True
    assert client.scopes == ("read", "write")
    assert client.grant_types == ("client_credentials",)
    assert client.check_endpoint_auth_method("tls_client_auth", "token")
    assert not client.check_endpoint_auth_method("self_signed_tls_client_auth", "token")


@pytest.mark.parametrize(("metadata", "fragment"), [
    (pki_client(tls_client_auth_san_dns="c1.example"), "exactly one"),
    ({"client_id": "c1", "token_endpoint_auth_method": "tls_client_auth"}, "exactly one"),
    (pki_client(tls_client_auth_subject_dn="CN"), "tls_client_auth_subject_dn"),
    (pki_client(token_endpoint_auth_method="client_secret_basic"), "token_endpoint_auth_method"),
    (pki_client(client_id=""), "client_id"),
    (pki_client(scope='bad"scope'), "scope"),
    (pki_client(grant_types=["authorization_code"]), "grant_types"),
    (pki_client(tls_client_certificate_bound_access_tokens="yes"), "boolean"),
    ({"client_id": "s", "token_endpoint_auth_method": "self_signed_tls_client_auth"}, "jwks"),
    ({"client_id": "s", "token_endpoint_auth_method": "self_signed_tls_client_auth",
      "tls_client_auth_san_dns": "x.example", "jwks": {"keys": []}}, "only apply to tls_client_auth"),
])
def test_invalid_metadata_is_refused_naming_the_field(metadata: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidClientMetadata, match=fragment):
        RegisteredClient.from_metadata(metadata)


def test_self_signed_client_registers_several_certificates() -> None:
    first, second = self_signed("CN=a"), self_signed("CN=b")
    client = RegisteredClient.from_metadata({
        "client_id": "s", "token_endpoint_auth_method": "self_signed_tls_client_auth",
        "jwks": {"keys": [jwk_for_certificate(first.cert), jwk_for_certificate(second.cert)]},
    })
    assert client.registered_certificates == {first.der, second.der}


def test_jwk_key_must_be_the_x5c_certificate_key() -> None:
    jwk = jwk_for_certificate(self_signed("CN=a").cert)
    jwk["x5c"] = [base64.b64encode(self_signed("CN=b").der).decode()]
    with pytest.raises(InvalidClientMetadata, match="not the key of its x5c"):
        RegisteredClient.from_metadata({"client_id": "s", "token_endpoint_auth_method": "self_signed_tls_client_auth",
                                        "jwks": {"keys": [jwk]}})


# Found by tests/fuzz/test_client_metadata.py: an "oct" key raised AttributeError and key_ops
# without "verify" a joserfc error, so a stored record like these was a 500, not "unusable".
@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")  # joserfc on a short "oct" key
@pytest.mark.parametrize(("members", "fragment"), [
    ({"kty": "oct", "k": "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s"}, "not the key of its x5c"),
    ({"key_ops": ["encrypt"]}, "not a valid JWK"),
    ({"crv": "enc"}, "not a valid JWK"),  # KeyError in joserfc; found by the long fuzz profile
])
def test_a_jwk_that_cannot_verify_is_refused(members: dict[str, object], fragment: str) -> None:
    certificate = self_signed("CN=a").cert
    jwk = {**jwk_for_certificate(certificate), **members}
    with pytest.raises(InvalidClientMetadata, match=fragment):
        RegisteredClient.from_metadata({"client_id": "s", "token_endpoint_auth_method": "self_signed_tls_client_auth",
                                        "jwks": {"keys": [jwk]}})


def test_x5c_must_be_a_certificate() -> None:
    with pytest.raises(InvalidClientMetadata, match="x5c"):
        RegisteredClient.from_metadata({"client_id": "s", "token_endpoint_auth_method": "self_signed_tls_client_auth",
                                        "jwks": {"keys": [{"x5c": ["bm90IGEgY2VydA=="]}]}})


def dns_client(name: str) -> dict[str, object]:
    return {"client_id": "c1", "token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_dns": name}


@pytest.mark.parametrize("scope", ["a\tb", "a\nb", "a\u00a0b"], ids=["tab", "newline", "nbsp"])
def test_scope_separated_by_anything_but_spaces_is_refused(scope: str) -> None:
    # The token endpoint refuses such a scope in a request: it must not be registrable.
    with pytest.raises(InvalidClientMetadata, match="scope"):
        RegisteredClient.from_metadata(pki_client(scope=scope))


def test_scope_is_stored_as_it_is_used() -> None:
    client = RegisteredClient.from_metadata(pki_client(scope=" read  write read "))
    assert client.metadata["scope"] == "read write"
    assert client.scopes == ("read", "write")


@pytest.mark.parametrize("name", ["a b..c", "a..example", "-a.example", "a-.example", "a_b.example", "",
                                  "x" * 64 + ".example", "a.*.example"])
def test_a_san_dns_that_is_no_dns_name_is_refused(name: str) -> None:
    with pytest.raises(InvalidClientMetadata, match="tls_client_auth_san_dns"):
        RegisteredClient.from_metadata(dns_client(name))


@pytest.mark.parametrize(("name", "stored"), [("Bench-Client.Example.", "bench-client.example"),
                                              ("*.clients.example", "*.clients.example"),
                                              ("bücher.example", "xn--bcher-kva.example")])
def test_dns_names_that_are_accepted(name: str, stored: str) -> None:
    client = RegisteredClient.from_metadata(dns_client(name))
    assert client.subject is not None and getattr(client.subject, "name", None) == stored


# --- jwks_uri (RFC 7591 §2) ------------------------------------------------------------------

def uri_client(**extra: object) -> dict[str, object]:
    return {"client_id": "u", "token_endpoint_auth_method": "self_signed_tls_client_auth",
            "jwks_uri": "https://keys.example/u/jwks.json", **extra}


def test_a_self_signed_client_may_register_a_jwks_uri_instead_of_jwks() -> None:
    client = RegisteredClient.from_metadata(uri_client())
    assert client.jwks_uri == "https://keys.example/u/jwks.json"
    assert client.registered_certificates == frozenset()  # filled from the fetched set, per request
    assert client.metadata["jwks_uri"] == "https://keys.example/u/jwks.json"


@pytest.mark.parametrize("uri", ["https://keys.example/jwks?client=u&v=2", "https://keys.example:8443/jwks",
                                 "https://[2001:db8::1]/jwks", "https://192.0.2.7/jwks", "HTTPS://keys.example/"])
def test_jwks_uris_that_are_accepted(uri: str) -> None:
    assert RegisteredClient.from_metadata(uri_client(jwks_uri=uri)).jwks_uri == uri


@pytest.mark.parametrize(("uri", "message"), [
    ("http://keys.example/jwks", "jwks_uri must be an https URL (got scheme 'http')"),
    ("keys.example/jwks", "jwks_uri must be an https URL"),
    ("file:///etc/passwd", "jwks_uri must be an https URL (got scheme 'file')"),
    ("https://keys.example/jwks#main", "jwks_uri must not have a fragment"),
    ("https://keys.example/jwks#", "jwks_uri must not have a fragment"),
    ("https://user:secret@keys.example/jwks", "jwks_uri must not carry a user name or password (userinfo)"),
    ("https://keys.example@169.254.169.254/jwks", "jwks_uri must not carry a user name or password (userinfo)"),
    ("https://" + "k" * 2040 + ".example/", "jwks_uri is longer than 2048 characters"),
    ("https:///jwks", "jwks_uri has no host"),
    ("https://keys.example:99999/jwks", "jwks_uri is not a valid URL (Port out of range 0-65535)"),
    ("https://keys.example:0/jwks", "jwks_uri has port 0"),
    ("https://keys.example:x/jwks", "jwks_uri is not a valid URL"),
    ("https://[::1/jwks", "jwks_uri is not a valid URL (Invalid IPv6 URL)"),
    ("https://keys.example/a b", "jwks_uri contains characters a URL cannot"),
    ("https://clés.example/jwks", "jwks_uri contains characters a URL cannot"),
    ("https://keys.example/\x00", "jwks_uri contains characters a URL cannot"),
    ("", "jwks_uri must be a non-empty string"),
    (["https://keys.example/"], "jwks_uri must be a non-empty string"),
])
def test_a_jwks_uri_that_cannot_be_fetched_safely_is_refused_with_its_reason(uri: object, message: str) -> None:
    with pytest.raises(InvalidClientMetadata) as raised:
        RegisteredClient.from_metadata(uri_client(jwks_uri=uri))
    assert str(raised.value).startswith(message)


def test_jwks_and_jwks_uri_must_not_both_be_present() -> None:
    jwks = {"keys": [jwk_for_certificate(self_signed("CN=a").cert)]}
    with pytest.raises(InvalidClientMetadata, match=r"jwks and jwks_uri must not both be present \(RFC 7591 §2\)"):
        RegisteredClient.from_metadata(uri_client(jwks=jwks))


def test_a_self_signed_client_without_jwks_or_jwks_uri_is_told_about_both() -> None:
    with pytest.raises(InvalidClientMetadata, match=r"registers its certificates in jwks .* or jwks_uri"):
        RegisteredClient.from_metadata({"client_id": "s", "token_endpoint_auth_method": "self_signed_tls_client_auth"})


def test_a_tls_client_auth_client_cannot_register_a_jwks_uri() -> None:
    with pytest.raises(InvalidClientMetadata, match="jwks_uri is for self_signed_tls_client_auth clients"):
        RegisteredClient.from_metadata(pki_client(jwks_uri="https://keys.example/jwks"))


@pytest.mark.parametrize(("uri", "message"), [
    ("https://256.1.1.1/jwks", "jwks_uri is not a valid URL (Invalid IPv4 address: '256.1.1.1')"),
    ("https://[v1.x]/jwks", "jwks_uri is not a valid URL (Invalid IPv6 address: '[v1.x]')"),
])
def test_a_jwks_uri_the_fetcher_could_not_parse_is_refused(uri: str, message: str) -> None:
    # Found by tests/fuzz/test_jwks_uri.py: urlsplit takes these, httpx (which fetches) does not.
    with pytest.raises(InvalidClientMetadata) as raised:
        RegisteredClient.from_metadata(uri_client(jwks_uri=uri))
    assert str(raised.value) == message
