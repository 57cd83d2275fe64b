"""Input of the endpoints a client calls with its certificate (token, introspection,
revocation): the form body, read safely, and authlib's request object around it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload, OAuth2Request
from starlette.datastructures import Headers
from starlette.types import Receive

from authz.clients.directory import UnusableRegistration
from authz.clients.model import MAX_CLIENT_ID_CHARS, RegisteredClient
from authz.clipping import clipped
from authz.oauth.percent_decoding import percent_decoded

__all__ = [
    "MAX_FORM_BYTES",
    "ClientDisconnected",
    "ClientRequest",
    "BodyTooLarge",
    "Form",
    "MalformedForm",
    "parse_form",
    "peer_address",
    "read_form",
]

MAX_FORM_BYTES = 16 * 1024


class MalformedForm(ValueError):
    """The body is not a well-formed ``application/x-www-form-urlencoded`` form."""

    status = 400


class BodyTooLarge(MalformedForm):
    """The body is larger than any request of this server needs: 413 (RFC 9110 §15.5.14)."""

    status = 413


class ClientDisconnected(Exception):
    """The client went away before its request body arrived: there is no one to answer."""


_FRAMING_HEADERS = frozenset((b"content-type", b"content-length", b"content-encoding", b"transfer-encoding"))


async def read_form(headers: Headers, receive: Receive) -> Form:
    """The body, parsed as RFC 6749 wants it: URL-encoded UTF-8, each parameter at most once."""
    # One pass over the raw headers (names are lowercase in ASGI): this runs for every token.
    framing: dict[bytes, bytes] = {}
    for name, value in headers.raw:
        if name in _FRAMING_HEADERS:
            # Repeated: one comma-separated list (RFC 9110 §5.3), so no value hides behind another.
            framing[name] = framing[name] + b"," + value if name in framing else value
    media_type, _, parameters = framing.get(b"content-type", b"").decode("latin-1").partition(";")
    if media_type.strip().lower() != "application/x-www-form-urlencoded":
        raise MalformedForm("the body must be application/x-www-form-urlencoded")
    if parameters and _charset(parameters) not in (None, "utf-8", "utf8"):
        raise MalformedForm("the form must be UTF-8 (charset=utf-8, or no charset)")
    # The HTTP server decodes chunked framing only: a compressed body would be read as the form.
    if b"content-encoding" in framing and framing[b"content-encoding"].strip().lower() != b"identity":
        raise MalformedForm("Content-Encoding is not supported: send the form uncompressed")
    if b"transfer-encoding" in framing and any(
        c.strip().lower() not in (b"chunked", b"") for c in framing[b"transfer-encoding"].split(b",")
    ):
        raise MalformedForm("Transfer-Encoding other than chunked is not supported")
    # Leading zeros off: httptools passes "Content-Length: 000...05", and int() refuses more
    # than 4300 digits (ValueError, a 500).
    declared = framing.get(b"content-length", b"").lstrip(b"0")
    # A malformed length is the HTTP server's to refuse; the read below enforces the limit
    # regardless. (bytes.isdigit() is ASCII-only.)
    if declared.isdigit() and (len(declared) > len(str(MAX_FORM_BYTES)) or int(declared) > MAX_FORM_BYTES):
        raise BodyTooLarge(f"the body exceeds {MAX_FORM_BYTES} bytes")
    return parse_form(await _read_body(receive))


def _charset(parameters: str) -> str | None:
    """The charset parameter of a Content-Type's parameters (after the first ";"), lowercased."""
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


async def _read_body(receive: Receive) -> bytes:
    # Pieces joined once: a body sent in many small pieces is copied once, not once a piece.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:  # chunked, or a Content-Length that lied
            raise BodyTooLarge(f"the body exceeds {MAX_FORM_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


# Parameters a request may carry more than once: RFC 8707's resource.
REPEATABLE_PARAMETERS = frozenset({"resource"})


class Form(dict[str, str]):
    """The parameters, each under its name with its (first) value, as authlib reads them; a
    parameter of ``REPEATABLE_PARAMETERS`` sent several times also has all its values, in
    order, through ``values_of``."""

    def __init__(self) -> None:
        super().__init__()
        self.repeated: dict[str, list[str]] = {}

    def values_of(self, name: str) -> list[str]:
        if name in self.repeated:
            return list(self.repeated[name])
        return [self[name]] if name in self else []


def parse_form(body: bytes) -> Form:
    """``application/x-www-form-urlencoded`` parsed like the WHATWG parser that browsers and
    client libraries follow: empty fields ("a=1&&b=2", a trailing "&") are skipped, and a name
    without "=" is a parameter with an empty value. Unlike it, invalid UTF-8 (raw or
    percent-encoded) is refused rather than replaced, and so is a repeated parameter
    (RFC 6749 §3.2)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedForm("the body is not valid URL-encoded UTF-8") from exc
    form = Form()
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "%" in field or "+" in field:  # most token requests have nothing to decode
            try:
                # Each part only if it needs it: a resource URI's value does, its name does not.
                if "%" in name or "+" in name:
                    name = percent_decoded(name)
                if "%" in value or "+" in value:
                    value = percent_decoded(value)
            except UnicodeDecodeError as exc:
                raise MalformedForm("the body is not valid URL-encoded UTF-8") from exc
        if name in form:
            if name not in REPEATABLE_PARAMETERS:
                raise MalformedForm(f"parameter {_printable(name)} is repeated")
            form.repeated.setdefault(name, [form[name]]).append(value)
            continue
        form[name] = value
    return form


def peer_address(scope: Mapping[str, Any]) -> str | None:
    """``host:port`` of the TCP peer, for log lines."""
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


def _printable(name: str) -> str:
    # Parameter names end up in error_description: keep them to the characters it allows.
    safe = "".join(c for c in name if 0x20 <= ord(c) <= 0x7E and c not in '"\\')
    return safe[:40] or "(unprintable)"


class ClientRequest(OAuth2Request):  # type: ignore[misc]
    """authlib's ``OAuth2Request`` with the async results it needs already resolved.

    ``endpoint`` names the endpoint for log lines ("token", "introspection", "revocation").
    """

    def __init__(
        self,
        *,
        endpoint: str,
        uri: str,
        headers: Mapping[str, str],
        form: dict[str, str],
        scope: Mapping[str, Any],
        client: RegisteredClient | UnusableRegistration | None,
    ) -> None:
        super().__init__("POST", uri, headers=headers)
        self.payload = BasicOAuth2Payload(form)
        self._form = form
        self.endpoint = endpoint
        self.asgi_scope = scope
        self.resolved_client = client
        self.resolved_token: Any = None
        self.audience: str | list[str] | None = None  # chosen by the grant
        self.pending_revocation: Any = None

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def resources(self) -> list[str]:
        """Every ``resource`` parameter (RFC 8707), in order."""
        if isinstance(self._form, Form):
            return self._form.values_of("resource")
        return [self._form["resource"]] if "resource" in self._form else []

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def peer(self) -> str | None:
        return peer_address(self.asgi_scope)

    @property
    def logged_client_id(self) -> str | None:
        """The client_id sent, for log lines: whole up to the longest a registration may
        have, cut beyond (any client_id that can match a registration is logged whole)."""
        return clipped(self._form.get("client_id"), MAX_CLIENT_ID_CHARS)
