"""The start-up self-test proves each part of the TLS profile: a server context with one
part undone must fail it, with a message naming that part."""

import datetime
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from authz.tls import tls_profile
from authz.tls.context import build_server_context
from authz.tls.self_test import TLSSelfTestError, run_self_test
from authz.tls.ssl_ctx import ctx_ctrl
from tests.support.pki import TestCA

SSL_CTRL_SET_SESS_CACHE_MODE, SSL_SESS_CACHE_SERVER = 44, 2


@pytest.fixture(scope="module")
def server_pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    issued = TestCA().issue("CN=localhost", san_dns=["localhost"], eku=[])
    return issued.write(tmp_path_factory.mktemp("srv"), "server")


def _session_cache_on(context: ssl.SSLContext) -> None:
    ctx_ctrl(context, SSL_CTRL_SET_SESS_CACHE_MODE, SSL_SESS_CACHE_SERVER)  # OpenSSL's default


UNDONE: dict[str, tuple[Callable[[ssl.SSLContext], None], str]] = {
    "ffdhe-group": (lambda c: tls_profile.set_groups(c, (*tls_profile.GROUPS, "ffdhe2048")), "DHEat"),
    "ffdhe8192-group": (lambda c: tls_profile.set_groups(c, (*tls_profile.GROUPS, "ffdhe8192")), "DHEat"),
    "p521-group": (lambda c: tls_profile.set_groups(c, (*tls_profile.GROUPS, "P-521")), "outside X25519:P-256:P-384 "),
    "no-p384": (lambda c: tls_profile.set_groups(c, ("X25519", "P-256")), "over P-384"),
    "no-x25519": (lambda c: tls_profile.set_groups(c, ("P-256", "P-384")), "over X25519"),
    "cbc-suite": (lambda c: c.set_ciphers(":".join((*tls_profile.TLS12_CIPHERS, "ECDHE-ECDSA-AES128-SHA256"))),
                  r"TLS 1\.2 client offering only suites outside"),
    "sha1-cbc-suite": (lambda c: c.set_ciphers(":".join((*tls_profile.TLS12_CIPHERS, "ECDHE-ECDSA-AES256-SHA"))),
                       r"TLS 1\.2 client offering only suites outside"),
    "sha224-client-signatures": (lambda c: tls_profile.set_client_signature_algorithms(
        c, (*tls_profile.SIGNATURE_ALGORITHMS, "ECDSA+SHA224")), "ECDSA\\+SHA224"),
    "session-cache": (_session_cache_on, r"resumed a TLS 1\.2 session"),
}


def test_the_profile_passes_its_own_proof(server_pem: tuple[Path, Path]) -> None:
    run_self_test(build_server_context(*map(str, server_pem)))


@pytest.mark.parametrize("undo", UNDONE)
def test_the_self_test_refuses_a_context_without_the_profile(server_pem: tuple[Path, Path], undo: str) -> None:
    context = build_server_context(*map(str, server_pem))
    weaken, message = UNDONE[undo]
    weaken(context)
    with pytest.raises(TLSSelfTestError, match=message):
        run_self_test(context)


@pytest.fixture(scope="module")
def rsa_server_pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name.from_rfc4514_string("CN=localhost")
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1)).sign(key, hashes.SHA256()))
    directory = tmp_path_factory.mktemp("rsa-srv")
    (directory / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return directory / "server.crt", directory / "server.key"


def test_an_rsa_server_key_serves_the_profile(rsa_server_pem: tuple[Path, Path]) -> None:
    context = build_server_context(*map(str, rsa_server_pem))  # runs the self-test
    context.set_ciphers(":".join((*tls_profile.TLS12_CIPHERS, "ECDHE-RSA-AES128-SHA256")))
    with pytest.raises(TLSSelfTestError, match=r"TLS 1\.2 client offering only suites outside"):
        run_self_test(context)


def test_openssl_refusing_a_setting_is_named(server_pem: tuple[Path, Path]) -> None:
    context = build_server_context(*map(str, server_pem))
    with pytest.raises(tls_profile.TLSProfileError, match="OpenSSL refused the key-exchange groups 'X25519:X9999'"):
        tls_profile.set_groups(context, ("X25519", "X9999"))
