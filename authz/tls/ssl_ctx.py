"""Reach the OpenSSL ``SSL_CTX`` behind an ``ssl.SSLContext`` through ctypes, for the settings
Python's ``ssl`` module has no call for (the certificate verify callback, the key-exchange
groups, the signature algorithms, the session cache).

The ``SSL_CTX*`` sits right after the object header of CPython's ``PySSLContext`` (stable in
CPython 3.10-3.13). That is an implementation detail, so ``ssl_ctx_pointer`` checks the
pointer against the options Python reports (``SSL_CTX_get_options``) before anyone writes
through it, and the start-up self-test (``authz.tls.self_test``) proves every setting with
real handshakes; the server refuses to start when either fails.
"""

from __future__ import annotations

import _ssl
import ctypes
import functools
import ssl

__all__ = ["OpenSSLAccessError", "ctx_ctrl", "libssl", "ssl_ctx_pointer"]


class OpenSSLAccessError(RuntimeError):
    """The running Python/OpenSSL does not let this process reach its ``SSL_CTX``."""


@functools.cache
def libssl() -> ctypes.CDLL:
    """The libssl that Python's ``_ssl`` uses (symbols looked up through the extension's own
    handle, so never another libssl on the system); callers declare the extra functions
    they use on it."""
    try:
        lib = ctypes.CDLL(_ssl.__file__)
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        # long SSL_CTX_ctrl(SSL_CTX *ctx, int cmd, long larg, void *parg): what the
        # SSL_CTX_set1_groups_list, SSL_CTX_set1_sigalgs_list, SSL_CTX_set_session_cache_mode
        # ... macros of ssl.h expand to.
        lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
    except (OSError, AttributeError) as exc:
        raise OpenSSLAccessError(f"OpenSSL symbols not reachable through ctypes: {exc}") from exc
    return lib


def ssl_ctx_pointer(context: ssl.SSLContext) -> int:
    """The ``SSL_CTX*`` of ``context``, checked before use."""
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    # Python reads ``options`` with SSL_CTX_get_options from its own pointer: the same
    # (distinctive, 64-bit) value read through ours shows both point at one SSL_CTX.
    if not pointer or libssl().SSL_CTX_get_options(pointer) != int(context.options):
        raise OpenSSLAccessError(
            "the SSLContext layout is not the one expected (SSL_CTX_get_options disagrees with "
            "Python's options); this Python version is not supported"
        )
    return pointer


def ctx_ctrl(context: ssl.SSLContext, command: int, larg: int = 0, parg: bytes | None = None) -> int:
    """``SSL_CTX_ctrl(ctx, command, larg, parg)`` on the ``SSL_CTX`` of ``context``."""
    return int(libssl().SSL_CTX_ctrl(ssl_ctx_pointer(context), command, larg, parg))
