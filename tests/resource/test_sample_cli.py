"""``authz-sample-api`` refuses bad configuration before binding, naming the option."""

from __future__ import annotations

import subprocess

import pytest

from tests.resource.wire import REPO, SAMPLE_API


@pytest.mark.parametrize(("extra", "message"), [
    (["--issuer", "https://127.0.0.1:1", "--introspection"], "--introspection needs --client-cert"),
    (["--issuer", "https://127.0.0.1:1", "--client-id", "rs"], "go together"),
    (["--issuer", "http://127.0.0.1:1"], "issuer must be an https URL"),
    (["--issuer", "https://127.0.0.1:1"], "cannot load --tls-cert"),
    (["--issuer", "https://127.0.0.1:1", "--jwks-refresh-cooldown", "0"], "--jwks-refresh-cooldown"),
])
def test_bad_configuration_is_refused(extra: list[str], message: str) -> None:
    not_pem = str(REPO / "pyproject.toml")
    result = subprocess.run([*SAMPLE_API, "--tls-cert", not_pem, "--tls-key", not_pem, *extra],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
