"""``authz-sample-api`` (also ``authz sample-api``): run the sample accounts API over TLS,
requesting client certificates.

Imports stay inside the command so that registering it costs the ``authz`` CLI nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from authz.proxy.options import proxy_options

__all__ = ["sample_api"]

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("sample-api")
@click.option("--tls-cert", type=_FILE, help="Server certificate of the API, PEM (required unless a proxy "
              "terminates TLS: --proxy-cert-header).")
@click.option("--tls-key", type=_FILE, help="Its private key, PEM.")
@click.option("--issuer", required=True, help="Issuer URL of the authorization server, e.g. https://127.0.0.1:8443.")
@click.option("--ca-file", type=_FILE, help="CA certificate(s) that issued the authorization server's TLS "
              "certificate (default: the system store).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8444, show_default=True, type=click.IntRange(1, 65535))
@click.option("--audience", required=True, metavar="URI",
              help="This API's identifier, an absolute URI: tokens are accepted only when their aud includes it "
                   "(compared exactly), in JWT and in introspection mode. Clients request tokens for it with "
                   "resource=URI (RFC 8707).")
@click.option("--algorithm", "algorithms", multiple=True, metavar="ALG",
              help="JWS algorithm accepted for JWT access tokens; repeat for several (default: ES256). "
                   "ES256 ES384 ES512 RS256 RS384 RS512 PS256 PS384 PS512 EdDSA Ed25519 Ed448; "
                   "none and HS* are refused.")
@click.option("--realm", default="accounts", show_default=True, help="Realm named in WWW-Authenticate.")
@click.option("--introspection", is_flag=True,
              help="Check every token at the introspection endpoint (sees revocations) instead of verifying JWTs.")
@click.option("--client-cert", type=_FILE, help="The API's client certificate, for introspection (RFC 8705 §2).")
@click.option("--client-key", type=_FILE, help="Its private key.")
@click.option("--client-id", help="The API's client_id at the authorization server, for introspection.")
@click.option("--introspection-cache-ttl", default=30.0, show_default=True, type=click.FloatRange(0, 3600),
              help="Seconds an introspection answer is reused (how long a revocation can go unnoticed).")
@click.option("--jwks-refresh-cooldown", default=5.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Minimum seconds between key-set fetches triggered by unknown kids (at least 0.1: "
                   "made-up kids must not turn into one fetch per request).")
@click.option("--leeway", default=30.0, show_default=True, type=click.FloatRange(0, 300),
              help="Clock-skew tolerance for exp/nbf/iat, seconds.")
@click.option("--allow-unbound-tokens", is_flag=True, help="Accept tokens without cnf (not recommended).")
@click.option("--max-body-bytes", default=16 * 1024, show_default=True, type=click.IntRange(0, 64 * 1024 * 1024),
              help="Largest request body accepted; a larger one (declared, or chunked) is answered 413.")
@click.option("--tls-handshake-timeout", default=5.0, show_default=True, type=click.FloatRange(0.1, 120),
              help="Seconds a client may take to complete its TLS handshake.")
@click.option("--max-connections", default=1000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Connections held (handshaking or open) before the API stops accepting new ones.")
@proxy_options(_FILE, environment=False)
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", default="json", show_default=True, type=click.Choice(["json", "console"]))
def sample_api(**options: Any) -> None:
    """Run the sample accounts API protected by certificate-bound access tokens
    (RFC 8705 §3) for --audience.

    \b
    GET  /health, /healthz        no token
    GET  /accounts                accounts:read
    GET  /accounts/{account_id}   accounts:read
    POST /accounts                accounts:write

    JWT mode (default) verifies tokens with the authorization server's published keys;
    with --client-cert/--client-key/--client-id it also introspects opaque tokens.
    --introspection asks the authorization server about every (uncached) token.
    """
    import os

    import uvicorn

    from authz.logs import configure_logging, uvicorn_log_config
    from authz.proxy.mode import ForwardedCertificate, build_proxy_mode
    from authz.tls.context import ServerTLSError, uvicorn_plain_options
    from authz.tls.listener import ConnectionLimits
    from authz_resource.sample.app import create_app
    from authz_resource.serving import uvicorn_tls_options

    configure_logging(options["log_level"], options["log_format"])
    try:
        validator = _validator(options)
        proxy_mode = None if options["proxy_cert_header"] is None else build_proxy_mode(
            options["proxy_cert_header"], header=options["proxy_cert_header_name"],
            trusted_proxies=options["trusted_proxies"], trusted_proxy_certs=options["trusted_proxy_certs"],
            trusted_proxy_cas=options["trusted_proxy_cas"])
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if (options["tls_cert"] is None) != (options["tls_key"] is None):
        raise click.ClickException("--tls-cert and --tls-key go together")
    if options["tls_cert"] is None and proxy_mode is None:
        raise click.ClickException("--tls-cert and --tls-key are required, unless a proxy terminates TLS "
                                   "(--proxy-cert-header)")
    try:
        tls = (uvicorn_tls_options(options["tls_cert"], options["tls_key"]) if options["tls_cert"] is not None
               else uvicorn_plain_options())
    except ServerTLSError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot load --tls-cert {options['tls_cert']} / --tls-key "
                                   f"{options['tls_key']}: {exc}") from exc
    # Read by the serving loop (authz.tls.listener), which uvicorn builds before the app.
    os.environ.update(ConnectionLimits(options["tls_handshake_timeout"], options["max_connections"]).environment())
    app = create_app(validator, realm=options["realm"], allow_unbound_tokens=options["allow_unbound_tokens"],
                     max_body_bytes=options["max_body_bytes"])
    if proxy_mode is not None:
        app = ForwardedCertificate(app, proxy_mode)
    uvicorn.run(app, host=options["host"], port=options["port"], log_level=options["log_level"],
                access_log=False, lifespan="on", log_config=uvicorn_log_config(options["log_format"]), **tls)


def _validator(options: dict[str, Any]) -> Any:
    from authz_resource import AuthorizationServer, IntrospectionValidator, JWTAccessTokenValidator

    client = [options["client_cert"], options["client_key"], options["client_id"]]
    if any(client) and not all(client):
        raise ValueError("--client-cert, --client-key and --client-id go together")
    if options["introspection"] and not all(client):
        raise ValueError("--introspection needs --client-cert, --client-key and --client-id "
                         "(the API authenticates to the introspection endpoint with its certificate)")
    if options["introspection"] and options["algorithms"]:
        raise ValueError("--algorithm applies to JWT verification; with --introspection the authorization "
                         "server checks the signature")
    server = AuthorizationServer(options["issuer"], ca_file=options["ca_file"], client_cert=options["client_cert"],
                                 client_key=options["client_key"])
    audience = options["audience"]
    introspection = None
    if all(client):
        introspection = IntrospectionValidator(server, client_id=options["client_id"], audience=audience,
                                               leeway=options["leeway"],
                                               cache_ttl=options["introspection_cache_ttl"])
    if options["introspection"]:
        return introspection
    return JWTAccessTokenValidator(server, audience=audience, algorithms=options["algorithms"] or ("ES256",),
                                   leeway=options["leeway"], jwks_refresh_cooldown=options["jwks_refresh_cooldown"],
                                   opaque=introspection)
