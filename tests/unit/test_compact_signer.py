"""The hot-path ES256 signer produces tokens that joserfc verifies, and only those."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import ECKey

from authz.tokens.compact_signer import ES256CompactSigner


def test_tokens_verify_with_joserfc_and_keep_header_and_claims() -> None:
    key = ECKey.generate_key("P-256", private=True)
    signer = ES256CompactSigner(key.private_key, {"alg": "ES256", "typ": "at+jwt", "kid": "k1"})
    claims = {"iss": "https://as.example", "sub": "c", "cnf": {"x5t#S256": "abc"}, "scope": "a b", "name": "é"}
    for _ in range(50):  # DER signatures vary in length: the r||s conversion must pad every time
        token = jwt.decode(signer.sign(claims), key, algorithms=["ES256"])
        assert token.header == {"alg": "ES256", "typ": "at+jwt", "kid": "k1"}
        assert token.claims == claims


def test_a_token_from_another_key_does_not_verify() -> None:
    signer = ES256CompactSigner(ec.generate_private_key(ec.SECP256R1()), {"alg": "ES256", "kid": "k"})
    with pytest.raises(BadSignatureError):
        jwt.decode(signer.sign({"sub": "x"}), ECKey.generate_key("P-256", private=True), algorithms=["ES256"])


def test_refuses_keys_and_headers_it_cannot_sign_for() -> None:
    with pytest.raises(ValueError, match="P-256"):
        ES256CompactSigner(ec.generate_private_key(ec.SECP384R1()), {"alg": "ES256"})
    with pytest.raises(ValueError, match="ES256"):
        ES256CompactSigner(ec.generate_private_key(ec.SECP256R1()), {"alg": "ES384"})
