"""``authz-sample-api`` refuses bad configuration before binding, naming the option."""

from __future__ import annotations

import subprocess

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
])
def test_bad_configuration_is_refused(extra: list[str], message: str) -> None:
    not_pem = str(REPO / "pyproject.toml")
    result = subprocess.run([*SAMPLE_API, "--tls-cert", not_pem, "--tls-key", not_pem, *extra],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
