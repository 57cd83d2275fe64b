"""The start-up self-test proves each part of the TLS profile: a server context with one
part undone must fail it, with a message naming that part."""

import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

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
    "p521-group": (lambda c: tls_profile.set_groups(c, (*tls_profile.GROUPS, "P-521")), "outside X25519:P-256:P-384"),
    "no-p384": (lambda c: tls_profile.set_groups(c, ("X25519", "P-256")), "over P-384"),
    "no-x25519": (lambda c: tls_profile.set_groups(c, ("P-256", "P-384")), "over X25519"),
    "cbc-suite": (lambda c: c.set_ciphers(":".join((*tls_profile.TLS12_CIPHERS, "ECDHE-ECDSA-AES128-SHA256"))),
                  "TLS 1.2 client offering only suites outside"),
    "sha1-cbc-suite": (lambda c: c.set_ciphers(":".join((*tls_profile.TLS12_CIPHERS, "ECDHE-ECDSA-AES256-SHA"))),
                       "TLS 1.2 client offering only suites outside"),
    "sha224-client-signatures": (lambda c: tls_profile.set_client_signature_algorithms(
        c, (*tls_profile.SIGNATURE_ALGORITHMS, "ECDSA+SHA224")), "ECDSA\\+SHA224"),
    "session-cache": (_session_cache_on, "resumed a TLS 1.2 session"),
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


def test_openssl_refusing_a_setting_is_named(server_pem: tuple[Path, Path]) -> None:
    context = build_server_context(*map(str, server_pem))
    with pytest.raises(tls_profile.TLSProfileError, match="OpenSSL refused the key-exchange groups 'X25519:X9999'"):
        tls_profile.set_groups(context, ("X25519", "X9999"))
