"""``authz-sample-api`` refuses bad configuration before binding, naming the option."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.resource.wire import REPO, SAMPLE_API

AS = ["--issuer", "https://127.0.0.1:1"]
API = ["--audience", "https://api.test"]


@pytest.mark.parametrize(("extra", "message"), [
    ([*AS, *API, "--introspection"], "--introspection needs --client-cert"),
    ([*AS, *API, "--client-id", "rs"], "go together"),
    (["--issuer", "http://127.0.0.1:1", *API], "issuer must be an https URL"),
    ([*AS, *API], "cannot load --tls-cert"),
    ([*AS, *API, "--jwks-refresh-cooldown", "0"], "--jwks-refresh-cooldown"),
    (AS, "Missing option '--audience'"),
    ([*AS, "--audience", "api.test"], "audience 'api.test' must be an absolute URI (RFC 8707 section 2)"),
    ([*AS, "--audience", "https://api.test#x"], "must not have a fragment"),
    ([*AS, *API, "--algorithm", "HS256"], "'HS256' is not allowed: HMAC would verify with the key"),
    ([*AS, *API, "--algorithm", "ES256", "--algorithm", "none"], "'none' is not allowed: it means unsigned"),
    ([*AS, *API, "--algorithm", "es256"], "'es256' is not supported; choose from ES256, ES384"),
    ([*AS, *API, "--max-body-bytes", "-1"], "--max-body-bytes"),
])
def test_bad_configuration_is_refused(extra: list[str], message: str) -> None:
    not_pem = str(REPO / "pyproject.toml")
    result = subprocess.run([*SAMPLE_API, "--tls-cert", not_pem, "--tls-key", not_pem, *extra],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_algorithms_are_for_jwt_mode_only(tmp_path: Path) -> None:
    from tests.support.pki import TestCA

    cert, key = TestCA().issue("CN=rs,O=t").write(tmp_path, "rs")
    not_pem = str(REPO / "pyproject.toml")
    result = subprocess.run([*SAMPLE_API, "--tls-cert", not_pem, "--tls-key", not_pem, *AS, *API, "--introspection",
                             "--client-cert", str(cert), "--client-key", str(key), "--client-id", "rs",
                             "--algorithm", "RS256"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode != 0
    assert "--algorithm applies to JWT verification" in result.stderr, result.stderr
