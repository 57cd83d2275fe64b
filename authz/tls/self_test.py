"""Start-up self-test: prove that the server context accepts an unknown self-signed client
certificate and that the certificate reaches the application.

It runs an in-memory TLS handshake (``ssl.MemoryBIO``), so it needs no socket and takes a
few milliseconds. If it fails, the server must not start: silently falling back to
OpenSSL's own verification would break self-signed clients and hide why.
"""

from __future__ import annotations

import contextlib
import datetime
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from authz.tls.extension import peer_certificate_chain

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


def run_self_test(server_context: ssl.SSLContext) -> None:
    """Raise ``TLSSelfTestError`` unless an unknown self-signed ``CA:TRUE`` client
    certificate completes the handshake and is readable, leaf first, by the application."""
    cert_pem, key_pem = _throwaway_self_signed()
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    with tempfile.TemporaryDirectory(prefix="authz-selftest-") as tmp:
        cert_file, key_file = Path(tmp, "c.pem"), Path(tmp, "k.pem")
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        client_context.load_cert_chain(cert_file, key_file)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(c_in, c_out, server_side=False)
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    try:
        _pump(client, server, c_in, c_out, s_in, s_out)
    except ssl.SSLError as exc:
        raise TLSSelfTestError(
            f"a handshake with an unknown self-signed client certificate failed ({exc.reason or exc}); "
            "the TLS layer would refuse self_signed_tls_client_auth clients"
        ) from exc
    chain = peer_certificate_chain(server)
    expected = ssl.PEM_cert_to_DER_cert(cert_pem.decode("ascii"))
    if not chain or chain[0] != expected:
        raise TLSSelfTestError("the client certificate did not reach the application after the handshake")
