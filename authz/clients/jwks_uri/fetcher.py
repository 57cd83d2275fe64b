"""One fetch of a client's ``jwks_uri``: HTTPS, bounded in time and size, no redirects, and only
to addresses the ``AddressPolicy`` accepts.

The name is resolved once, here; every address it resolves to must be acceptable; and the
connection goes to one of those very addresses. httpx would otherwise resolve the name again
when it connects, and a DNS server answering a public address to the check and 127.0.0.1 to the
connection (DNS rebinding) would get past the check. TLS still runs against the name: SNI, the
Host header and the certificate check are the URL's, so pinning the address weakens nothing.

How the address is pinned: httpx hands connections to httpcore, whose connection pool takes a
*network backend* (the object that opens TCP streams). ``_PinnedBackend`` is such a backend: it
opens the stream to the vetted addresses, refuses any other host or port, and leaves TLS to
httpcore (which passes the URL's host as ``server_hostname``). httpx's transport has no
parameter for the backend, so ``_PinnedTransport`` replaces the pool it built, and refuses to
be constructed if httpx ever stops keeping its pool where this expects it (the protection would
otherwise vanish silently).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpcore
import httpx

from authz.clients.jwks_uri.destinations import AddressPolicy, IPAddress
from authz.clients.model import InvalidClientMetadata, _registered_certificates
from authz.clipping import clipped

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT",
    "MAX_KEYS",
    "MAX_MAX_AGE",
    "MIN_MAX_AGE",
    "FetchedKeySet",
    "JwksFetchFailed",
    "JwksFetcher",
    "Resolver",
    "system_resolver",
    "tls_context",
]

DEFAULT_TIMEOUT = 5.0  # seconds for the whole fetch: resolution, connection, TLS, answer
DEFAULT_MAX_BYTES = 256 * 1024  # a set of 20 certificates with their JWKs is about 50 KiB
DEFAULT_MAX_AGE = 3600.0  # when the answer has no Cache-Control max-age
MIN_MAX_AGE = 300.0  # a max-age (or no-cache) the server sends is kept within these bounds:
MAX_MAX_AGE = 86_400.0  # refetching on every request, or never, is not the server's to decide
MAX_KEYS = 20  # per set: rotation needs two or three

MEDIA_TYPES = frozenset({"application/json", "application/jwk-set+json"})

Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]


class JwksFetchFailed(Exception):
    """The fetch gave no usable set. ``reason`` is a short code for log queries, ``detail``
    the operator's explanation."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class FetchedKeySet:
    certificates: frozenset[bytes]  # DER, as registered jwks give them
    keys: int
    status: int
    max_age: float  # seconds the set may be used before it is fetched again
    address: str  # the address the answer came from


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The addresses of ``host``, from the system resolver (in its thread pool: not on the loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         proto=socket.IPPROTO_TCP)
    found: dict[IPAddress, None] = {}
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            found[ipaddress.ip_address(sockaddr[0])] = None
    return list(found)


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificate and host name verification with the system's CAs, or with ``ca_file`` only."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)


class JwksFetcher:
    def __init__(
        self,
        policy: AddressPolicy,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        default_max_age: float = DEFAULT_MAX_AGE,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.policy = policy
        self.ssl_context = ssl_context or tls_context(None)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.default_max_age = default_max_age
        self.resolver = resolver

    async def fetch(self, uri: str) -> FetchedKeySet:
        """The certificates of the JWK Set at ``uri``; ``JwksFetchFailed`` says why not."""
        try:
            # One bound for everything, the resolution included: a server trickling its answer
            # a byte at a time stays within every per-read timeout, not within this.
            async with asyncio.timeout(self.timeout):
                return await self._fetch(uri)
        except TimeoutError:
            raise JwksFetchFailed("timeout", f"no complete answer within {self.timeout:g} s") from None

    async def _fetch(self, uri: str) -> FetchedKeySet:
        try:
            url = httpx.URL(uri)
            host = url.raw_host.decode("ascii")
        except (httpx.InvalidURL, UnicodeDecodeError) as exc:
            raise JwksFetchFailed("invalid_uri", str(exc)) from None
        if url.scheme != "https" or not host:  # registration refuses these already
            raise JwksFetchFailed("invalid_uri", "not an https URL with a host")
        port = url.port or 443
        addresses = await self._vetted_addresses(host, port)
        backend = _PinnedBackend(host, port, addresses)
        try:
            async with (
                httpx.AsyncClient(
                    transport=_PinnedTransport(self.ssl_context, backend),
                    timeout=self.timeout,
                    follow_redirects=False,
                    trust_env=False,  # no HTTPS_PROXY: a proxy would connect wherever it likes
                ) as client,
                client.stream("GET", url, headers={
                    "Accept": "application/jwk-set+json, application/json",
                    # Compressed answers are refused below: a small gzip body can inflate
                    # to far more than max_bytes before any limit sees it.
                    "Accept-Encoding": "identity",
                    "User-Agent": "authz jwks_uri fetcher",
                }) as response,
            ):
                self._check_response(response)
                body = await self._read(response)
        except httpx.TimeoutException as exc:
            raise JwksFetchFailed("timeout", f"{type(exc).__name__}: {exc}") from None
        except httpx.ConnectError as exc:
            raise JwksFetchFailed("tls_failed" if _caused_by_tls(exc) else "connect_failed",
                                  f"{host} ({', '.join(backend.tried) or 'no address tried'}): {exc}") from None
        except httpx.HTTPError as exc:
            # The message may quote what the server sent: bounded, like everything it controls.
            raise JwksFetchFailed("http_failed", f"{type(exc).__name__}: {clipped(str(exc), 300)}") from None
        certificates, keys = _certificates(body)
        return FetchedKeySet(certificates, keys, response.status_code, self._max_age(response.headers),
                             str(backend.connected))

    async def _vetted_addresses(self, host: str, port: int) -> list[IPAddress]:
        """Every address of ``host``, if the policy accepts each of them."""
        try:
            addresses: Sequence[IPAddress] = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                addresses = await self.resolver(host, port)
            except OSError as exc:  # socket.gaierror
                raise JwksFetchFailed("dns_failed", f"{host}: {exc}") from None
        if not addresses:
            raise JwksFetchFailed("dns_failed", f"{host} has no address")
        # All of them, not just the one connected to: a name whose addresses include
        # 10.0.0.5 says where it means to lead.
        refused = [refusal for address in addresses if (refusal := self.policy.refusal(address))]
        if refused:
            raise JwksFetchFailed("destination_refused", f"{host}: " + "; ".join(refused))
        return list(addresses)

    def _check_response(self, response: httpx.Response) -> None:
        status = response.status_code
        if 300 <= status < 400:
            location = clipped(response.headers.get("location", "(none)"), 300)
            raise JwksFetchFailed("redirect_refused", f"HTTP {status} to {location}; redirects are not followed: "
                                                      "register the final URL")
        if status != 200:
            raise JwksFetchFailed("http_status", f"HTTP {status}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise JwksFetchFailed("content_encoding", f"Content-Encoding {clipped(encoding, 50)} (asked for identity)")
        media_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type not in MEDIA_TYPES:
            raise JwksFetchFailed("content_type", f"Content-Type {clipped(media_type, 100) or '(none)'}; expected "
                                                  "application/jwk-set+json or application/json")
        declared = response.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
            raise JwksFetchFailed("too_large", f"Content-Length {clipped(declared, 20)} is over {self.max_bytes} bytes")

    async def _read(self, response: httpx.Response) -> bytes:
        body = bytearray()
        # Raw: httpx would decode a Content-Encoding it sees (it was refused above anyway).
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > self.max_bytes:
                # Not read further: leaving the stream closes the connection.
                raise JwksFetchFailed("too_large", f"the answer is over {self.max_bytes} bytes")
        return bytes(body)

    def _max_age(self, headers: httpx.Headers) -> float:
        max_age = _cache_control_max_age(headers.get_list("cache-control", split_commas=True))
        if max_age is None:
            return self.default_max_age
        return min(max(max_age, MIN_MAX_AGE), MAX_MAX_AGE)


def _caused_by_tls(exc: BaseException) -> bool:
    """Whether an httpx error wraps (through httpcore's) an ``ssl.SSLError``: a refused
    certificate, a failed handshake."""
    cause: BaseException | None = exc
    for _ in range(5):
        if cause is None:
            return False
        if isinstance(cause, ssl.SSLError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _cache_control_max_age(directives: Iterable[str]) -> float | None:
    """max-age of Cache-Control (0 for no-cache and no-store), or None without one."""
    for directive in directives:
        name, _, value = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-cache", "no-store"):
            return 0.0
        if name == "max-age":
            value = value.strip().strip('"')
            if value.isascii() and value.isdigit():
                return float(min(int(value[:12]), 10**12))
    return None


def _certificates(body: bytes) -> tuple[frozenset[bytes], int]:
    """The set's certificates, with the validation registered ``jwks`` get."""
    try:
        document: Any = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: deeply nested arrays
        raise JwksFetchFailed("not_json", f"{type(exc).__name__}: {clipped(str(exc), 200)}") from None
    keys = document.get("keys") if isinstance(document, Mapping) else None
    if isinstance(keys, list) and len(keys) > MAX_KEYS:
        # Checked before any parse: each key costs a certificate and a JWK import.
        raise JwksFetchFailed("too_many_keys", f"the set has {len(keys)} keys; at most {MAX_KEYS} are accepted")
    try:
        certificates = _registered_certificates(document)
    except InvalidClientMetadata as exc:
        raise JwksFetchFailed("invalid_jwks", clipped(str(exc), 300) or "") from None
    assert isinstance(keys, list)  # _registered_certificates accepted it
    return certificates, len(keys)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections to the vetted addresses of one host and port only."""

    def __init__(self, host: str, port: int, addresses: Sequence[IPAddress]) -> None:
        self._host = host
        self._port = port
        self._addresses = tuple(addresses)
        self._inner = httpcore.AnyIOBackend()
        self.connected: IPAddress | None = None
        self.tried: list[str] = []

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        if (host, port) != (self._host, self._port):
            # Unreachable while redirects are not followed; a guard should that change.
            raise httpcore.ConnectError(f"refused: a connection to {host}:{port}, not {self._host}:{self._port}")
        failure: Exception | None = None
        for address in self._addresses:  # in the resolver's order, like a browser without Happy Eyeballs
            self.tried.append(str(address))
            try:
                # An address, not a name: nothing is resolved again.
                stream = await self._inner.connect_tcp(str(address), port, timeout=timeout,
                                                       local_address=local_address, socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            self.connected = address
            return stream
        assert failure is not None  # there is at least one address
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("refused: no Unix sockets for jwks_uri")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a pool whose connections ``backend`` opens: one connection, HTTP/1.1."""

    def __init__(self, ssl_context: ssl.SSLContext, backend: _PinnedBackend) -> None:
        super().__init__(verify=ssl_context, trust_env=False, http1=True, http2=False, retries=0)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("httpx.AsyncHTTPTransport keeps no httpcore pool in _pool: the jwks_uri fetcher "
                               "cannot pin the vetted address with this httpx version")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, max_connections=1, max_keepalive_connections=0, http1=True, http2=False,
            retries=0, network_backend=backend,
        )
