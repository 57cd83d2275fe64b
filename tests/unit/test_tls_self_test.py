import ssl
from pathlib import Path

import pytest

from authz.tls.context import build_server_context
from authz.tls.self_test import TLSSelfTestError, run_self_test
from tests.support.pki import TestCA


@pytest.fixture(scope="module")
def server_pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    ca = TestCA()
    issued = ca.issue("CN=localhost", san_dns=["localhost"], eku=[])
    return issued.write(tmp_path_factory.mktemp("srv"), "server")


def test_server_context_accepts_unknown_self_signed_client(server_pem: tuple[Path, Path]) -> None:
    context = build_server_context(str(server_pem[0]), str(server_pem[1]))
    assert context.verify_mode == ssl.CERT_OPTIONAL
    run_self_test(context)  # again, on the returned context


def test_self_test_catches_a_context_that_would_refuse(server_pem: tuple[Path, Path]) -> None:
    # The negative control: plain Python CERT_OPTIONAL aborts the handshake.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*server_pem)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cadata=TestCA().pem.decode())
    with pytest.raises(TLSSelfTestError, match="self_signed_tls_client_auth"):
        run_self_test(context)


def test_missing_key_file_is_an_os_error(server_pem: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(OSError):
        build_server_context(str(server_pem[0]), str(tmp_path / "missing.key"))


def _tls12_client() -> ssl.SSLContext:
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    client_context.maximum_version = ssl.TLSVersion.TLSv1_2
    return client_context


def _tls12_handshake(server: ssl.SSLContext, client_context: ssl.SSLContext,
                     session: ssl.SSLSession | None = None) -> ssl.SSLObject:
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(c_in, c_out, session=session)
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (client, srv):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    client.write(b"x")  # TLS 1.2 sessions are complete after the handshake
    return client


def test_tls12_sessions_are_not_resumed(server_pem: tuple[Path, Path]) -> None:
    # A resumed session knows only the leaf: the intermediates a client sent would vanish.
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    plain.load_cert_chain(*server_pem)
    client = _tls12_client()
    first = _tls12_handshake(plain, client)
    assert _tls12_handshake(plain, client, first.session).session_reused  # the control: OpenSSL's default resumes
    ours = build_server_context(*map(str, server_pem))
    client = _tls12_client()
    first = _tls12_handshake(ours, client)
    assert first.version() == "TLSv1.2"
    assert not _tls12_handshake(ours, client, first.session).session_reused
