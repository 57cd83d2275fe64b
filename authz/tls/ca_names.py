"""The CA names a server context advertises in its CertificateRequest
(``--advertise-ca-names``): the subjects of the trust anchors, or nothing (the default).

A client holding several certificates may use the list to pick the one a server will accept
(Go's ``crypto/tls`` with ``tls.Config.Certificates``, Java's key managers, browsers). The same
clients send *no* certificate when none of theirs was issued by a listed CA, which is why the
list is off by default: a ``self_signed_tls_client_auth`` client's certificate is issued by
no anchor, so with names advertised such a Go client sends nothing and gets
``invalid_client``.

Python's ``ssl`` has no call for this (its trust store is never advertised), so the list is
set on the ``SSL_CTX`` through ctypes (``authz.tls.ssl_ctx``): ``SSL_CTX_set_client_CA_list``
with a ``STACK_OF(X509_NAME)`` decoded from each anchor's DER subject. Only the *names* go to
OpenSSL, never the certificates: the context keeps no trust store, and the application
validates chains against its anchors itself (``authz.tls.accept_any``).

Every call's result is checked and a failure is ``CANamesError``; what was allocated is freed
on failure. ``received_ca_names`` reads, on the client side of a handshake, the names a server
sent: the start-up self-test (``authz.tls.self_test``) uses it to prove the list goes out.
"""

from __future__ import annotations

import ctypes
import functools
import ssl
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509

from authz.tls.ssl_ctx import OpenSSLAccessError, libssl, ssl_ctx_pointer

__all__ = ["CANamesError", "advertise_ca_names", "advertised_ca_names", "distinct_subjects", "read_ca_names",
           "received_ca_names"]


class CANamesError(RuntimeError):
    """OpenSSL could not be given (or asked for) the CA names; the message says which step."""


@functools.cache
def _lib() -> ctypes.CDLL:
    """libssl (and, through its handle, libcrypto) with the prototypes used here declared."""
    try:
        lib = libssl()
        void_p, c_int = ctypes.c_void_p, ctypes.c_int
        # X509_NAME *d2i_X509_NAME(X509_NAME **a, const unsigned char **pp, long length)
        lib.d2i_X509_NAME.argtypes = [void_p, ctypes.POINTER(void_p), ctypes.c_long]
        lib.d2i_X509_NAME.restype = void_p
        # int i2d_X509_NAME(const X509_NAME *a, unsigned char **pp)
        lib.i2d_X509_NAME.argtypes = [void_p, ctypes.POINTER(void_p)]
        lib.i2d_X509_NAME.restype = c_int
        lib.X509_NAME_free.argtypes = [void_p]
        lib.X509_NAME_free.restype = None
        # The OPENSSL_sk_* functions behind OpenSSL 3's sk_X509_NAME_* macros.
        lib.OPENSSL_sk_new_null.argtypes = []
        lib.OPENSSL_sk_new_null.restype = void_p
        lib.OPENSSL_sk_push.argtypes = [void_p, void_p]
        lib.OPENSSL_sk_push.restype = c_int
        lib.OPENSSL_sk_num.argtypes = [void_p]
        lib.OPENSSL_sk_num.restype = c_int
        lib.OPENSSL_sk_value.argtypes = [void_p, c_int]
        lib.OPENSSL_sk_value.restype = void_p
        # void OPENSSL_sk_pop_free(OPENSSL_STACK *st, void (*func)(void *)): X509_NAME_free's address.
        lib.OPENSSL_sk_pop_free.argtypes = [void_p, void_p]
        lib.OPENSSL_sk_pop_free.restype = None
        # void SSL_CTX_set_client_CA_list(SSL_CTX *ctx, STACK_OF(X509_NAME) *list): takes
        # ownership of the list and frees the one it replaces.
        lib.SSL_CTX_set_client_CA_list.argtypes = [void_p, void_p]
        lib.SSL_CTX_set_client_CA_list.restype = None
        lib.SSL_CTX_get_client_CA_list.argtypes = [void_p]
        lib.SSL_CTX_get_client_CA_list.restype = void_p
        # const STACK_OF(X509_NAME) *SSL_get0_peer_CA_list(const SSL *s): on a client, the
        # names of the server's CertificateRequest (OpenSSL 1.1.1 and later).
        lib.SSL_get0_peer_CA_list.argtypes = [void_p]
        lib.SSL_get0_peer_CA_list.restype = void_p
        lib.SSL_get_SSL_CTX.argtypes = [void_p]
        lib.SSL_get_SSL_CTX.restype = void_p
    except (OSError, AttributeError, OpenSSLAccessError) as exc:
        raise CANamesError(f"OpenSSL's CA-name functions are not reachable through ctypes: {exc}") from exc
    return lib


def distinct_subjects(certificates: Iterable[x509.Certificate]) -> list[x509.Name]:
    """The certificates' subjects in order, each once: a CA renewed under the same name (two
    anchors during a rollover) is one name on the wire."""
    seen: set[bytes] = set()
    names: list[x509.Name] = []
    for certificate in certificates:
        der = certificate.subject.public_bytes()
        if der not in seen:
            seen.add(der)
            names.append(certificate.subject)
    return names


def read_ca_names(files: Sequence[Path]) -> list[x509.Name]:
    """The distinct subjects of the certificates in these PEM files (the trust anchors);
    ``CANamesError`` naming a file that cannot be read or holds no PEM certificate."""
    certificates: list[x509.Certificate] = []
    for file in files:
        try:
            certificates.extend(x509.load_pem_x509_certificates(file.read_bytes()))
        except OSError as exc:
            raise CANamesError(f"cannot read {file}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise CANamesError(f"{file} holds no PEM certificate ({exc})") from exc
    return distinct_subjects(certificates)


def advertise_ca_names(context: ssl.SSLContext, names: Sequence[x509.Name]) -> None:
    """Make ``context`` send exactly ``names`` (in this order) as the acceptable CA names of its
    CertificateRequest; an empty sequence sends none, as a context without the call does.

    Set it on a context before it serves: the list is read at each handshake, on the thread
    running it (a reload builds a new context instead, ``authz.tls.credentials``)."""
    lib = _lib()
    pointer = ssl_ctx_pointer(context)
    stack = lib.OPENSSL_sk_new_null()
    if not stack:
        raise CANamesError("OpenSSL could not allocate the list of CA names (OPENSSL_sk_new_null)")
    try:
        for name in names:
            _push_name(lib, stack, name)
    except BaseException:
        lib.OPENSSL_sk_pop_free(stack, ctypes.cast(lib.X509_NAME_free, ctypes.c_void_p))
        raise
    lib.SSL_CTX_set_client_CA_list(pointer, stack)  # owns the stack and its names from here
    if _ders(advertised_ca_names(context)) != _ders(names):
        raise CANamesError("OpenSSL does not report the CA names it was given (SSL_CTX_get_client_CA_list)")


def _ders(names: Iterable[x509.Name]) -> list[bytes]:
    # Compared as DER: Name equality ignores how a value is encoded, and clients compare bytes.
    return [name.public_bytes() for name in names]


def _push_name(lib: ctypes.CDLL, stack: int, name: x509.Name) -> None:
    der = name.public_bytes()
    buffer = ctypes.create_string_buffer(der, len(der))
    cursor = ctypes.c_void_p(ctypes.addressof(buffer))
    decoded = lib.d2i_X509_NAME(None, ctypes.byref(cursor), len(der))
    # d2i moves the cursor past what it decoded: all of it, or the name was not one DER Name.
    if not decoded or cursor.value != ctypes.addressof(buffer) + len(der):
        if decoded:
            lib.X509_NAME_free(decoded)
        raise CANamesError(f"OpenSSL could not decode the CA name {name.rfc4514_string()!r} (d2i_X509_NAME)")
    if lib.OPENSSL_sk_push(stack, decoded) <= 0:
        lib.X509_NAME_free(decoded)
        raise CANamesError("OpenSSL could not add a CA name to the list (OPENSSL_sk_push)")


def advertised_ca_names(context: ssl.SSLContext) -> list[x509.Name]:
    """The CA names ``context`` sends in its CertificateRequest (empty: none)."""
    lib = _lib()
    return _names_of(lib, lib.SSL_CTX_get_client_CA_list(ssl_ctx_pointer(context)))


def received_ca_names(client: ssl.SSLObject) -> list[x509.Name]:
    """On the client side of a completed handshake, the CA names the server's
    CertificateRequest carried (empty: none, or no CertificateRequest).

    The ``SSL*`` of an ``SSLObject`` sits in CPython's ``PySSLSocket`` right after the
    object header and the socket weak reference, followed by the ``PySSLContext*`` (CPython
    3.10-3.13). It is used only when that next field is this object's own context and OpenSSL
    confirms the ``SSL*`` belongs to its ``SSL_CTX``; otherwise ``CANamesError``.
    """
    lib = _lib()
    inner = getattr(client, "_sslobj", None)
    if inner is None:
        raise CANamesError("this ssl.SSLObject has no _sslobj; this Python version is not supported")
    word = ctypes.sizeof(ctypes.c_void_p)
    fields = id(inner) + object.__basicsize__
    ssl_pointer = ctypes.c_void_p.from_address(fields + word).value
    context_object = ctypes.c_void_p.from_address(fields + 2 * word).value
    if (not ssl_pointer or context_object != id(client.context)
            or lib.SSL_get_SSL_CTX(ssl_pointer) != ssl_ctx_pointer(client.context)):
        raise CANamesError("the SSLObject layout is not the one expected (its SSL* is not its context's); this "
                           "Python version is not supported")
    return _names_of(lib, lib.SSL_get0_peer_CA_list(ssl_pointer))


def _names_of(lib: ctypes.CDLL, stack: int | None) -> list[x509.Name]:
    if not stack:
        return []
    count = lib.OPENSSL_sk_num(stack)
    if count < 0:
        raise CANamesError("OpenSSL could not count the CA names (OPENSSL_sk_num)")
    return [_encoded(lib, lib.OPENSSL_sk_value(stack, index)) for index in range(count)]


def _encoded(lib: ctypes.CDLL, name: int | None) -> x509.Name:
    if not name:
        raise CANamesError("OpenSSL's list of CA names has an empty entry (OPENSSL_sk_value)")
    length = lib.i2d_X509_NAME(name, None)
    if length <= 0:
        raise CANamesError("OpenSSL could not encode a CA name (i2d_X509_NAME)")
    buffer = ctypes.create_string_buffer(length)
    cursor = ctypes.c_void_p(ctypes.addressof(buffer))
    if lib.i2d_X509_NAME(name, ctypes.byref(cursor)) != length:
        raise CANamesError("OpenSSL could not encode a CA name (i2d_X509_NAME)")
    try:
        return x509.Name.from_bytes(buffer.raw)
    except ValueError as exc:
        raise CANamesError(f"OpenSSL returned a CA name that is not a DER Name ({exc})") from exc
