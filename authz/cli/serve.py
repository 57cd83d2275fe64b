"""``authz serve`` (production entry point) and ``authz dev`` (quick start)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from authz.audiences.model import ResourceServer
from authz.audiences.registry import ResourceServers
from authz.certificates.revocation.options import revocation_options
from authz.cli.options import store_location_options, with_store
from authz.clients.directory import ClientDirectory
from authz.clients.model import jwk_for_certificate
from authz.context import ConfigurationError, check_crl_files, jwks_uri_fetcher, load_certificates
from authz.keys.signing import SigningKeys
from authz.logs import configure_logging, uvicorn_log_config
from authz.pki.development import PKI_CLIENT_DN, DevelopmentPKI, create_development_pki
from authz.proxy.options import proxy_options
from authz.settings import Settings
from authz.storage.base import RecordStore
from authz.storage.config import StoreConfig
from authz.tls import supervisor
from authz.tls.context import ServerTLSError, uvicorn_mtls_options, uvicorn_plain_options

if TYPE_CHECKING:
    from authz.metrics.listener import MetricsListener

__all__ = ["dev", "serve", "settings_from_options"]


def _settings(overrides: dict[str, Any]) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v not in (None, ())})
    except ValidationError as exc:
        raise click.ClickException(f"invalid settings: {'; '.join(_problem(e) for e in exc.errors())}") from None


def settings_from_options(options: dict[str, Any]) -> Settings:
    """The settings ``serve`` would run with: these options, then the ``AUTHZ_*`` variables
    (``authz explain`` reads the trust configuration this way)."""
    return _settings(options)


def _problem(error: Any) -> str:
    """One validation error in the words of the command line and the environment."""
    cause = (error.get("ctx") or {}).get("error")
    message = str(cause) if isinstance(cause, ValueError) else error["msg"]
    if not error["loc"]:  # a rule across settings: its message names the options
        return message
    name = str(error["loc"][0])
    option = _REPEATABLE_OPTIONS.get(name, f"--{name.replace('_', '-')}")
    return f"{option} (AUTHZ_{name.upper()}): {message}"


# Settings whose command-line option is repeated once per value, under a singular name.
_REPEATABLE_OPTIONS = {"trust_anchors": "--trust-anchor", "intermediates": "--intermediate", "crls": "--crl",
                       "trusted_proxies": "--trusted-proxy", "trusted_proxy_certs": "--trusted-proxy-cert",
                       "trusted_proxy_cas": "--trusted-proxy-ca"}


def run_server(settings: Settings, access_log: bool) -> None:
    """Check everything that can be checked before binding, then run uvicorn."""
    try:
        proxy_mode = settings.proxy_mode()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if settings.tls_cert is None and proxy_mode is None:
        raise click.ClickException("--tls-cert and --tls-key are required (or AUTHZ_TLS_CERT and AUTHZ_TLS_KEY), "
                                   "unless a proxy terminates TLS (--proxy-cert-header)")
    try:
        load_certificates(settings.trust_anchors, "trust_anchors")
        load_certificates(settings.intermediates, "intermediates")
        check_crl_files(settings.crls)
        jwks_uri_fetcher(settings)  # its CA file
        # Also runs the TLS self-test: refuse to start if client certificates cannot be
        # collected as RFC 8705 needs (see authz.tls.accept_any). Proxy mode without TLS:
        # plain HTTP from the trusted proxies.
        tls_options = (uvicorn_mtls_options(str(settings.tls_cert), str(settings.tls_key),
                                            settings.trust_anchors if settings.advertise_ca_names else (),
                                            resumption_config=settings.resumption_config())
                       if settings.tls_cert is not None and settings.tls_key is not None else uvicorn_plain_options())
    except (ConfigurationError, ServerTLSError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot load the server certificate or key: {exc}") from exc
    # The store too: one it cannot open (read-only file system, permission, disk full) would
    # fail every worker's start-up with a traceback. This creates the first signing key, and
    # logs so in the server's format.
    configure_logging(settings.log_level, settings.log_format)
    with_store(settings.store_config(), _load_signing_keys, create=True)
    if proxy_mode is not None and settings.issuer is None:
        click.secho("warning: behind a proxy, set --issuer to the public URL clients use: it is the tokens' iss "
                    "and the base of every endpoint in the metadata", fg="yellow", err=True)
    if not settings.trust_anchors:
        click.secho("warning: no --trust-anchor: tls_client_auth clients cannot authenticate", fg="yellow",
                    err=True)
    elif settings.tls_resumption == "tickets" and not settings.intermediates and proxy_mode is None:
        click.secho("warning: --tls-resumption tickets without --intermediate: a resumed TLS session carries the "
                    "client's certificate but not the intermediate CAs it sent, so tls_client_auth clients whose "
                    "chain needs an intermediate get a full handshake each time (log: tls_resumption_declined). "
                    "List those CAs with --intermediate to let them resume", fg="yellow", err=True)
    # Worker processes build their own app from the environment.
    os.environ.update(settings.to_environment())
    listener = _start_metrics_listener(settings) if settings.metrics_address is not None else None
    try:
        # uvicorn.run, but SIGHUP to the supervisor of several workers reloads them in place.
        supervisor.run(
            "authz.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            access_log=access_log,
            log_level=settings.log_level,
            log_config=uvicorn_log_config(settings.log_format),
            **tls_options,
        )
    finally:
        if listener is not None:
            listener.stop()
            listener.remove_directory()


def _start_metrics_listener(settings: Settings) -> MetricsListener:
    """The metrics listener of this process (``authz.metrics.listener``), serving before the
    workers start. The multiprocess directory is exported first: from here on, whatever
    imports prometheus-client, in this process or in a worker, counts into it."""
    from authz.metrics.multiprocess import create_multiprocess_directory

    directory = create_multiprocess_directory()
    from authz.metrics.listener import MetricsListener  # imports prometheus-client

    listener = MetricsListener(settings, directory)
    try:
        listener.start()
    except OSError as exc:
        listener.remove_directory()
        raise click.ClickException(f"--metrics-listen {settings.metrics_listen}: cannot listen there: "
                                   f"{exc.strerror or exc}") from None
    return listener


async def _load_signing_keys(store: RecordStore) -> None:
    await SigningKeys(store).load()


_PATH = click.Path(dir_okay=False, path_type=Path)


@click.command()
@click.option("--tls-cert", type=_PATH, help="Server certificate, PEM (env AUTHZ_TLS_CERT).")
@click.option("--tls-key", type=_PATH, help="Server private key, PEM (env AUTHZ_TLS_KEY).")
@click.option("--trust-anchor", "trust_anchors", multiple=True, type=_PATH,
              help="CA certificate(s) for tls_client_auth, PEM, repeatable (env AUTHZ_TRUST_ANCHORS, comma-separated).")
@click.option("--intermediate", "intermediates", multiple=True, type=_PATH,
              help="Intermediate CA certificates clients may omit (env AUTHZ_INTERMEDIATES).")
@click.option("--watch-files", is_flag=True, default=None,
              help="Reload the server certificate and key, the trust anchors and the intermediates when their files "
                   "change (a stat of each every 2 s), as SIGHUP does: for certificates renewed by cert-manager or a "
                   "Kubernetes Secret (env AUTHZ_WATCH_FILES). --crl files are always watched.")
@click.option("--advertise-ca-names", is_flag=True, default=None,
              help="Name the trust anchors in the TLS CertificateRequest, so that clients holding several "
                   "certificates pick one the anchors issued. Off by default because with it, Go clients "
                   "(tls.Config.Certificates) send no self-signed certificate: their self_signed_tls_client_auth "
                   "fails. Not with --proxy-cert-header (env AUTHZ_ADVERTISE_CA_NAMES).")
@click.option("--host", help="Bind address (env AUTHZ_HOST, default 127.0.0.1).")
@click.option("--port", type=int, help="Port (env AUTHZ_PORT, default 8443).")
@store_location_options(environment=False)
@click.option("--store-max-stale", type=float,
              help="Seconds cached clients stay in use after losing Redis's change feed (env "
                   "AUTHZ_STORE_MAX_STALE, default 60).")
@click.option("--issuer", help="Issuer URL (env AUTHZ_ISSUER, default https://HOST:PORT).")
@click.option("--audience", help="aud of access tokens (env AUTHZ_AUDIENCE, default the issuer).")
@click.option("--mtls-alias-base",
              help="Base URL of an mTLS host for mtls_endpoint_aliases (env AUTHZ_MTLS_ALIAS_BASE).")
@click.option("--workers", type=int, help="Worker processes (env AUTHZ_WORKERS, default 1).")
@click.option("--tls-handshake-timeout", type=float,
              help="Seconds a client may take to complete its TLS handshake (env AUTHZ_TLS_HANDSHAKE_TIMEOUT, "
                   "default 5).")
@click.option("--max-connections", type=int,
              help="Connections a worker holds, handshaking or open, before it stops accepting new ones "
                   "(env AUTHZ_MAX_CONNECTIONS, default 1000).")
@click.option("--tls-resumption", type=click.Choice(["off", "tickets"]),
              help="TLS session resumption: 'tickets' lets clients resume with stateless session tickets (no "
                   "server memory per session; the client certificate is still checked on every request); "
                   "see the README (env AUTHZ_TLS_RESUMPTION, default off).")
@click.option("--tls-ticket-key-rotation", type=float, metavar="SECONDS",
              help="Seconds between two session ticket keys, also a ticket's lifetime; older tickets get a full "
                   "handshake (env AUTHZ_TLS_TICKET_KEY_ROTATION, default 3600).")
@proxy_options(_PATH, environment=True)
@revocation_options(_PATH)
@click.option("--jwks-uri-allow", "jwks_uri_allow", multiple=True, metavar="CIDR",
              help="A network a client's jwks_uri may lead to although it is not public (loopback, private, "
                   "link-local...), repeatable (env AUTHZ_JWKS_URI_ALLOW, comma-separated).")
@click.option("--jwks-uri-ca", type=_PATH,
              help="CA certificates (PEM) that verify jwks_uri servers, instead of the system's (env "
                   "AUTHZ_JWKS_URI_CA).")
@click.option("--jwks-uri-timeout", type=float,
              help="Seconds one jwks_uri fetch may take in all (env AUTHZ_JWKS_URI_TIMEOUT, default 5).")
@click.option("--jwks-uri-max-bytes", type=int,
              help="Largest jwks_uri answer read (env AUTHZ_JWKS_URI_MAX_BYTES, default 262144).")
@click.option("--jwks-uri-max-age", type=float,
              help="Seconds a fetched set is used when its answer has no Cache-Control max-age (env "
                   "AUTHZ_JWKS_URI_MAX_AGE, default 3600).")
@click.option("--jwks-uri-refresh-cooldown", type=float,
              help="Seconds between two fetches of one client's jwks_uri, however many unknown certificates "
                   "arrive (env AUTHZ_JWKS_URI_REFRESH_COOLDOWN, default 60).")
@click.option("--refuse-expired-certificates", is_flag=True, default=None,
              help="The registration API refuses self-signed certificates that have expired, instead of a warning "
                   "(env AUTHZ_REFUSE_EXPIRED_CERTIFICATES).")
@click.option("--metrics-listen", metavar="HOST:PORT",
              help="Serve /metrics, /healthz and /readyz in plain HTTP on this address, e.g. 127.0.0.1:9464 "
                   "(env AUTHZ_METRICS_LISTEN; default: off).")
@click.option("--metrics-client-labels", type=int,
              help="Distinct clients each worker labels authz_tokens_issued_total with; the rest count as "
                   "client_id=\"other\" (env AUTHZ_METRICS_CLIENT_LABELS, default 100).")
@click.option("--health-on-main-port/--no-health-on-main-port", default=None,
              help="Also answer /healthz and /readyz on the main port (env AUTHZ_HEALTH_ON_MAIN_PORT, default on).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", type=click.Choice(["json", "console"]))
@click.option("--access-log", is_flag=True, help="Log every request (costs throughput).")
def serve(access_log: bool, **options: Any) -> None:
    """Run the authorization server over TLS, requesting client certificates."""
    run_server(_settings(options), access_log)


@click.command()
@click.option("--dir", "directory", default=".authz-dev", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Where the dev PKI and store live.")
@click.option("--port", default=8443, show_default=True, type=int)
def dev(directory: Path, port: int) -> None:
    """Quick start: development PKI, two demo clients, the server on https://127.0.0.1:PORT."""
    pki = DevelopmentPKI(directory / "pki")
    if not pki.exists():
        create_development_pki(pki.directory)
        click.secho(f"created a development PKI in {pki.directory} (never use it in production)",
                    fg="yellow", err=True)
    data_dir = directory / "data"
    from cryptography import x509

    self_signed = x509.load_pem_x509_certificate(pki.self_signed_cert.read_bytes())

    # The sample API (authz sample-api, port 8444) as a resource server: the demo clients'
    # tokens are for it (aud), and for nothing else.
    sample_api = "https://127.0.0.1:8444"

    async def register(store: RecordStore) -> None:
        await ResourceServers(store).register(ResourceServer(sample_api, ("accounts:read", "accounts:write"),
                                                             frozenset()))
        directory_ = ClientDirectory(store)
        await directory_.register({
            "client_id": "demo-pki", "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": PKI_CLIENT_DN, "scope": "accounts:read accounts:write",
            "allowed_resources": [sample_api],
        }, replace=True, actor="authz-dev")
        await directory_.register({
            "client_id": "demo-self-signed", "token_endpoint_auth_method": "self_signed_tls_client_auth",
            "jwks": {"keys": [jwk_for_certificate(self_signed)]}, "scope": "accounts:read",
            "allowed_resources": [sample_api],
        }, replace=True, actor="authz-dev")

    with_store(StoreConfig(data_dir=data_dir), register, create=True)
    url = f"https://127.0.0.1:{port}/token"
    d = pki.directory
    click.echo(
        "\nDemo clients registered. Get a certificate-bound token:\n\n"
        f"  curl --cacert {d}/ca.crt --cert {d}/client.crt --key {d}/client.key \\\n"
        f"       -d grant_type=client_credentials -d client_id=demo-pki {url}\n\n"
        f"  curl --cacert {d}/ca.crt --cert {d}/selfsigned.crt --key {d}/selfsigned.key \\\n"
        f"       -d grant_type=client_credentials -d client_id=demo-self-signed {url}\n\n"
        f"Metadata: curl --cacert {d}/ca.crt https://127.0.0.1:{port}/.well-known/oauth-authorization-server\n"
        f"Tokens are for the sample API ({sample_api}): authz sample-api --audience {sample_api} ...\n"
        f"The store is {data_dir.resolve()}: authz clients list --data-dir {data_dir}\n"
    )
    settings = _settings({
        "tls_cert": pki.server_cert, "tls_key": pki.server_key, "trust_anchors": [pki.ca_cert],
        "data_dir": data_dir, "port": port, "log_format": "console",
    })
    run_server(settings, access_log=False)
