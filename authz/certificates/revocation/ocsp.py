"""OCSP (RFC 6960): the request for one certificate, and the checks of the response.

A response is used only when its single response names the certificate asked about (serial,
issuer name and key hashes), it is signed by the issuer itself or by a responder the issuer
authorised (a certificate issued directly by it, with the OCSPSigning extended key usage, valid
now), its thisUpdate is not in the future and its nextUpdate not in the past. A nonce, when one
was sent and the response carries one, must be ours (responders that serve pre-signed answers
carry none, which is accepted: the answer is as fresh as its thisUpdate says).

``check_response`` runs on the revocation thread: it verifies signatures.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from authz.certificates.path import PathCA
from authz.certificates.revocation.crl import reason_code
from authz.certificates.revocation.unusable import RevocationDataUnusable

__all__ = ["OCSPAnswer", "OCSPUnusable", "build_request", "check_response"]

# An answer without nextUpdate (the responder says: newer data is always available) is kept
# this many seconds.
NO_NEXT_UPDATE_TTL = 300.0
# Clock skew allowed between this server and the responder (a thisUpdate in the future).
_SKEW = 300.0

Status = Literal["good", "revoked", "unknown"]


class OCSPUnusable(RevocationDataUnusable):
    """An OCSP response that is not used."""


@dataclass(frozen=True)
class OCSPAnswer:
    url: str
    status: Status
    this_update: float
    until: float  # nextUpdate, or NO_NEXT_UPDATE_TTL after the fetch without one
    reason: str | None = None
    reason_code: int | None = None


def build_request(certificate: x509.Certificate, issuer: PathCA, nonce: bytes | None) -> ocsp.OCSPRequest:
    # SHA-1 CertIDs: what every responder understands (RFC 5019 §2.1.1 requires them).
    builder = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer.certificate, hashes.SHA1())  # noqa: S303
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build()


def check_response(data: bytes, request: ocsp.OCSPRequest, issuer: PathCA, nonce: bytes | None, url: str,
                   now: datetime.datetime) -> OCSPAnswer:
    """The answer in ``data`` for the certificate of ``request``; ``OCSPUnusable``."""
    try:
        response = ocsp.load_der_ocsp_response(data)
    except ValueError as exc:
        raise OCSPUnusable("unparsable", f"not an OCSP response ({exc})") from None
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise OCSPUnusable("responder_error", f"response status {response.response_status.name.lower()}")
    try:
        single = _single_response(response, request, issuer)
        _check_signature(response, issuer, now)
        if nonce is not None:
            try:
                echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            except x509.ExtensionNotFound:
                echoed = None
            if echoed is not None and echoed != nonce:
                raise OCSPUnusable("nonce_mismatch", "the response carries another request's nonce")
        this_update = single.this_update_utc.timestamp()
        next_update = single.next_update_utc
        status = single.certificate_status
        revocation_reason = single.revocation_reason if status == ocsp.OCSPCertStatus.REVOKED else None
    except ValueError as exc:
        raise OCSPUnusable("unparsable", f"the response does not decode ({exc})") from None
    timestamp = now.timestamp()
    if this_update > timestamp + _SKEW:
        raise OCSPUnusable("not_yet_valid", f"thisUpdate {single.this_update_utc.isoformat()} is in the future")
    if next_update is not None and next_update.timestamp() < timestamp:
        raise OCSPUnusable("stale", f"nextUpdate {next_update.isoformat()} has passed")
    until = next_update.timestamp() if next_update is not None else timestamp + NO_NEXT_UPDATE_TTL
    if status == ocsp.OCSPCertStatus.GOOD:
        return OCSPAnswer(url, "good", this_update, until)
    if status == ocsp.OCSPCertStatus.REVOKED:
        return OCSPAnswer(url, "revoked", this_update, until, revocation_reason.name if revocation_reason else None,
                          reason_code(revocation_reason))
    return OCSPAnswer(url, "unknown", this_update, until)


def _single_response(response: ocsp.OCSPResponse, request: ocsp.OCSPRequest,
                     issuer: PathCA) -> ocsp.OCSPSingleResponse:
    for single in response.responses:
        if single.serial_number != request.serial_number:
            continue
        algorithm = single.hash_algorithm
        if isinstance(algorithm, hashes.SHA1):
            name_hash, key_hash = request.issuer_name_hash, request.issuer_key_hash
        else:
            name_hash = _digest(algorithm, issuer.subject.public_bytes())
            key_hash = _digest(algorithm, _key_bits(issuer.certificate))
        if single.issuer_name_hash == name_hash and single.issuer_key_hash == key_hash:
            return single
    raise OCSPUnusable("wrong_certificate", "the response has no status for the certificate asked about")


def _check_signature(response: ocsp.OCSPResponse, issuer: PathCA, now: datetime.datetime) -> None:
    signer = _signer(response, issuer)
    if signer is not issuer.certificate:
        # A delegated responder: issued by the CA itself for this purpose (RFC 6960 §4.2.2.2).
        try:
            signer.verify_directly_issued_by(issuer.certificate)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            raise OCSPUnusable("unauthorised_responder", "the responder certificate was not issued by the "
                                                         "certificate's issuer") from None
        try:
            usage = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (x509.ExtensionNotFound, ValueError):
            usage = None
        if usage is None or ExtendedKeyUsageOID.OCSP_SIGNING not in usage:
            raise OCSPUnusable("unauthorised_responder", "the responder certificate lacks the OCSPSigning "
                                                         "extended key usage")
        if not signer.not_valid_before_utc <= now <= signer.not_valid_after_utc:
            raise OCSPUnusable("unauthorised_responder", "the responder certificate is not valid now")
    if not _verifies(signer, response):
        raise OCSPUnusable("bad_signature", "the response's signature does not verify")


def _signer(response: ocsp.OCSPResponse, issuer: PathCA) -> x509.Certificate:
    """The certificate the response says signed it: the issuer, or one the response carries."""
    candidates = [issuer.certificate, *response.certificates]
    key_hash = response.responder_key_hash
    for candidate in candidates:
        if key_hash is not None:
            if hashlib.sha1(_key_bits(candidate)).digest() == key_hash:  # noqa: S324 (RFC 6960 KeyHash)
                return candidate
        elif response.responder_name == candidate.subject:
            return candidate
    raise OCSPUnusable("unauthorised_responder", "the responder is neither the issuer nor a certificate "
                                                 "the response carries")


def _verifies(signer: x509.Certificate, response: ocsp.OCSPResponse) -> bool:
    key = signer.public_key()
    algorithm = response.signature_hash_algorithm
    data, signature = response.tbs_response_bytes, response.signature
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            # PKCS #1 v1.5 only: cryptography does not expose an OCSP response's PSS parameters.
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    digest = hashes.Hash(algorithm)
    digest.update(data)
    return digest.finalize()


def _key_bits(certificate: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING's bytes (what OCSP's key hashes are computed over)."""
    spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    # SEQUENCE { AlgorithmIdentifier SEQUENCE, BIT STRING }: skip both headers and the algorithm.
    offset = _header_end(spki, 0)
    algorithm_end = _header_end(spki, offset)
    algorithm_end += _length(spki, offset)
    bits_start = _header_end(spki, algorithm_end)
    return spki[bits_start + 1:]  # after the count of unused bits (0 for keys)


def _header_end(der: bytes, offset: int) -> int:
    first = der[offset + 1]
    return offset + 2 + (first & 0x7F if first & 0x80 else 0)


def _length(der: bytes, offset: int) -> int:
    first = der[offset + 1]
    if not first & 0x80:
        return first
    return int.from_bytes(der[offset + 2:offset + 2 + (first & 0x7F)], "big")
