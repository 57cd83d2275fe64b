"""Settings errors name what the operator typed: the option and its environment variable."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from authz.cli.serve import _settings
from authz.context import ConfigurationError, jwks_uri_fetcher
from authz.settings import Settings


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


def test_a_jwks_uri_allow_entry_that_is_no_network_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTHZ_JWKS_URI_ALLOW", raising=False)
    with pytest.raises(click.ClickException) as raised:
        _settings({"jwks_uri_allow": ("127.0.0.1/32", "10.0.0.1/8")})
    assert raised.value.message == (
        "invalid settings: --jwks-uri-allow (AUTHZ_JWKS_URI_ALLOW): '10.0.0.1/8' is not an address or CIDR network "
        "(10.0.0.1/8 has host bits set)")


def test_the_jwks_uri_allow_list_reaches_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Workers read the settings back from AUTHZ_* variables: comma-separated, like the other lists.
    monkeypatch.setenv("AUTHZ_JWKS_URI_ALLOW", "127.0.0.1/32, ::1")
    settings = Settings()
    assert settings.jwks_uri_allow == ["127.0.0.1/32", "::1"]
    assert settings.to_environment()["AUTHZ_JWKS_URI_ALLOW"] == "127.0.0.1/32,::1"


@pytest.mark.parametrize(("content", "fragment"), [
    (None, "No such file"),
    (b"not a certificate", "no certificate or crl found"),
], ids=["missing", "not-pem"])
def test_a_jwks_uri_ca_that_cannot_be_loaded_is_named(tmp_path: Path, content: bytes | None, fragment: str) -> None:
    ca = tmp_path / "jwks-ca.pem"
    if content is not None:
        ca.write_bytes(content)
    with pytest.raises(ConfigurationError) as raised:
        jwks_uri_fetcher(Settings(jwks_uri_ca=ca))
    assert str(raised.value).startswith(f"jwks_uri_ca: cannot load {ca} as PEM CA certificates: ")
    assert fragment in str(raised.value)
