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
