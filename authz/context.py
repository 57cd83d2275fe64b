"""Everything a running server shares between requests, built once from the settings."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from authz.audiences.model import ResourceServer
from authz.audiences.registry import ResourceServers
from authz.certificates.chain import ChainValidator
from authz.clients.directory import ClientDirectory
from authz.keys.signing import SigningKeys
from authz.metrics import REVOCATION_DATA
from authz.metrics.health import CheckResult, Readiness, revocation_check, store_check
from authz.oauth.metadata import build_metadata
from authz.oauth.server import MutualTLSAuthorizationServer
from authz.registration.constants import REGISTRATION_PATH, REGISTRATION_SCOPE
from authz.settings import Settings
from authz.storage.base import RecordStore, StorageError
from authz.storage.changes import ChangeFeed
from authz.tokens.access_token import AccessTokenIssuer
from authz.tokens.revocation import RevocationList
from authz.tokens.verification import AccessTokenVerifier

if TYPE_CHECKING:
    from authz.metrics.instruments import ServerMetrics

__all__ = ["ConfigurationError", "ServerContext", "load_certificates", "open_store"]


class ConfigurationError(ValueError):
    """A setting points at something unusable; the message names the setting and the file."""


def load_certificates(paths: list[Path], setting: str) -> list[x509.Certificate]:
    certificates: list[x509.Certificate] = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"{setting}: cannot read {path}: {exc.strerror}") from exc
        try:
            found = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise ConfigurationError(f"{setting}: {path} holds no PEM certificate ({exc})") from exc
        if setting == "trust_anchors":
            for certificate in found:
                _require_ca(certificate, path)
        certificates.extend(found)
    return certificates


def _require_ca(certificate: x509.Certificate, path: Path) -> None:
    """A trust anchor must be a CA certificate: with a leaf as anchor, whoever holds that
    leaf's key passes tls_client_auth as any client whose subject it carries."""
    try:
        is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ConfigurationError(
            f"trust_anchors: {path} holds a certificate that is not a CA ({certificate.subject.rfc4514_string()}: "
            "no basicConstraints CA:TRUE). Configure the CA that issues client certificates; to accept one "
            "client's own certificate, register it with self_signed_tls_client_auth."
        )


def open_store(settings: Settings) -> RecordStore:
    """The configured store, not yet open."""
    return settings.store_config().build()


@dataclass
class ServerContext:
    settings: Settings
    store: RecordStore
    changes: ChangeFeed
    clients: ClientDirectory
    keys: SigningKeys
    validator: ChainValidator
    server: MutualTLSAuthorizationServer
    metadata: dict[str, Any]
    token_verifier: AccessTokenVerifier
    revocations: RevocationList
    resource_servers: ResourceServers
    readiness: Readiness
    # None while metrics are off (no --metrics-listen): nothing is counted then.
    metrics: ServerMetrics | None = None

    @property
    def issuer(self) -> str:
        return self.settings.issuer_url

    @classmethod
    def build(cls, settings: Settings, store: RecordStore | None = None) -> ServerContext:
        store = store or open_store(settings)
        metrics = None
        if settings.metrics_address is not None:
            # Imported here: prometheus-client must not be imported before authz serve has set
            # PROMETHEUS_MULTIPROC_DIR (authz.metrics).
            from authz.metrics.instruments import install
            from authz.metrics.store import InstrumentedStore

            metrics = install(settings.metrics_client_labels)
            store = InstrumentedStore(store, metrics)
        changes = store.change_feed(poll_interval=settings.store_poll_interval, max_stale=settings.store_max_stale)
        keys = SigningKeys(store, changes)
        # The registration API is a resource server of this server's own (authz.registration).
        registration_api = ResourceServer(settings.issuer_url + REGISTRATION_PATH, (REGISTRATION_SCOPE,),
                                          frozenset())
        resource_servers = ResourceServers(store, changes, builtin=(registration_api,))
        validator = ChainValidator(
            load_certificates(settings.trust_anchors, "trust_anchors"),
            load_certificates(settings.intermediates, "intermediates"),
        )
        issuer = AccessTokenIssuer(
            keys=keys,
            issuer=settings.issuer_url,
            audience=settings.token_audience,
            lifetime=settings.access_token_lifetime,
        )
        return cls(
            settings=settings,
            store=store,
            changes=changes,
            clients=ClientDirectory(store, changes),
            keys=keys,
            validator=validator,
            server=MutualTLSAuthorizationServer(issuer, validator, resource_servers),
            resource_servers=resource_servers,
            metadata=build_metadata(settings.issuer_url, settings.mtls_alias_base),
            token_verifier=AccessTokenVerifier(keys, settings.issuer_url),
            revocations=RevocationList(store),
            readiness=Readiness({"store": store_check(store), "signing_key": _signing_key_check(keys),
                                 "revocation_data": revocation_check(REVOCATION_DATA)}),
            metrics=metrics,
        )

    async def start(self) -> None:
        await self.store.open()
        try:
            # Subscribed first: a key rotated between the load and the subscription is not missed.
            await self.changes.start()
            await self.keys.load()
            await self.resource_servers.load()
            if self.metrics is not None:
                self.metrics.signing_key_loaded.set(1)
                self.metrics.start()
        except BaseException:
            await self.changes.stop()
            # An open store would outlive the failed start-up (and its thread the process).
            with contextlib.suppress(StorageError):  # the failure to report is the first one
                await self.store.close()
            raise

    async def stop(self) -> None:
        if self.metrics is not None:
            self.metrics.signing_key_loaded.set(0)
            await self.metrics.stop()  # its last counts flushed
        self.validator.close()
        await self.changes.stop()
        await self.keys.close()
        await self.resource_servers.close()
        await self.store.close()


def _signing_key_check(keys: SigningKeys) -> Callable[[], Awaitable[CheckResult]]:
    async def check() -> CheckResult:
        return CheckResult(True, keys.active.kid) if keys.loaded else CheckResult(False, "no signing key loaded")

    return check
