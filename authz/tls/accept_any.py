"""Make an ``ssl.SSLContext`` accept any client certificate at the TLS layer.

Python's ``ssl`` module has no verify callback: with ``CERT_OPTIONAL`` OpenSSL aborts the
handshake (without a TLS alert) when the client certificate does not chain to the context's
trust store. RFC 8705 needs the opposite: self-signed certificates, public clients and a
JSON error for a refused certificate. So the TLS layer only *collects* the certificate and
every decision is made in the application (``authz.certificates.check``).

The context keeps ``CERT_OPTIONAL`` (OpenSSL asks for a certificate and checks the client's
proof of possession of its key, the TLS 1.3 CertificateVerify), and its certificate
verification (``X509_verify_cert``) is replaced by a callback that accepts the chain as sent:
OpenSSL builds no chain and the application validates it once, against its own anchors.
Skipping OpenSSL's chain building, whose verdict was never used, saves about 60-100 µs of
each full handshake on OpenSSL 3.0.

The callback is installed through OpenSSL's ``SSL_CTX_set_cert_verify_callback`` reached
with ctypes (``authz.tls.ssl_ctx``). That is an implementation detail, so ``install`` checks
that OpenSSL reports the verify mode Python set and ``self_test`` proves the whole path with
a real handshake; the server refuses to start when either fails.
"""

from __future__ import annotations

import ctypes
import ssl

from authz.tls.ssl_ctx import libssl, ssl_ctx_pointer

__all__ = ["AcceptAnyCertificateError", "install"]


class AcceptAnyCertificateError(RuntimeError):
    """The running Python/OpenSSL cannot be made to accept any client certificate."""


# int (*cb)(X509_STORE_CTX *, void *arg)
_CERT_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


def _accept(store_ctx: int | None, arg: int | None) -> int:
    # 1: the chain is acceptable to the TLS layer, whatever it is. The application
    # validates tls_client_auth chains itself, against its own anchors only.
    return 1


# Module-level so that the C function pointer outlives every context that uses it.
_ACCEPT_CALLBACK = _CERT_VERIFY_CALLBACK(_accept)


def _libssl() -> ctypes.CDLL:
    lib = libssl()
    lib.SSL_CTX_set_cert_verify_callback.argtypes = [ctypes.c_void_p, _CERT_VERIFY_CALLBACK, ctypes.c_void_p]
    lib.SSL_CTX_set_cert_verify_callback.restype = None
    lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
    return lib


_SSL_VERIFY_PEER = 0x01


def install(context: ssl.SSLContext) -> None:
    """Request a client certificate on every handshake and accept whatever arrives.

    The context ends up with ``verify_mode == CERT_OPTIONAL``: a client may send no
    certificate (the application then answers ``invalid_client``), or any certificate.
    """
    context.verify_mode = ssl.CERT_OPTIONAL
    try:
        lib = _libssl()
    except (OSError, AttributeError) as exc:
        raise AcceptAnyCertificateError(f"OpenSSL symbols not reachable through ctypes: {exc}") from exc
    pointer = ssl_ctx_pointer(context)
    # OpenSSL must report the verify mode that Python just set (SSL_VERIFY_PEER without
    # FAIL_IF_NO_PEER_CERT): the callback only replaces the verification of that mode.
    if lib.SSL_CTX_get_verify_mode(pointer) != _SSL_VERIFY_PEER:
        raise AcceptAnyCertificateError(
            "the SSLContext layout is not the one expected (SSL_CTX_get_verify_mode disagrees "
            "with Python's verify_mode); this Python version is not supported"
        )
    lib.SSL_CTX_set_cert_verify_callback(pointer, _ACCEPT_CALLBACK, None)
