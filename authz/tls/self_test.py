"""Start-up self-test: prove with in-memory TLS handshakes (``ssl.MemoryBIO``, no socket)
that the server context does what this server relies on:

- an unknown self-signed client certificate completes the handshake and reaches the
  application (``authz.tls.accept_any``);
- the TLS profile (``authz.tls.tls_profile``) took effect: each of its key-exchange groups
  works and no other group does, TLS 1.2 offers no suite outside its AEAD list, a client
  certificate cannot be proven with a SHA-224 signature;
- session resumption is what the context was built for (``authz.tls.resumption``): off, no
  session is resumed, in TLS 1.2 or 1.3; with tickets, a TLS 1.3 and a TLS 1.2 session resume
  with the client certificate still reaching the application, a session whose client sent an
  intermediate CA certificate the server does not have is not resumed, and after a ticket key
  rotation an earlier ticket gives a full handshake;
- with ``--advertise-ca-names``, the CertificateRequest of TLS 1.3 and of TLS 1.2 carries
  exactly the trust anchors' names (``authz.tls.ca_names``).

The settings behind both go through ctypes and CPython internals; if any proof fails the
server must not start, rather than silently serve something else. The clients here are
restricted with the same ctypes calls. Every handshake uses the server's own certificate
and key: with an ECDSA P-256 key the whole test took about 15 ms (the P-384 handshake 4 ms),
against 3.5 ms for the certificate handshake alone.
"""

from __future__ import annotations

import contextlib
import datetime
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from authz.tls import tls_profile
from authz.tls.ca_names import CANamesError, received_ca_names
from authz.tls.extension import peer_certificate_chain
from authz.tls.resumption import ResumptionError, declines_unlogged, resumption_of, rotate_ticket_key

__all__ = ["TLSSelfTestError", "run_self_test"]


class TLSSelfTestError(RuntimeError):
    """The TLS layer cannot be configured to hand any client certificate to the app."""


def _throwaway_self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authz start-up self-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(minutes=5))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _issued_by(issuer_pem: bytes, issuer_key_pem: bytes) -> tuple[bytes, bytes]:
    """A leaf issued by the throwaway CA:TRUE certificate, followed by it: a client chain with
    an intermediate no server configures."""
    issuer = x509.load_pem_x509_certificate(issuer_pem)
    issuer_key = serialization.load_pem_private_key(issuer_key_pem, password=None)
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authz start-up self-test leaf")]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(minutes=5))
        .sign(issuer_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM) + issuer_pem, key_pem


def _pump(client: ssl.SSLObject, server: ssl.SSLObject, c_in: ssl.MemoryBIO, c_out: ssl.MemoryBIO,
          s_in: ssl.MemoryBIO, s_out: ssl.MemoryBIO) -> None:
    done = {"client": False, "server": False}
    for _ in range(20):
        for side, obj in (("client", client), ("server", server)):
            if done[side]:
                continue
            try:
                obj.do_handshake()
                done[side] = True
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if done["client"] and done["server"]:
            # TLS 1.3: the client's certificate is verified by the server after the client
            # already considers the handshake done; one more read flushes the server's
            # verdict (an alert, if it refused).
            with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                client.read(1)
            return
    raise TLSSelfTestError("the in-memory TLS handshake did not complete")


# Every group OpenSSL 3.0 offers by default except the profile's; the first one is the key
# share the client sends (P-521: cheap to make), a server that supports another one would
# ask for it (HelloRetryRequest).
_GROUPS_OUTSIDE_THE_PROFILE = ("P-521", "X448", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192")
# The only signature a client may make for its CertificateVerify in the probe (TLS 1.2:
# TLS 1.3 never signs with SHA-224).
_SHA224_ONLY = ("ECDSA+SHA224",)


@dataclass(frozen=True)
class _Handshake:
    server: ssl.SSLObject
    client: ssl.SSLObject


def _handshake(server_context: ssl.SSLContext, client_context: ssl.SSLContext,
               session: ssl.SSLSession | None = None) -> _Handshake:
    """One handshake between the two contexts; ``ssl.SSLError`` when either side refuses."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(c_in, c_out, server_side=False, session=session)
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    _pump(client, server, c_in, c_out, s_in, s_out)
    return _Handshake(server, client)


def _refused(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> bool:
    try:
        _handshake(server_context, client_context)
    except ssl.SSLError:
        return True
    return False


def _client_context(maximum_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = maximum_version
    return context


def run_self_test(server_context: ssl.SSLContext, advertised_ca_names: Sequence[x509.Name] = ()) -> None:
    """Raise ``TLSSelfTestError`` unless every property listed in the module docstring holds;
    ``advertised_ca_names``: the names the CertificateRequest must carry (none: not checked)."""
    cert_pem, key_pem = _throwaway_self_signed()
    tickets = resumption_of(server_context).tickets
    with tempfile.TemporaryDirectory(prefix="authz-selftest-") as tmp:
        cert_file, key_file = Path(tmp, "c.pem"), Path(tmp, "k.pem")
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        with_certificate = []
        for group in tls_profile.GROUPS:
            client_context = _client_context()
            tls_profile.set_groups(client_context, (group,))
            client_context.load_cert_chain(cert_file, key_file)
            with_certificate.append((group, client_context))
        sha224_client = _client_context(ssl.TLSVersion.TLSv1_2)
        tls_profile.set_client_signature_algorithms(sha224_client, _SHA224_ONLY)
        sha224_client.load_cert_chain(cert_file, key_file)
        resuming_clients: list[tuple[str, ssl.SSLContext]] = []
        unknown_intermediate_client = _client_context()
        if tickets:
            for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
                client_context = _client_context(version)
                client_context.load_cert_chain(cert_file, key_file)
                resuming_clients.append((_VERSION_NAMES[version], client_context))
            chain_pem, leaf_key_pem = _issued_by(cert_pem, key_pem)
            chain_file, leaf_key_file = Path(tmp, "chain.pem"), Path(tmp, "leaf-k.pem")
            chain_file.write_bytes(chain_pem)
            leaf_key_file.write_bytes(leaf_key_pem)
            unknown_intermediate_client.load_cert_chain(chain_file, leaf_key_file)
    expected = ssl.PEM_cert_to_DER_cert(cert_pem.decode("ascii"))
    for group, client_context in with_certificate:
        _prove_the_certificate_arrives(server_context, client_context, group, expected)
    _prove_groups_refused(server_context)
    _prove_tls12_suites_refused(server_context)
    _prove_sha224_not_requested(server_context, sha224_client)
    if tickets:
        _prove_tickets_resume(server_context, resuming_clients, expected)
        with declines_unlogged(expected):  # the leaf's issuer, sent after it
            _prove_unknown_intermediates_not_resumed(server_context, unknown_intermediate_client)
        _prove_rotation_retires_tickets(server_context, resuming_clients)
    else:
        _prove_no_resumption(server_context)
    if advertised_ca_names:
        _prove_ca_names_advertised(server_context, advertised_ca_names)


def _prove_the_certificate_arrives(server_context: ssl.SSLContext, client_context: ssl.SSLContext, group: str,
                                   expected: bytes) -> None:
    try:
        handshake = _handshake(server_context, client_context)
    except ssl.SSLError as exc:
        raise TLSSelfTestError(
            f"a TLS 1.3 handshake over {group} with an unknown self-signed client certificate failed "
            f"({exc.reason or exc}); the TLS layer would refuse self_signed_tls_client_auth clients, "
            f"or clients that only offer {group}"
        ) from exc
    chain = peer_certificate_chain(handshake.server)
    if not chain or chain[0] != expected:
        raise TLSSelfTestError("the client certificate did not reach the application after the handshake")


def _prove_groups_refused(server_context: ssl.SSLContext) -> None:
    client_context = _client_context()
    tls_profile.set_groups(client_context, _GROUPS_OUTSIDE_THE_PROFILE)
    if not _refused(server_context, client_context):
        raise TLSSelfTestError(
            f"a client offering only key-exchange groups outside {':'.join(tls_profile.GROUPS)} "
            f"({':'.join(_GROUPS_OUTSIDE_THE_PROFILE)}) completed a handshake; finite-field groups "
            "let any client cost the server a modular exponentiation per hello (DHEat)"
        )


def _prove_tls12_suites_refused(server_context: ssl.SSLContext) -> None:
    client_context = _client_context(ssl.TLSVersion.TLSv1_2)
    # Every suite this OpenSSL has (CBC, DHE, RSA key transport, ...) but the profile's.
    client_context.set_ciphers(":".join(["ALL:@SECLEVEL=0", *(f"!{suite}" for suite in tls_profile.TLS12_CIPHERS)]))
    if not _refused(server_context, client_context):
        raise TLSSelfTestError(
            "a TLS 1.2 client offering only suites outside the profile's ECDHE+AEAD list (CBC, DHE, "
            "RSA key transport) completed a handshake"
        )


def _prove_sha224_not_requested(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> None:
    # A client sends its certificate only if it can sign with an algorithm the server
    # requested; one restricted to ECDSA+SHA224 must therefore arrive without one.
    try:
        handshake = _handshake(server_context, client_context)
    except ssl.SSLError as exc:
        raise TLSSelfTestError(f"a TLS 1.2 handshake failed ({exc.reason or exc})") from exc
    if peer_certificate_chain(handshake.server):
        raise TLSSelfTestError(
            "the server accepted a client certificate proven with an ECDSA+SHA224 signature; the "
            "signature algorithms it requests for client certificates are not the profile's"
        )


def _prove_no_resumption(server_context: ssl.SSLContext) -> None:
    client_context = _client_context(ssl.TLSVersion.TLSv1_2)
    try:
        first = _handshake(server_context, client_context)
        second = _handshake(server_context, client_context, session=first.client.session)
        tls13 = _handshake(server_context, _client_context())
    except ssl.SSLError as exc:
        raise TLSSelfTestError(f"a handshake without a client certificate failed ({exc.reason or exc})") \
            from exc
    if second.server.session_reused:
        raise TLSSelfTestError(
            "the server resumed a TLS 1.2 session although resumption is off: its session cache (memory per "
            "client chain) or its session tickets are on, and a resumed session loses the client's intermediates"
        )
    if tls13.client.session is not None and tls13.client.session.has_ticket:
        raise TLSSelfTestError("the server issued a TLS 1.3 session ticket although resumption is off")


_VERSION_NAMES = {ssl.TLSVersion.TLSv1_3: "TLS 1.3", ssl.TLSVersion.TLSv1_2: "TLS 1.2"}


def _resumed(server_context: ssl.SSLContext, client_context: ssl.SSLContext, version: str,
             session: ssl.SSLSession | None) -> _Handshake:
    try:
        return _handshake(server_context, client_context, session=session)
    except ssl.SSLError as exc:
        raise TLSSelfTestError(f"a {version} handshake offering a session ticket failed ({exc.reason or exc}); "
                               "clients that resume sessions would be refused") from exc


def _ticket_of(server_context: ssl.SSLContext, client_context: ssl.SSLContext, version: str) -> ssl.SSLSession:
    """A session with a ticket, from a full handshake."""
    try:
        first = _handshake(server_context, client_context)
    except ssl.SSLError as exc:
        raise TLSSelfTestError(f"a {version} handshake with a client certificate failed ({exc.reason or exc})") \
            from exc
    session = first.client.session
    if session is None or not session.has_ticket:
        raise TLSSelfTestError(f"the server issued no {version} session ticket although --tls-resumption is tickets")
    return session


def _prove_tickets_resume(server_context: ssl.SSLContext, clients: list[tuple[str, ssl.SSLContext]],
                          expected: bytes) -> None:
    for version, client_context in clients:
        resumed = _resumed(server_context, client_context, version,
                           _ticket_of(server_context, client_context, version))
        if not resumed.server.session_reused:
            raise TLSSelfTestError(f"a {version} session ticket did not resume its session")
        if peer_certificate_chain(resumed.server) != [expected]:
            raise TLSSelfTestError(
                f"on a resumed {version} session the client certificate did not reach the application: every "
                "request of such a connection would be refused"
            )


def _prove_unknown_intermediates_not_resumed(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> None:
    session = _ticket_of(server_context, client_context, "TLS 1.3")
    again = _resumed(server_context, client_context, "TLS 1.3", session)
    if again.server.session_reused:
        raise TLSSelfTestError(
            "the server resumed a session whose client had sent an intermediate CA certificate it does not have: a "
            "resumed session does not carry it, and the client's chain would no longer validate"
        )
    if len(peer_certificate_chain(again.server)) != 2:
        raise TLSSelfTestError("after a declined resumption the client's chain did not reach the application")


def _prove_rotation_retires_tickets(server_context: ssl.SSLContext, clients: list[tuple[str, ssl.SSLContext]]) -> None:
    for version, client_context in clients:
        session = _ticket_of(server_context, client_context, version)
        try:
            rotate_ticket_key(server_context)
        except ResumptionError as exc:
            raise TLSSelfTestError(str(exc)) from exc
        after = _resumed(server_context, client_context, version, session)
        if after.server.session_reused:
            raise TLSSelfTestError(f"a {version} ticket issued before a ticket key rotation still resumed: the "
                                   "rotation did not replace the key")


def _prove_ca_names_advertised(server_context: ssl.SSLContext, expected: Sequence[x509.Name]) -> None:
    # Read on the client side, as a client would see them: Python has no call for it, so
    # through the client's SSL* (authz.tls.ca_names). Without --advertise-ca-names this is
    # not run, and the server does not depend on reaching an SSL*. Two handshakes without a
    # client certificate (the CertificateRequest is sent all the same): about 2 ms.
    wanted = [name.public_bytes() for name in expected]
    for label, version in (("TLS 1.3", ssl.TLSVersion.TLSv1_3), ("TLS 1.2", ssl.TLSVersion.TLSv1_2)):
        try:
            handshake = _handshake(server_context, _client_context(version))
            received = [name.public_bytes() for name in received_ca_names(handshake.client)]
        except ssl.SSLError as exc:
            raise TLSSelfTestError(f"a {label} handshake failed ({exc.reason or exc})") from exc
        except CANamesError as exc:
            raise TLSSelfTestError(f"the CA names the server advertises cannot be checked ({exc}); "
                                   "run without --advertise-ca-names") from exc
        if received != wanted:
            raise TLSSelfTestError(
                f"the {label} CertificateRequest carries {len(received)} CA name(s), not the "
                f"{len(wanted)} trust anchor name(s) --advertise-ca-names should send"
            )
