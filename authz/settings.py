"""Server settings: command-line options and ``AUTHZ_*`` environment variables, one model.

pydantic-settings validates every value at start-up and names the offending setting, so a
typo fails before the server accepts a connection. Worker processes (``--workers N``) read
the same environment, which ``authz serve`` fills from its options.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from authz.certificates.revocation.config import DEFAULT_CRL_MAX_BYTES, RevocationConfig
from authz.clients.jwks_uri.cache import DEFAULT_REFRESH_COOLDOWN
from authz.clients.jwks_uri.destinations import parse_allow_list
from authz.clients.jwks_uri.fetcher import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT,
    MAX_MAX_AGE,
    MIN_MAX_AGE,
)
from authz.proxy.mode import ProxyMode, build_proxy_mode
from authz.storage.config import StoreConfig, StoreLocationError
from authz.tls.listener import DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_CONNECTIONS
from authz.tls.resumption import (
    DEFAULT_TICKET_KEY_ROTATION,
    MAX_TICKET_KEY_ROTATION,
    MIN_TICKET_KEY_ROTATION,
    ResumptionConfig,
)

__all__ = ["Settings", "parse_listen_address"]


def parse_listen_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) as (host, port); ``ValueError`` saying why not."""
    host, separator, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("write an IPv6 address in brackets: [::1]:9464")
    if not separator or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, e.g. 127.0.0.1:9464, not {value!r}")
    return host, int(port)


def _path_list(value: object) -> object:
    # "a.pem,b.pem" or "a.pem:b.pem" from the environment; a list from Python.
    if isinstance(value, str):
        parts = value.replace(os.pathsep, ",").split(",")
        return [p.strip() for p in parts if p.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTHZ_", extra="forbid")

    data_dir: Path = Field(Path("authz-data"), description="where the embedded store keeps its file")
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=1, le=65535)
    issuer: str | None = Field(None, description="issuer URL; default https://HOST:PORT")
    tls_cert: Path | None = Field(None, description="server certificate (PEM, may include the chain)")
    tls_key: Path | None = Field(None, description="server private key (PEM)")
    trust_anchors: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="PEM files of CAs that issue tls_client_auth certificates"
    )
    intermediates: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="PEM files of intermediate CAs clients may omit"
    )
    advertise_ca_names: bool = Field(
        False, description="name the trust anchors in the TLS CertificateRequest, so that clients holding several "
                           "certificates pick one they issued; clients that filter by the names (Go) then send no "
                           "self-signed certificate"
    )
    watch_files: bool = Field(
        False, description="reload the server certificate and key, trust anchors and intermediates when their files "
                           "change, as SIGHUP does (a stat of each every 2 s)"
    )
    audience: str | None = Field(None, description="aud of access tokens; default: the issuer")
    access_token_lifetime: int = Field(600, ge=10, le=86_400, description="seconds")
    mtls_alias_base: str | None = Field(
        None, description="base URL of an mTLS-only host; publishes mtls_endpoint_aliases (RFC 8705 §5)"
    )
    workers: int = Field(1, ge=1, le=64)
    tls_handshake_timeout: float = Field(
        DEFAULT_HANDSHAKE_TIMEOUT, gt=0, le=120, description="seconds a client may take to complete a TLS handshake"
    )
    max_connections: int = Field(
        DEFAULT_MAX_CONNECTIONS, ge=1, le=1_000_000,
        description="connections a worker holds (handshaking or open) before it stops accepting",
    )
    tls_resumption: Literal["off", "tickets"] = Field(
        "off", description="TLS session resumption: off, or stateless session tickets (authz.tls.resumption)")
    tls_ticket_key_rotation: float = Field(
        DEFAULT_TICKET_KEY_ROTATION, ge=MIN_TICKET_KEY_ROTATION, le=MAX_TICKET_KEY_ROTATION,
        description="seconds between two session ticket keys; also the lifetime of a ticket")
    store: str = Field("", description="empty: the embedded SQLite file in data_dir; or a Redis URL (redis://, "
                       "rediss://, redis+cluster://, redis+sentinel://)")
    store_password_file: Path | None = Field(None, description="file holding the Redis password")
    store_tls_ca: Path | None = Field(None, description="CA (PEM) of the Redis server's certificate (rediss://)")
    store_tls_cert: Path | None = Field(None, description="client certificate (PEM) for Redis (rediss://)")
    store_tls_key: Path | None = Field(None, description="its private key (PEM)")
    store_prefix: str = Field("authz", pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                              description="prefix of every Redis key: several deployments can share one Redis")
    store_timeout: float = Field(2.0, gt=0, le=60, description="seconds a Redis command may take")
    store_max_stale: float = Field(60.0, ge=0, le=86_400,
                                   description="seconds caches stay trusted after losing Redis's change feed")
    store_wait_replicas: int | None = Field(None, ge=0, le=16,
                                            description="Redis replicas that must hold a write before it is "
                                                        "acknowledged; default 1 with Sentinel, else 0")
    store_poll_interval: float = Field(1.0, gt=0, le=60, description="seconds between cross-process cache checks")
    proxy_cert_header: Literal["rfc9440", "nginx", "haproxy", "apache", "envoy", "traefik", "aws-alb"] | None = Field(
        None, description="take the client certificate from this proxy's header (proxy mode)"
    )
    proxy_cert_header_name: str | None = Field(None, description="the header's name, where the proxy lets you choose")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="addresses/CIDRs of proxies whose certificate header is honoured"
    )
    trusted_proxy_certs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="client certificates (PEM) of proxies that authenticate with their own"
    )
    trusted_proxy_cas: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="CAs (PEM) that issue the client certificates of trusted proxies"
    )
    revocation_check: Literal["off", "crl", "ocsp", "crl+ocsp"] = Field(
        "off", description="check tls_client_auth certificates (leaf and intermediates) for revocation"
    )
    revocation_policy: Literal["hard-fail", "soft-fail"] = Field(
        "hard-fail", description="without a fresh answer: refuse the client (hard-fail) or accept it and log"
    )
    crls: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="CRL files (PEM or DER), reloaded when they change"
    )
    revocation_fetch_timeout: float = Field(3.0, gt=0, le=60,
                                            description="seconds a CRL or OCSP fetch may take in all")
    revocation_max_wait: float = Field(1.0, ge=0, le=30,
                                       description="seconds a token request may wait for revocation data")
    crl_grace: float = Field(0.0, ge=0, le=30 * 86_400,
                             description="seconds past its nextUpdate a CRL is still used")
    crl_max_bytes: int = Field(DEFAULT_CRL_MAX_BYTES, ge=1024, le=256 * 1024 * 1024,
                               description="largest CRL fetched from a distribution point")
    ocsp_nonce: bool = Field(False, description="send a nonce in OCSP requests")
    jwks_uri_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="networks (CIDR) a client's jwks_uri may lead to besides public addresses"
    )
    jwks_uri_ca: Path | None = Field(None, description="CA file (PEM) for jwks_uri servers; default: the system's CAs")
    jwks_uri_timeout: float = Field(DEFAULT_TIMEOUT, gt=0, le=60,
                                    description="seconds one jwks_uri fetch may take in all")
    jwks_uri_max_bytes: int = Field(DEFAULT_MAX_BYTES, ge=1024, le=16 * 1024 * 1024,
                                    description="largest jwks_uri answer read, in bytes")
    jwks_uri_max_age: float = Field(DEFAULT_MAX_AGE, ge=MIN_MAX_AGE, le=MAX_MAX_AGE,
                                    description="seconds a fetched set is used when its answer has no max-age")
    # Not 0: it is what bounds the fetches a token request with a made-up certificate can cause.
    jwks_uri_refresh_cooldown: float = Field(DEFAULT_REFRESH_COOLDOWN, ge=0.1, le=86_400,
                                             description="seconds between two fetches of one client's jwks_uri")
    refuse_expired_certificates: bool = Field(
        False, description="the registration API refuses self-signed certificates that have expired (else: a warning)")
    metrics_listen: str | None = Field(
        None, description="HOST:PORT of the plain-HTTP listener for /metrics, /healthz and /readyz; off by default")
    metrics_client_labels: int = Field(
        100, ge=0, le=10_000,
        description="distinct clients a worker labels authz_tokens_issued_total with; the rest count as 'other'")
    health_on_main_port: bool = Field(True, description="also answer /healthz and /readyz on the main port")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    _split_anchors = field_validator("trust_anchors", "intermediates", "trusted_proxy_certs", "trusted_proxy_cas",
                                     "crls", mode="before")(_path_list)

    @field_validator("trusted_proxies", "jwks_uri_allow", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value

    @field_validator("jwks_uri_allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        parse_allow_list(value)  # ValueError naming the entry
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _listen_address(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in ("", "off"):
            return None
        parse_listen_address(value)
        return value.strip()

    @field_validator("issuer", "mtls_alias_base")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("https://") or "?" in value or "#" in value:
            raise ValueError("must be an https URL without query or fragment (RFC 8414 §2)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _key_with_cert(self) -> Settings:
        if self.tls_cert is not None and self.tls_key is None:
            raise ValueError("--tls-key (AUTHZ_TLS_KEY) is required with --tls-cert (AUTHZ_TLS_CERT)")
        if self.tls_key is not None and self.tls_cert is None:
            raise ValueError("--tls-cert (AUTHZ_TLS_CERT) is required with --tls-key (AUTHZ_TLS_KEY)")
        return self

    @model_validator(mode="after")
    def _proxy_mode(self) -> Settings:
        proxy_options = self.proxy_cert_header_name or self.trusted_proxies or self.trusted_proxy_certs
        if self.proxy_cert_header is None and (proxy_options or self.trusted_proxy_cas):
            raise ValueError("--proxy-cert-header (AUTHZ_PROXY_CERT_HEADER) is required with the other proxy options")
        return self

    @model_validator(mode="after")
    def _ca_names_from_own_tls_and_anchors(self) -> Settings:
        if not self.advertise_ca_names:
            return self
        if self.proxy_cert_header is not None:
            # Clients see the proxy's CertificateRequest; this server's TLS listener, if any,
            # serves the proxies, whose certificates the trust anchors do not issue.
            raise ValueError("--advertise-ca-names (AUTHZ_ADVERTISE_CA_NAMES) applies to this server's own TLS "
                             "listener, not behind a proxy (--proxy-cert-header): the proxy's configuration decides "
                             "which CA names clients are sent")
        if not self.trust_anchors:
            raise ValueError("--advertise-ca-names (AUTHZ_ADVERTISE_CA_NAMES) needs --trust-anchor "
                             "(AUTHZ_TRUST_ANCHORS): the names advertised are the trust anchors' subjects")
        return self

    @model_validator(mode="after")
    def _resumption_for_direct_tls_only(self) -> Settings:
        if self.tls_resumption != "off" and self.proxy_cert_header is not None:
            # The proxy resumes its clients' sessions itself. Between the proxy and this server, a
            # ticket is checked against the clients' CAs, not the proxies', and a resumed session
            # carries the proxy's leaf alone: a proxy whose certificate needs an intermediate
            # would lose its trust, and with it every client's certificate.
            raise ValueError("--tls-resumption (AUTHZ_TLS_RESUMPTION) applies to this server's own clients over "
                             "direct TLS, not behind a proxy (--proxy-cert-header): the proxy resumes its clients' "
                             "sessions itself")
        return self

    @model_validator(mode="after")
    def _crl_files_need_crl_checking(self) -> Settings:
        if self.crls and self.revocation_check not in ("crl", "crl+ocsp"):
            raise ValueError("--crl (AUTHZ_CRLS) needs --revocation-check crl or crl+ocsp (AUTHZ_REVOCATION_CHECK)")
        return self

    @model_validator(mode="after")
    def _store_location(self) -> Settings:
        try:
            self.store_config().check()
        except StoreLocationError as exc:
            raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _metrics_apart(self) -> Settings:
        address = self.metrics_address
        wildcard = {"0.0.0.0", "::"}  # noqa: S104 - addresses compared, not bound
        if address is not None and address[1] == self.port and (
                address[0] == self.host or wildcard & {address[0], self.host}):
            raise ValueError("--metrics-listen (AUTHZ_METRICS_LISTEN) must not be the main port: metrics are "
                             "served in plain HTTP on an address of their own")
        return self

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        return None if self.metrics_listen is None else parse_listen_address(self.metrics_listen)

    def store_config(self) -> StoreConfig:
        return StoreConfig(url=self.store, data_dir=self.data_dir, password_file=self.store_password_file,
                           tls_ca=self.store_tls_ca, tls_cert=self.store_tls_cert, tls_key=self.store_tls_key,
                           prefix=self.store_prefix, timeout=self.store_timeout,
                           wait_replicas=self.store_wait_replicas)

    def proxy_mode(self) -> ProxyMode | None:
        """Proxy mode as configured (None: direct TLS); ``ValueError`` naming the option."""
        if self.proxy_cert_header is None:
            return None
        return build_proxy_mode(self.proxy_cert_header, header=self.proxy_cert_header_name,
                                trusted_proxies=self.trusted_proxies, trusted_proxy_certs=self.trusted_proxy_certs,
                                trusted_proxy_cas=self.trusted_proxy_cas)

    def resumption_config(self) -> ResumptionConfig:
        return ResumptionConfig(self.tls_resumption, self.tls_ticket_key_rotation)

    def revocation_config(self) -> RevocationConfig | None:
        """Revocation checking as configured, or None when it is off."""
        if self.revocation_check == "off":
            return None
        return RevocationConfig(mode=self.revocation_check, policy=self.revocation_policy,
                                crl_files=tuple(self.crls), fetch_timeout=self.revocation_fetch_timeout,
                                max_wait=self.revocation_max_wait, crl_grace=self.crl_grace,
                                crl_max_bytes=self.crl_max_bytes, ocsp_nonce=self.ocsp_nonce)

    @property
    def issuer_url(self) -> str:
        if self.issuer:
            return self.issuer
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def token_audience(self) -> str:
        return self.audience or self.issuer_url

    def to_environment(self) -> dict[str, str]:
        """The ``AUTHZ_*`` variables that reproduce these settings in a worker process."""
        env: dict[str, str] = {}
        for name, value in self.model_dump(exclude_none=True).items():
            if isinstance(value, list):
                env[f"AUTHZ_{name.upper()}"] = ",".join(str(v) for v in value)
            else:
                env[f"AUTHZ_{name.upper()}"] = str(value)
        return env
