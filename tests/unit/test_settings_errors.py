"""Settings errors name what the operator typed: the option and its environment variable."""

from __future__ import annotations

import click
import pytest

from authz.cli.serve import _settings


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"port": 70000}, "invalid settings: --port (AUTHZ_PORT): Input should be less than or equal to 65535"),
        ({"trust_anchors": [object()]}, "invalid settings: --trust-anchor (AUTHZ_TRUST_ANCHORS): "),
        ({"intermediates": [object()]}, "invalid settings: --intermediate (AUTHZ_INTERMEDIATES): "),
        ({"tls_key": "k.pem"}, "invalid settings: --tls-cert (AUTHZ_TLS_CERT) is required with --tls-key"),
    ],
    ids=["plain", "repeatable-trust-anchor", "repeatable-intermediate", "cross-setting-rule"],
)
def test_the_message_names_the_option(monkeypatch: pytest.MonkeyPatch, overrides: dict[str, object],
                                      expected: str) -> None:
    for name in ("AUTHZ_TLS_CERT", "AUTHZ_TLS_KEY", "AUTHZ_TRUST_ANCHORS", "AUTHZ_INTERMEDIATES", "AUTHZ_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(click.ClickException) as raised:
        _settings(overrides)
    assert raised.value.message.startswith(expected)
