"""What a client may present before anything about it is known: bounds on the certificates
that reach parsing and path validation.

Everything here runs before authentication, on bytes an anonymous client chose, so each check
is cheap and comes before the work it protects: the size and count of the chain before any
parse, the key of a certificate before a signature is verified with it. Ordinary client
chains are one to three certificates of 1-2 KiB; TLS lets a client send about 100 KiB.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

__all__ = [
    "ACCEPTED_KEYS",
    "MAX_CHAIN_BYTES",
    "MAX_CHAIN_CERTIFICATES",
    "chain_size_problem",
    "public_key_problem",
]

# The leaf and up to 8 intermediates, the most path building follows (authz.certificates.chain).
MAX_CHAIN_CERTIFICATES = 9
# A leaf with a few hundred SANs is about 16 KiB; the rest of a chain a few KiB.
MAX_CHAIN_BYTES = 32 * 1024

# Signature keys whose verification costs at most about a millisecond: RSA above 8192 bits
# costs several (and a hostile chain makes the validator check many signatures); DSA, SHA-1 era
# keys and unusual curves are refused by path validation anyway.
_RSA_BITS = (2048, 8192)
_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
ACCEPTED_KEYS = "RSA 2048-8192 bits, ECDSA P-256, P-384 or P-521, Ed25519, Ed448"


def chain_size_problem(chain_sizes: list[int]) -> str | None:
    """Why a chain of certificates of these DER sizes is refused unparsed, or None."""
    if len(chain_sizes) > MAX_CHAIN_CERTIFICATES:
        return f"{len(chain_sizes)} certificates sent (limit {MAX_CHAIN_CERTIFICATES})"
    total = sum(chain_sizes)
    if total > MAX_CHAIN_BYTES:
        return f"{total} bytes of certificates sent (limit {MAX_CHAIN_BYTES})"
    return None


def public_key_problem(certificate: x509.Certificate) -> str | None:
    """Why the public key of ``certificate`` is refused, or None. Raises ``ValueError`` when
    the key cannot be decoded."""
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if not _RSA_BITS[0] <= key.key_size <= _RSA_BITS[1]:
            return f"RSA key of {key.key_size} bits"
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return None if isinstance(key.curve, _CURVES) else f"EC key on curve {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return None
    return f"{type(key).__name__.removeprefix('_').removesuffix('PublicKey')} key"
