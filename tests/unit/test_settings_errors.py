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


def test_revocation_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in ("AUTHZ_REVOCATION_CHECK", "AUTHZ_CRLS", "AUTHZ_REVOCATION_POLICY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(click.ClickException) as raised:
        _settings({"crls": ["a.crl"]})
    assert "--crl (AUTHZ_CRLS) needs --revocation-check crl or crl+ocsp" in raised.value.message
    with pytest.raises(click.ClickException) as raised:
        _settings({"revocation_check": "crl-and-ocsp"})
    assert raised.value.message.startswith("invalid settings: --revocation-check (AUTHZ_REVOCATION_CHECK): ")
    assert _settings({}).revocation_config() is None
    # From the environment, as a worker process reads them.
    monkeypatch.setenv("AUTHZ_REVOCATION_CHECK", "crl+ocsp")
    monkeypatch.setenv("AUTHZ_CRLS", "a.crl,b.crl")
    config = _settings({"revocation_policy": "soft-fail"}).revocation_config()
    assert config is not None and config.crl and config.ocsp and not config.hard_fail
    assert [str(p) for p in config.crl_files] == ["a.crl", "b.crl"]
    assert (config.max_wait, config.fetch_timeout, config.crl_grace) == (1.0, 3.0, 0.0)
