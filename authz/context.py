"""Everything a running server shares between requests, built once from the settings."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from authz.audiences.model import ResourceServer
from authz.audiences.registry import ResourceServers
from authz.certificates.chain import ChainValidator
from authz.certificates.revocation.checker import RevocationChecker
from authz.clients.directory import ClientDirectory
from authz.clients.jwks_uri.cache import FetchedCertificates
from authz.clients.jwks_uri.destinations import AddressPolicy, parse_allow_list
from authz.clients.jwks_uri.fetcher import JwksFetcher, tls_context
from authz.keys.signing import SigningKeys
from authz.metrics import REVOCATION_DATA
from authz.metrics.health import CheckResult, Readiness, revocation_check, store_check
from authz.oauth.metadata import build_metadata
from authz.oauth.server import MutualTLSAuthorizationServer
from authz.registration.constants import REGISTRATION_PATH, REGISTRATION_SCOPE
from authz.reload import PreparedChange, ReloadHook, ReloadRefused, reload_hooks
from authz.settings import Settings
from authz.storage.base import RecordStore, StorageError
from authz.storage.changes import ChangeFeed
from authz.tls.resumption import configure_known_cas
from authz.tokens.access_token import AccessTokenIssuer
from authz.tokens.revocation import RevocationList
from authz.tokens.verification import AccessTokenVerifier

if TYPE_CHECKING:
    from authz.metrics.instruments import ServerMetrics

__all__ = ["ConfigurationError", "ServerContext", "chain_validator", "check_crl_files", "crl_reload_hook",
           "jwks_uri_fetcher", "load_certificates", "open_store", "trust_reload_hook"]


class ConfigurationError(ValueError):
    """A setting points at something unusable; the message names the setting and the file."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


def load_certificates(paths: list[Path], setting: str) -> list[x509.Certificate]:
    certificates: list[x509.Certificate] = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"{setting}: cannot read {path}: {exc.strerror}", path) from exc
        try:
            found = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise ConfigurationError(f"{setting}: {path} holds no PEM certificate ({exc})", path) from exc
        if setting == "trust_anchors":
            for certificate in found:
                _require_ca(certificate, path)
        certificates.extend(found)
    return certificates


def check_crl_files(paths: list[Path]) -> None:
    """Each --crl file must be a readable CRL (at start: a typo fails before serving)."""
    from authz.certificates.revocation.checker import read_crl_file
    from authz.certificates.revocation.crl import CRLUnusable

    for path in paths:
        try:
            read_crl_file(Path(path))
        except OSError as exc:
            raise ConfigurationError(f"crls: cannot read {path}: {exc.strerror}") from exc
        except CRLUnusable as exc:
            raise ConfigurationError(f"crls: {path} is not a usable CRL ({exc})") from exc


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
            "client's own certificate, register it with self_signed_tls_client_auth.", path
        )


def jwks_uri_fetcher(settings: Settings) -> JwksFetcher:
    """The fetcher of clients' jwks_uri, as configured; ``ConfigurationError`` for a CA file it
    cannot load."""
    try:
        context = tls_context(settings.jwks_uri_ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"jwks_uri_ca: cannot load {settings.jwks_uri_ca} as PEM CA certificates: {exc}") \
            from exc
    return JwksFetcher(AddressPolicy(parse_allow_list(settings.jwks_uri_allow)), ssl_context=context,
                       timeout=settings.jwks_uri_timeout, max_bytes=settings.jwks_uri_max_bytes,
                       default_max_age=settings.jwks_uri_max_age)


def chain_validator(settings: Settings) -> ChainValidator:
    """The validator of ``tls_client_auth`` chains that these settings configure: the one the
    server runs, and the one ``authz explain`` runs."""
    return ChainValidator(load_certificates(settings.trust_anchors, "trust_anchors"),
                          load_certificates(settings.intermediates, "intermediates"))


def trust_reload_hook(settings: Settings, validator: ChainValidator,
                      on_replaced: Callable[[], None] | None = None) -> ReloadHook:
    """The reload hook (``authz.reload``) that reads the trust anchors and intermediates again
    from the same files and puts them in ``validator`` (then calls ``on_replaced``: revocation
    checking learns the new CAs)."""

    def prepare() -> PreparedChange | None:
        try:
            anchors = load_certificates(settings.trust_anchors, "trust_anchors")
            intermediates = load_certificates(settings.intermediates, "intermediates")
        except ConfigurationError as exc:
            raise ReloadRefused(exc.path, str(exc)) from exc
        if _ders(anchors) == _ders(validator.anchors) and _ders(intermediates) == _ders(validator.intermediates):
            return None
        summary = {"anchors": len(anchors), "intermediates": len(intermediates),
                   "anchors_added": _subjects(anchors, validator.anchors),
                   "anchors_removed": _subjects(validator.anchors, anchors)}

        def commit() -> None:
            validator.replace_trust(anchors, intermediates)
            if on_replaced is not None:
                on_replaced()

        return PreparedChange(commit, summary)

    return prepare


def crl_reload_hook(checker: RevocationChecker) -> ReloadHook:
    """The reload hook (``authz.reload``) of the --crl files: a file that changed must be a
    usable CRL (else the whole reload is refused, naming it), and is loaded at once."""
    from authz.certificates.revocation.checker import read_crl_file
    from authz.certificates.revocation.crl import CRLUnusable

    def prepare() -> PreparedChange | None:
        changed = checker.files_changed()
        if not changed:
            return None
        for path in changed:
            try:
                read_crl_file(path)
            except OSError as exc:
                raise ReloadRefused(path, f"cannot read {path}: {exc.strerror}") from exc
            except CRLUnusable as exc:
                raise ReloadRefused(path, f"{path} is not a usable CRL ({exc})") from exc
        return PreparedChange(checker.reload_files, {"crls_changed": [str(p) for p in changed]})

    return prepare


def _ders(certificates: Sequence[x509.Certificate]) -> list[bytes]:
    return [c.public_bytes(Encoding.DER) for c in certificates]


def _subjects(these: Sequence[x509.Certificate], without: Sequence[x509.Certificate]) -> list[str]:
    """Subjects of the certificates in ``these`` and not in ``without``."""
    others = set(_ders(without))
    return [c.subject.rfc4514_string() for c in these if c.public_bytes(Encoding.DER) not in others]


def _share_trust_with_tls(validator: ChainValidator) -> None:
    """Tell the TLS layer which CA certificates the validator has: a resumed TLS session carries
    the client's leaf only, so a session ticket resumes only if the server has every CA
    certificate its client sent (``authz.tls.resumption``)."""
    configure_known_cas([*_ders(validator.anchors), *_ders(validator.intermediates)])


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
    jwks_uri_certificates: FetchedCertificates
    readiness: Readiness
    # Revocation checking of client certificates (None: off); not the tokens' (revocations).
    certificate_revocation: RevocationChecker | None = None
    # None while metrics are off (no --metrics-listen): nothing is counted then.
    metrics: ServerMetrics | None = None
    _stop_reloading: list[Callable[[], None]] = field(default_factory=list)

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
        validator = chain_validator(settings)
        _share_trust_with_tls(validator)
        revocation_config = settings.revocation_config()
        certificate_revocation = RevocationChecker(revocation_config) if revocation_config is not None else None
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
            server=MutualTLSAuthorizationServer(issuer, validator, resource_servers, certificate_revocation),
            resource_servers=resource_servers,
            metadata=build_metadata(settings.issuer_url, settings.mtls_alias_base),
            token_verifier=AccessTokenVerifier(keys, settings.issuer_url),
            revocations=RevocationList(store),
            certificate_revocation=certificate_revocation,
            jwks_uri_certificates=FetchedCertificates(jwks_uri_fetcher(settings),
                                                      refresh_cooldown=settings.jwks_uri_refresh_cooldown),
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
            revocation = self.certificate_revocation
            if revocation is not None:
                await revocation.start(self.validator.known_cas())
                if revocation.config.crl_files:
                    # SIGHUP reloads the --crl files at once (the file watcher also picks them up).
                    self._stop_reloading.append(reload_hooks.register("crls", crl_reload_hook(revocation)))
            # SIGHUP reloads the trust material (authz.reload); also in proxy mode, without TLS.
            self._stop_reloading.append(reload_hooks.register(
                "trust_anchors", trust_reload_hook(self.settings, self.validator, on_replaced=self._trust_replaced),
                files=[*self.settings.trust_anchors, *self.settings.intermediates]))
            if self.metrics is not None:
                self.metrics.signing_key_loaded.set(1)
                self.metrics.start()
            if self.settings.watch_files:  # last: nothing after it can fail and leave it running
                # The --crl files need none of this: the revocation checker watches them itself.
                watching = asyncio.create_task(reload_hooks.watch(), name="authz-watch-files")

                def stop_watching() -> None:
                    watching.cancel()

                self._stop_reloading.append(stop_watching)
        except BaseException:
            await self.changes.stop()
            # An open store would outlive the failed start-up (and its thread the process).
            with contextlib.suppress(StorageError):  # the failure to report is the first one
                await self.store.close()
            raise

    def _trust_replaced(self) -> None:
        _share_trust_with_tls(self.validator)
        if self.certificate_revocation is not None:
            self.certificate_revocation.trust_replaced(self.validator.known_cas())

    async def stop(self) -> None:
        while self._stop_reloading:
            self._stop_reloading.pop()()
        if self.metrics is not None:
            self.metrics.signing_key_loaded.set(0)
            await self.metrics.stop()  # its last counts flushed
        self.validator.close()
        if self.certificate_revocation is not None:
            await self.certificate_revocation.close()
        await self.jwks_uri_certificates.aclose()
        await self.changes.stop()
        await self.keys.close()
        await self.resource_servers.close()
        await self.store.close()


def _signing_key_check(keys: SigningKeys) -> Callable[[], Awaitable[CheckResult]]:
    async def check() -> CheckResult:
        return CheckResult(True, keys.active.kid) if keys.loaded else CheckResult(False, "no signing key loaded")

    return check
