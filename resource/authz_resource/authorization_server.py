"""The resource server's view of its authorization server: metadata (RFC 8414), the JWK Set
and the introspection endpoint (RFC 7662), reached with httpx's async client so that no
request ever blocks the event loop.

The HTTPS client presents the resource server's own certificate when one is configured:
RFC 8705 client authentication at the introspection endpoint needs it, and the other
endpoints do not mind it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog

from authz_resource.errors import VerificationUnavailable

__all__ = ["AuthorizationServer", "metadata_url"]

log = structlog.get_logger("authz_resource.authorization_server")

_MAX_DOCUMENT = 1024 * 1024
_UNAVAILABLE = "the authorization server could not be reached to verify the access token; retry later"


def metadata_url(issuer: str) -> str:
    """RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path."""
    parts = urlsplit(issuer)
    path = "/.well-known/oauth-authorization-server" + parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _https_url(value: str, setting: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc or parts.fragment:
        raise ValueError(f"{setting} must be an https URL without fragment, got {value!r}")
    return value.rstrip("/") if setting == "issuer" else value


class AuthorizationServer:
    """Reaches one issuer. Create it once per process; ``aclose()`` at shutdown.

    ``ca_file``: the CA that issued the authorization server's TLS certificate (default:
    the system store). ``client_cert``/``client_key``: the resource server's certificate,
    needed for introspection. ``http_client``: bring your own (tests, proxies); it is then
    used as is and not closed here.
    """

    def __init__(
        self,
        issuer: str,
        *,
        ca_file: str | Path | None = None,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 5.0,
        metadata_max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = _https_url(issuer, "issuer")
        if (client_cert is None) != (client_key is None):
            raise ValueError("client_cert and client_key go together")
        if timeout <= 0 or metadata_max_age <= 0:
            raise ValueError("timeout and metadata_max_age must be positive")
        self.presents_client_certificate = client_cert is not None or http_client is not None
        """Whether requests can carry the resource server's certificate (a client brought
        with ``http_client`` is trusted to be configured as needed)."""
        self._verify: ssl.SSLContext | None = None
        if http_client is None:
            # Built now so that a missing or unreadable file fails at start-up, naming it.
            self._verify = _client_context(ca_file, client_cert, client_key)
        self._http = http_client
        self._owns_http = http_client is None
        self._timeout = timeout
        self._metadata_max_age = metadata_max_age
        self._clock = clock
        self._metadata: Mapping[str, Any] | None = None
        self._metadata_time = 0.0
        self._metadata_lock: asyncio.Lock | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # trust_env=False: the route to the authorization server is configuration, not
            # whatever HTTPS_PROXY happens to be in the environment.
            self._http = httpx.AsyncClient(verify=self._verify or True, timeout=self._timeout, trust_env=False)
        return self._http

    async def aclose(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    async def metadata(self) -> Mapping[str, Any]:
        """The authorization server's metadata, fetched once and kept ``metadata_max_age``."""
        if self._metadata is not None and self._clock() - self._metadata_time < self._metadata_max_age:
            return self._metadata
        if self._metadata_lock is None:
            self._metadata_lock = asyncio.Lock()
        async with self._metadata_lock:
            if self._metadata is not None and self._clock() - self._metadata_time < self._metadata_max_age:
                return self._metadata
            url = metadata_url(self.issuer)
            document = await self._get_json(url, "metadata")
            if document.get("issuer") != self.issuer:
                # RFC 8414 §3.3: a mismatch means the document is not this issuer's.
                raise VerificationUnavailable(
                    "metadata_issuer_mismatch", _UNAVAILABLE,
                    detail=f"{url} says issuer {document.get('issuer')!r}, configured {self.issuer!r}",
                )
            self._metadata, self._metadata_time = document, self._clock()
            return document

    async def endpoint(self, name: str) -> str:
        """``jwks_uri`` or ``introspection_endpoint``, preferring the mTLS alias (RFC 8705 §5)."""
        metadata = await self.metadata()
        aliases = metadata.get("mtls_endpoint_aliases")
        url = aliases.get(name) if isinstance(aliases, Mapping) and name != "jwks_uri" else None
        url = url or metadata.get(name)
        if not isinstance(url, str) or not url.startswith("https://"):
            raise VerificationUnavailable(
                "metadata_incomplete", _UNAVAILABLE,
                detail=f"the metadata of {self.issuer} has no https {name} (got {url!r})",
            )
        return url

    async def jwks(self) -> Mapping[str, Any]:
        return await self._get_json(await self.endpoint("jwks_uri"), "jwks")

    async def introspect(self, token: str, client_id: str) -> Mapping[str, Any]:
        url = await self.endpoint("introspection_endpoint")
        form = {"token": token, "token_type_hint": "access_token", "client_id": client_id}
        return await self._request("POST", url, "introspection", data=form)

    async def _get_json(self, url: str, what: str) -> Mapping[str, Any]:
        return await self._request("GET", url, what)

    async def _request(self, method: str, url: str, what: str, data: dict[str, str] | None = None) -> Mapping[str, Any]:
        try:
            request = self._client().stream(method, url, data=data, headers={"accept": "application/json"})
            async with request as response:
                body = await _read_bounded(response)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL: a bad URL in the metadata
            raise VerificationUnavailable(f"{what}_unreachable", _UNAVAILABLE,
                                          detail=f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        if body is None or response.status_code != 200:
            shown = "larger than 1 MiB" if body is None else body[:300].decode("utf-8", "replace")
            raise VerificationUnavailable(
                f"{what}_failed", _UNAVAILABLE, detail=f"{method} {url}: HTTP {response.status_code}: {shown}",
            )
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: deeply nested arrays
            raise VerificationUnavailable(f"{what}_failed", _UNAVAILABLE,
                                          detail=f"{method} {url}: not JSON: {type(exc).__name__}: {exc}") from exc
        if not isinstance(document, dict):
            raise VerificationUnavailable(f"{what}_failed", _UNAVAILABLE,
                                          detail=f"{method} {url}: not a JSON object")
        return document


async def _read_bounded(response: httpx.Response) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``_MAX_DOCUMENT`` (not read further)."""
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > _MAX_DOCUMENT:
        return None
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > _MAX_DOCUMENT:
            return None
    return bytes(body)


def _client_context(ca_file: str | Path | None, cert: str | Path | None, key: str | Path | None) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"ca_file {ca_file}: cannot load it: {exc}") from exc
    if cert is not None:
        try:
            context.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"client_cert/client_key {cert}, {key}: cannot load them: {exc}") from exc
    return context
