"""TLS session resumption with stateless session tickets (``--tls-resumption tickets``), off by
default.

A resumed handshake skips the certificate exchange and its signatures: the client proves it
holds the session's secret instead. It must not skip the application's decision: a resumed
session carries the client's certificate (the leaf, inside the ticket), the connection's
ASGI TLS extension reports it as on a full handshake, and ``check_client_certificate`` checks
it on every request, whatever happened to the client since the ticket was issued (revoked,
removed, registration changed).

How, and why this way:

- **Stateless tickets only.** The ticket is the session, encrypted and authenticated with a
  key only this process holds; the server keeps nothing per session. OpenSSL's server-side
  session cache stays off (``tls_profile``): it held 388 MB for 2,000 TLS 1.2 handshakes with
  96 KB chains, because each cached session keeps the whole chain the client sent.
- **One ticket per full handshake, none on a resumed one.** OpenSSL sends two per TLS 1.3
  handshake by default, and a new one on every resumption. Clients keep the latest ticket of a
  server (Python's ``session``, Go's session cache, curl), so a second one is work and bytes for
  nothing; and on OpenSSL 3.0 issuing a ticket that holds a client certificate costs about
  170 µs of CPU (it encodes the session, decodes it again, certificate and public key included,
  and encodes the copy), against about 400 µs for a whole full TLS 1.3 handshake and about
  300 µs for a resumed one (in memory, measured here). So a client resumes with the same ticket
  until the key rotates. RFC 8446 (appendix C.4) advises clients not to reuse a ticket: a
  passive observer can link the connections that present it. Here that is a client that
  authenticates with a certificate from a known address anyway; the price of the alternative
  would be most of what resumption saves. A TLS 1.3 resumption still makes an ECDHE exchange: OpenSSL
  refuses the PSK-only mode (``SSL_OP_ALLOW_NO_DHE_KEX`` is not set), so recorded traffic stays
  confidential even to whoever obtains a ticket key. No early data (0-RTT): it is off in
  OpenSSL unless asked for, and replayable.
- **Rotating ticket keys.** OpenSSL makes one random key per ``SSL_CTX`` and keeps it for the
  context's life. ``TicketKeyRotation`` replaces it every ``ticket_key_rotation`` seconds
  (``SSL_CTX_set_tlsext_ticket_keys``) on the event loop that serves the context, where the
  handshakes run, so a rotation never races a handshake. The old key is overwritten, not kept:
  a ticket issued under it no longer decrypts, and its client gets a full handshake (never a
  failure). Tickets are given that lifetime (``SSL_CTX_set_timeout``), so a client never holds
  one meant to outlive its key. The price of one key at a time: a client whose ticket predates
  the last rotation makes one full handshake. Whoever obtains a ticket key can decrypt the
  tickets issued under it (the session secret and the client's certificate) and forge tickets
  for any certificate, so the key lives only in this process's memory, is never written
  anywhere, and is erased by the next rotation: at most one period of tickets is exposed.
- **The intermediates a client sent.** A ticket holds the client's leaf, not the intermediate
  CA certificates it sent in the full handshake; on a resumed connection ``tls_client_auth``
  paths are built from the leaf and the configured intermediates (``--intermediate``) and
  anchors only. So every ticket records the SHA-256 of each certificate the client sent after
  its leaf (ticket application data, ``SSL_CTX_set_session_ticket_cb``), and a ticket is
  accepted only if each of those is configured (``configure_known_cas``) at the time of the
  resumption; otherwise the client gets a full handshake, sends its chain again, and is
  validated as before. A client that sends only its leaf, a self-signed client and a public
  client always resume. (Should a reload remove an intermediate between a resumption and a
  request, the request is refused with a reason naming the resumption:
  ``RejectionReason.RESUMED_WITHOUT_INTERMEDIATES``.)
- **Per process.** Each worker of ``--workers N`` and each instance has its own key: a ticket
  resumes only on the process that issued it, and elsewhere gets a full handshake.

Every ctypes call's result is checked; the start-up self-test (``authz.tls.self_test``) proves
with handshakes that TLS 1.2 and TLS 1.3 sessions resume with the client certificate visible,
that a ticket whose intermediates are unknown does not resume, and that a rotation retires the
previous tickets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import hashlib
import math
import os
import ssl
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import structlog

from authz.certificates.limits import MAX_CHAIN_CERTIFICATES
from authz.tls.ssl_ctx import OpenSSLAccessError, ctx_ctrl, libssl, ssl_ctx_pointer

__all__ = [
    "DEFAULT_TICKET_KEY_ROTATION",
    "TICKETS_PER_HANDSHAKE",
    "ResumptionConfig",
    "ResumptionError",
    "ResumptionMode",
    "TicketKeyRotation",
    "configure_known_cas",
    "declines_unlogged",
    "enable_tickets",
    "resumption_of",
    "rotate_ticket_key",
]

log = structlog.get_logger("authz.tls")

ResumptionMode = Literal["off", "tickets"]
RESUMPTION_MODES: tuple[ResumptionMode, ...] = ("off", "tickets")

# An hour: a client that comes back within it (a token lasts 10 minutes by default) usually
# resumes, and at most an hour of tickets depends on one key.
DEFAULT_TICKET_KEY_ROTATION = 3600.0
MIN_TICKET_KEY_ROTATION = 1.0
MAX_TICKET_KEY_ROTATION = 86_400.0
TICKETS_PER_HANDSHAKE = 1


class ResumptionError(RuntimeError):
    """OpenSSL refused a part of the resumption set-up; the message names it."""


@dataclass(frozen=True)
class ResumptionConfig:
    mode: ResumptionMode = "off"
    ticket_key_rotation: float = DEFAULT_TICKET_KEY_ROTATION  # seconds; also the tickets' lifetime

    def __post_init__(self) -> None:
        if self.mode not in RESUMPTION_MODES:
            raise ValueError(f"TLS resumption mode must be one of {', '.join(RESUMPTION_MODES)}, not {self.mode!r}")
        if not MIN_TICKET_KEY_ROTATION <= self.ticket_key_rotation <= MAX_TICKET_KEY_ROTATION:
            raise ValueError(f"the ticket key rotation period must be {MIN_TICKET_KEY_ROTATION:g} to "
                             f"{MAX_TICKET_KEY_ROTATION:g} seconds, not {self.ticket_key_rotation:g}")

    @property
    def tickets(self) -> bool:
        return self.mode == "tickets"

    @property
    def ticket_lifetime(self) -> int:
        """Seconds a ticket is valid for: no longer than the key that encrypts it lives."""
        return max(1, math.floor(self.ticket_key_rotation))


# ssl.h / tls1.h (OpenSSL 3.0): SSL_CTX_set_tlsext_ticket_keys is SSL_CTX_ctrl with this
# command; with no buffer it returns the length the keys must have (16 bytes of key name, 32 of
# HMAC key, 32 of AES key).
_SSL_CTRL_SET_TLSEXT_TICKET_KEYS = 59
_TICKET_KEYS_LENGTH = 80
# SSL_TICKET_STATUS (what OpenSSL found in a ticket) and SSL_TICKET_RETURN (what to do with it).
_SSL_TICKET_EMPTY = 3
_SSL_TICKET_NO_DECRYPT = 4
_SSL_TICKET_SUCCESS = 5
_SSL_TICKET_SUCCESS_RENEW = 6
_SSL_TICKET_RETURN_IGNORE_RENEW = 2  # no resumption: a full handshake, and a new ticket
_SSL_TICKET_RETURN_USE = 3
_SSL_TICKET_RETURN_USE_RENEW = 4
_SHA256_LENGTH = 32

# int gen_cb(SSL *s, void *arg)
_GENERATE_TICKET_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
# SSL_TICKET_RETURN dec_cb(SSL *s, SSL_SESSION *ss, const unsigned char *keyname,
#                          size_t keyname_length, SSL_TICKET_STATUS status, void *arg)
_DECRYPT_TICKET_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                            ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p)


@functools.cache
def _libssl() -> ctypes.CDLL:
    lib = libssl()
    signatures: dict[str, tuple[list[object], object]] = {
        "SSL_CTX_set_session_ticket_cb": (
            [ctypes.c_void_p, _GENERATE_TICKET_CALLBACK, _DECRYPT_TICKET_CALLBACK, ctypes.c_void_p], ctypes.c_int),
        "SSL_CTX_set_timeout": ([ctypes.c_void_p, ctypes.c_long], ctypes.c_long),
        "SSL_CTX_get_timeout": ([ctypes.c_void_p], ctypes.c_long),
        "SSL_get_session": ([ctypes.c_void_p], ctypes.c_void_p),
        "SSL_session_reused": ([ctypes.c_void_p], ctypes.c_int),
        "SSL_set_num_tickets": ([ctypes.c_void_p, ctypes.c_size_t], ctypes.c_int),
        "SSL_get_peer_cert_chain": ([ctypes.c_void_p], ctypes.c_void_p),
        "SSL_SESSION_set1_ticket_appdata": ([ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t], ctypes.c_int),
        "SSL_SESSION_get0_ticket_appdata": (
            [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)], ctypes.c_int),
        # libcrypto's, found through the same handle (libssl depends on it)
        "OPENSSL_sk_num": ([ctypes.c_void_p], ctypes.c_int),
        "OPENSSL_sk_value": ([ctypes.c_void_p, ctypes.c_int], ctypes.c_void_p),
        "X509_digest": ([ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint)],
                        ctypes.c_int),
        "EVP_sha256": ([], ctypes.c_void_p),
        "RAND_bytes": ([ctypes.c_char_p, ctypes.c_int], ctypes.c_int),
    }
    for name, (argtypes, restype) in signatures.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = restype
    return lib


# --- which intermediates a resumed session may do without -------------------------------------

# SHA-256 of the DER of every configured trust anchor and intermediate (``configure_known_cas``,
# by the application's trust material, at start-up and at every reload). Replaced whole, read
# by the ticket callback: the handshakes of this process run on its event loop.
_known_cas: frozenset[bytes] = frozenset()
_declined_logged = False
# Hex SHA-256 of certificates whose declined tickets are not logged (the self-test's own).
_unlogged: set[str] = set()


def configure_known_cas(ders: Iterable[bytes]) -> None:
    """The CA certificates (DER) the server validates ``tls_client_auth`` chains with: a ticket
    resumes only if every certificate its client sent besides the leaf is one of them."""
    global _known_cas
    _known_cas = frozenset(hashlib.sha256(der).digest() for der in ders)


# The ticket's application data: a version byte, then the SHA-256 of each certificate the
# client sent after its leaf, in order. "Too many" marks a chain longer than the server accepts
# (it is refused anyway): such a ticket never resumes.
_APPDATA_VERSION = b"\x01"
_APPDATA_TOO_MANY = b"\x02"


def _sent_chain_appdata(lib: ctypes.CDLL, ssl_pointer: int | None) -> bytes:
    """What a new ticket records about the certificates the client sent in this handshake."""
    chain = lib.SSL_get_peer_cert_chain(ssl_pointer)  # server side: without the leaf
    count = lib.OPENSSL_sk_num(chain) if chain else 0
    if count < 0 or count >= MAX_CHAIN_CERTIFICATES:
        return _APPDATA_TOO_MANY
    digests = [_APPDATA_VERSION]
    digest = ctypes.create_string_buffer(_SHA256_LENGTH)
    length = ctypes.c_uint(0)
    sha256 = lib.EVP_sha256()
    for index in range(count):
        certificate = lib.OPENSSL_sk_value(chain, index)
        if not certificate or lib.X509_digest(certificate, sha256, digest, ctypes.byref(length)) != 1 \
                or length.value != _SHA256_LENGTH:
            return _APPDATA_TOO_MANY  # cannot tell: the ticket will not resume
        digests.append(digest.raw)
    return b"".join(digests)


def _generate_ticket(ssl_pointer: int | None, arg: int | None) -> int:
    # Called by OpenSSL for each ticket it is about to issue. Always 1: 0 would end the
    # connection with an internal_error alert. A ticket whose data could not be set carries
    # none, and the decryption callback does not resume it.
    try:
        lib = _libssl()
        session = lib.SSL_get_session(ssl_pointer)
        if not session:
            return 1
        if lib.SSL_session_reused(ssl_pointer):
            # A ticket issued on a resumed connection (the decryption callback asks for none, but
            # OpenSSL may renew one): the session, and with it the data of the ticket it came
            # from, is carried over; this connection's chain is the leaf alone and says nothing.
            return 1
        appdata = _sent_chain_appdata(lib, ssl_pointer)
        if lib.SSL_SESSION_set1_ticket_appdata(session, appdata, len(appdata)) != 1:
            # A ticket without its data is declined when offered (a full handshake): safe.
            log.error("tls_ticket_data_failed", error="SSL_SESSION_set1_ticket_appdata failed")
    except Exception as exc:  # never let a Python error cross into OpenSSL
        log.error("tls_ticket_data_failed", error=f"{type(exc).__name__}: {exc}")
    return 1


def _decrypt_ticket(ssl_pointer: int | None, session: int | None, key_name: int | None, key_name_length: int,
                    status: int, arg: int | None) -> int:
    # Called by OpenSSL once it tried to decrypt a ticket a client offered.
    if status not in (_SSL_TICKET_SUCCESS, _SSL_TICKET_SUCCESS_RENEW):
        # Empty, or not decryptable (issued before a rotation, or by another process): a full
        # handshake and a new ticket, as OpenSSL does without a callback.
        return _SSL_TICKET_RETURN_IGNORE_RENEW
    try:
        lib = _libssl()
        unknown = _unconfigured_cas(lib, session)
        if not unknown:
            # The client keeps the ticket it resumed with until the key rotates: TLS 1.3 would
            # issue a new one on every resumed connection, and on OpenSSL 3.0 a ticket that holds a
            # client certificate costs about 170 µs (it encodes the session, decodes it again,
            # certificate and key included, and encodes the copy), most of what resumption saves.
            # (Should OpenSSL still make a full handshake after this callback, for a TLS 1.3 client
            # that offers another hash than its ticket's suite, that handshake issues no ticket and
            # the client goes on with its old one: full handshakes until the key rotates, never a
            # refusal. Real clients keep their suites between connections.)
            if lib.SSL_set_num_tickets(ssl_pointer, 0) != 1:
                return _SSL_TICKET_RETURN_IGNORE_RENEW
            return _SSL_TICKET_RETURN_USE if status == _SSL_TICKET_SUCCESS else _SSL_TICKET_RETURN_USE_RENEW
    except Exception as exc:
        log.error("tls_ticket_data_failed", error=f"{type(exc).__name__}: {exc}")
        return _SSL_TICKET_RETURN_IGNORE_RENEW
    _log_declined(unknown)
    return _SSL_TICKET_RETURN_IGNORE_RENEW


def _unconfigured_cas(lib: ctypes.CDLL, session: int | None) -> list[str] | None:
    """Hex SHA-256 of the certificates the ticket's client sent that are not configured now
    (["unknown"] when the ticket does not say); an empty list when the session may resume."""
    data = ctypes.c_void_p()
    length = ctypes.c_size_t(0)
    if not session or lib.SSL_SESSION_get0_ticket_appdata(session, ctypes.byref(data), ctypes.byref(length)) != 1 \
            or not data.value or length.value < 1:
        return ["unknown"]
    appdata = ctypes.string_at(data.value, length.value)
    body = appdata[1:]
    if appdata[:1] != _APPDATA_VERSION or len(body) % _SHA256_LENGTH:
        return ["unknown"]
    known = _known_cas
    sent = (body[i:i + _SHA256_LENGTH] for i in range(0, len(body), _SHA256_LENGTH))
    return [digest.hex() for digest in sent if digest not in known]


@contextlib.contextmanager
def declines_unlogged(der: bytes) -> Iterator[None]:
    """While inside, a declined ticket whose client sent this certificate is not logged: the
    start-up self-test has one declined on purpose, which says nothing to the operator."""
    digest = hashlib.sha256(der).hexdigest()
    _unlogged.add(digest)
    try:
        yield
    finally:
        _unlogged.discard(digest)


def _log_declined(unknown: list[str]) -> None:
    # Once per process at info (what to configure), then at debug: every such client comes
    # back on each connection, and each of them costs a full handshake, not an error.
    global _declined_logged
    if _unlogged.issuperset(unknown):
        return
    fields = {"reason": "intermediates_not_configured", "unconfigured_ca_sha256": unknown,
              "detail": "the ticket's client sent CA certificates in its full handshake that are neither "
                        "--intermediate nor --trust-anchor; a resumed session would not carry them, so the client "
                        "gets a full handshake instead. Configure them with --intermediate to let it resume"}
    if _declined_logged:
        log.debug("tls_resumption_declined", **fields)
    else:
        _declined_logged = True
        log.info("tls_resumption_declined", **fields)


# Module-level so that the C function pointers outlive every context that uses them.
_GENERATE_TICKET = _GENERATE_TICKET_CALLBACK(_generate_ticket)
_DECRYPT_TICKET = _DECRYPT_TICKET_CALLBACK(_decrypt_ticket)


# --- the context -------------------------------------------------------------------------------

# Context -> its resumption settings, for the self-test, the listener's rotation and a reload
# (which builds the new context as the old one was). Weak: a context no server uses any more
# takes its entry with it.
_CONFIGURED: weakref.WeakKeyDictionary[ssl.SSLContext, ResumptionConfig] = weakref.WeakKeyDictionary()


def resumption_of(context: ssl.SSLContext | None) -> ResumptionConfig:
    """The resumption settings ``context`` was built with (off unless ``enable_tickets`` ran)."""
    found = None if context is None else _CONFIGURED.get(context)
    return found if found is not None else ResumptionConfig()


def enable_tickets(context: ssl.SSLContext, config: ResumptionConfig) -> None:
    """Turn stateless session tickets on for a server context that has the TLS profile
    (``tls_profile.apply``, which turned every kind of resumption off); the session cache
    stays off. ``ResumptionError`` naming the part OpenSSL refused."""
    if not config.tickets:
        raise ValueError("enable_tickets needs the tickets mode")
    try:
        lib = _libssl()
        pointer = ssl_ctx_pointer(context)
    except (OSError, AttributeError, OpenSSLAccessError) as exc:
        raise ResumptionError(f"OpenSSL's session ticket calls are not reachable through ctypes: {exc}") from exc
    if ctx_ctrl(context, _SSL_CTRL_SET_TLSEXT_TICKET_KEYS) != _TICKET_KEYS_LENGTH:
        raise ResumptionError(f"OpenSSL does not take {_TICKET_KEYS_LENGTH}-byte session ticket keys "
                              "(SSL_CTX_set_tlsext_ticket_keys): this OpenSSL is not supported")
    context.options &= ~ssl.OP_NO_TICKET
    context.num_tickets = TICKETS_PER_HANDSHAKE
    lib.SSL_CTX_set_timeout(pointer, config.ticket_lifetime)  # returns the previous timeout
    if lib.SSL_CTX_get_timeout(pointer) != config.ticket_lifetime:
        raise ResumptionError(f"OpenSSL did not take the session ticket lifetime of {config.ticket_lifetime} s")
    if lib.SSL_CTX_set_session_ticket_cb(pointer, _GENERATE_TICKET, _DECRYPT_TICKET, None) != 1:
        raise ResumptionError("OpenSSL refused the session ticket callbacks (SSL_CTX_set_session_ticket_cb)")
    _CONFIGURED[context] = config


def rotate_ticket_key(context: ssl.SSLContext) -> None:
    """Replace the context's session ticket key with a new random one; tickets issued under the
    old one no longer resume (their clients get a full handshake). The key goes from OpenSSL's
    random generator to the context through a ctypes buffer that is wiped after: never a
    Python ``bytes`` object, which could not be wiped. ``ResumptionError`` if OpenSSL refuses."""
    lib = _libssl()
    keys = ctypes.create_string_buffer(_TICKET_KEYS_LENGTH)
    try:
        if lib.RAND_bytes(keys, _TICKET_KEYS_LENGTH) != 1:
            raise ResumptionError("OpenSSL's random generator failed (RAND_bytes): no new session ticket key")
        if ctx_ctrl(context, _SSL_CTRL_SET_TLSEXT_TICKET_KEYS, _TICKET_KEYS_LENGTH, keys) != 1:  # type: ignore[arg-type]
            raise ResumptionError("OpenSSL refused the new session ticket key (SSL_CTX_set_tlsext_ticket_keys)")
    finally:
        ctypes.memset(keys, 0, _TICKET_KEYS_LENGTH)


class TicketKeyRotation:
    """Replaces the session ticket key of the context a server serves new connections with,
    every ``ticket_key_rotation`` seconds, on the server's event loop. The context is asked
    for at each rotation: after a reload (``SIGHUP``) it is the new one, which started with a
    fresh key of its own."""

    def __init__(self, loop: asyncio.AbstractEventLoop, current_context: Callable[[], ssl.SSLContext | None],
                 period: float) -> None:
        self._loop = loop
        self._current_context = current_context
        self._period = period
        self._rotations = 0
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def start_for(cls, loop: asyncio.AbstractEventLoop,
                  current_context: Callable[[], ssl.SSLContext | None]) -> TicketKeyRotation | None:
        """The running rotation for a server whose context issues tickets; None otherwise."""
        config = resumption_of(current_context())
        if not config.tickets:
            return None
        rotation = cls(loop, current_context, config.ticket_key_rotation)
        rotation._schedule()
        log.info("tls_ticket_key_rotation_started", pid=os.getpid(), period_seconds=config.ticket_key_rotation,
                 tickets_per_handshake=TICKETS_PER_HANDSHAKE)
        return rotation

    def _schedule(self) -> None:
        self._timer = self._loop.call_later(self._period, self.rotate)

    def rotate(self) -> None:
        """Rotate now (also the timer's callback), and schedule the next rotation."""
        self._timer = None
        context = self._current_context()
        try:
            if context is not None and resumption_of(context).tickets:
                rotate_ticket_key(context)
                self._rotations += 1
                log.info("tls_ticket_key_rotated", pid=os.getpid(), rotation=self._rotations,
                         next_in_seconds=self._period)
        except ResumptionError as exc:
            # The old key stays in use: tickets keep resuming, for longer than they should.
            log.error("tls_ticket_key_rotation_failed", pid=os.getpid(), error=str(exc),
                      detail=f"the previous key stays in use; retrying in {self._period:g} s")
        self._schedule()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
