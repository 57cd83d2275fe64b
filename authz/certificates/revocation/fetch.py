"""Bounded HTTP fetches of revocation data (CRLs by GET, OCSP answers by POST).

Every fetch is bounded in time (all of it, not per read: a server dripping one byte a second
cannot hold it) and in size (the body is read in chunks and dropped once over the limit), and
goes to plain ``http://`` URLs only: CRLs and OCSP answers are signed, and an ``https://`` URL
would need a TLS validation, with its own revocation checks, inside this one. Redirects are not
followed.
"""

from __future__ import annotations

import asyncio

import httpx

__all__ = ["FetchFailed", "Fetcher"]

# Fetches in flight at once, whatever the number of sources that need one.
_MAX_CONCURRENT = 16


class FetchFailed(Exception):
    """The data could not be fetched; the message says why (for the operator's log)."""


class Fetcher:
    """One HTTP client for all revocation fetches of a process, made on first use."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(_MAX_CONCURRENT)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout),
                follow_redirects=False,
                limits=httpx.Limits(max_connections=_MAX_CONCURRENT, max_keepalive_connections=8),
                # Identity: the size limit then bounds what is parsed (no compressed bomb).
                headers={"User-Agent": "authz-revocation", "Accept-Encoding": "identity"},
            )
        return self._client

    async def get(self, url: str, max_bytes: int) -> bytes:
        return await self._fetch("GET", url, max_bytes, None, None)

    async def post(self, url: str, body: bytes, content_type: str, max_bytes: int) -> bytes:
        return await self._fetch("POST", url, max_bytes, body, content_type)

    async def _fetch(self, method: str, url: str, max_bytes: int, body: bytes | None,
                     content_type: str | None) -> bytes:
        if not url.lower().startswith("http://"):
            raise FetchFailed("only http:// URLs are fetched")
        headers = {"Content-Type": content_type} if content_type else None
        try:
            async with self._slots, asyncio.timeout(self._timeout):
                request = self._http().build_request(method, url, content=body, headers=headers)
                response = await self._http().send(request, stream=True)
                try:
                    return await _body(response, max_bytes)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise FetchFailed(f"no complete answer within {self._timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchFailed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def _body(response: httpx.Response, max_bytes: int) -> bytes:
    if response.status_code != 200:
        raise FetchFailed(f"HTTP status {response.status_code}")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchFailed(f"{declared} bytes announced (limit {max_bytes})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > max_bytes:
            raise FetchFailed(f"more than {max_bytes} bytes (limit)")
        chunks.append(chunk)
    return b"".join(chunks)
