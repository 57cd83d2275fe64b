"""The server's TLS profile: protocol versions, key-exchange groups, cipher suites, signature
algorithms and session resumption, with the reason for each.

It is Mozilla's "intermediate" profile without finite-field Diffie-Hellman, plus no
resumption. Python's ``ssl`` sets the versions and TLS 1.2 suites; the groups, the signature
algorithms and the session cache are set on the ``SSL_CTX`` through ctypes
(``authz.tls.ssl_ctx``), every call's result checked. The start-up self-test
(``authz.tls.self_test``) proves with in-memory handshakes that each setting took effect.
"""

from __future__ import annotations

import ssl

from authz.tls.ssl_ctx import ctx_ctrl

__all__ = [
    "GROUPS",
    "SIGNATURE_ALGORITHMS",
    "TLS12_CIPHERS",
    "TLSProfileError",
    "apply",
    "set_client_signature_algorithms",
    "set_groups",
]

# Key exchange: elliptic curves only. With a finite-field group (ffdhe2048-8192, RFC 7919) a
# client that sends a constant key share, which costs it nothing, makes the server do large
# modular exponentiations for every ClientHello (the DHEat attack; issue 9 measured about
# 245 ms of server CPU per ffdhe8192 hello). An ECDH operation costs 0.03 ms with X25519,
# 0.05 ms with P-256 and 0.6 ms with P-384 (OpenSSL 3.0, ``openssl speed``), and every
# current client offers one of these three. P-521 and X448 are left out as in Mozilla's
# profile: no client needs them.
GROUPS = ("X25519", "P-256", "P-384")

# TLS 1.2: ECDHE with an AEAD only (Mozilla intermediate without its DHE suites). CBC suites
# (for example ECDHE-ECDSA-AES128-SHA256) are open to padding-oracle timing attacks such as
# LUCKY13. DHE suites would be finite-field DH again (above): Python loads no DH parameters,
# so OpenSSL could not choose them anyway, but they are not even listed. RSA and ECDSA server
# keys both work.
# TLS 1.3 keeps OpenSSL's suites (AES-GCM, ChaCha20-Poly1305): all of them are AEAD.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)

# Signatures the server makes and accepts in the handshake, and requests from clients for
# their CertificateVerify (the proof that the client holds its certificate's key; the
# certificates' own signatures are checked by the application). What real clients use:
# ECDSA with SHA-256/384/512, Ed25519/Ed448, RSA-PSS and RSA PKCS#1 v1.5 with SHA-256/384/512.
# OpenSSL's default list also offers SHA-224 and DSA (and SHA-1 in TLS 1.2): weak or
# obsolete, and no client needs them.
SIGNATURE_ALGORITHMS = (
    "ecdsa_secp256r1_sha256",  # in TLS 1.2: ECDSA+SHA256 on any curve
    "ecdsa_secp384r1_sha384",
    "ecdsa_secp521r1_sha512",
    "ed25519",
    "ed448",
    "rsa_pss_rsae_sha256",
    "rsa_pss_rsae_sha384",
    "rsa_pss_rsae_sha512",
    "rsa_pss_pss_sha256",
    "rsa_pss_pss_sha384",
    "rsa_pss_pss_sha512",
    "rsa_pkcs1_sha256",
    "rsa_pkcs1_sha384",
    "rsa_pkcs1_sha512",
)

# ssl.h: the macros SSL_CTX_set1_groups_list, SSL_CTX_set1_sigalgs_list,
# SSL_CTX_set1_client_sigalgs_list and SSL_CTX_{set,get}_session_cache_mode are SSL_CTX_ctrl
# calls with these commands.
_SSL_CTRL_SET_SESS_CACHE_MODE = 44
_SSL_CTRL_GET_SESS_CACHE_MODE = 45
_SSL_CTRL_SET_GROUPS_LIST = 92
_SSL_CTRL_SET_SIGALGS_LIST = 98
_SSL_CTRL_SET_CLIENT_SIGALGS_LIST = 102
_SSL_SESS_CACHE_OFF = 0


class TLSProfileError(RuntimeError):
    """OpenSSL refused a setting of the TLS profile; the message names it."""


def _set_list(context: ssl.SSLContext, command: int, what: str, names: tuple[str, ...]) -> None:
    joined = ":".join(names)
    if ctx_ctrl(context, command, 0, joined.encode("ascii")) != 1:
        raise TLSProfileError(f"OpenSSL refused the {what} {joined!r}")


def set_groups(context: ssl.SSLContext, groups: tuple[str, ...]) -> None:
    """Offer (client) or accept (server) exactly ``groups`` for the key exchange, in this
    order of preference; ``SSL_CTX_set1_groups_list``."""
    _set_list(context, _SSL_CTRL_SET_GROUPS_LIST, "key-exchange groups", groups)


def set_client_signature_algorithms(context: ssl.SSLContext, algorithms: tuple[str, ...]) -> None:
    """Request (server) or be willing to make (client) exactly these signatures for client
    certificates; ``SSL_CTX_set1_client_sigalgs_list``."""
    _set_list(context, _SSL_CTRL_SET_CLIENT_SIGALGS_LIST, "client signature algorithms", algorithms)


ALPN_PROTOCOLS = ["http/1.1"]


def apply(context: ssl.SSLContext) -> None:
    """Give a server context the profile; raise ``TLSProfileError`` if OpenSSL refuses a part."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.set_ciphers(":".join(TLS12_CIPHERS))
    except ssl.SSLError as exc:
        raise TLSProfileError(f"OpenSSL refused the TLS 1.2 cipher suites ({exc})") from exc
    set_groups(context, GROUPS)
    _set_list(context, _SSL_CTRL_SET_SIGALGS_LIST, "signature algorithms", SIGNATURE_ALGORITHMS)
    set_client_signature_algorithms(context, SIGNATURE_ALGORITHMS)
    _disable_resumption(context)
    # ALPN: the one protocol the HTTP layer speaks (httptools, HTTP/1.1). Clients that offer
    # h2 and http/1.1 (curl, Go, Node) then agree on HTTP/1.1 explicitly; a client offering
    # only h2 gets no ALPN answer and may still speak HTTP/1.1 or give up, as it chooses.
    context.set_alpn_protocols(ALPN_PROTOCOLS)


def _disable_resumption(context: ssl.SSLContext) -> None:
    # No session resumption. A resumed session only remembers the client's leaf, so its
    # intermediates would be lost for tls_client_auth validation. And OpenSSL's server-side
    # session cache (on by default: 20,480 sessions for 2 hours) keeps every client's whole
    # chain in memory: 2,000 TLS 1.2 handshakes with a 96 KB client chain held 388 MB. If
    # resumption is ever offered, bound that cache (SSL_CTX_sess_set_cache_size, timeout)
    # and what each session may hold first.
    context.options |= ssl.OP_NO_TICKET  # TLS 1.2 session tickets
    context.num_tickets = 0  # TLS 1.3 tickets
    ctx_ctrl(context, _SSL_CTRL_SET_SESS_CACHE_MODE, _SSL_SESS_CACHE_OFF)  # TLS 1.2 session IDs
    # SSL_CTX_set_session_cache_mode returns the previous mode: read the new one back.
    if ctx_ctrl(context, _SSL_CTRL_GET_SESS_CACHE_MODE) != _SSL_SESS_CACHE_OFF:
        raise TLSProfileError("OpenSSL did not turn its server-side session cache off")
