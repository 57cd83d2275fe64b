"""What no endpoint handles: another method on an endpoint (405), a path that is not one
(404). Like every error of the server, the answer is JSON that must not be cached, and the
operator gets one ``request_refused`` line."""

import re
from typing import Any

import pytest

from tests.wire.client import WireClient, WireResponse

pytestmark = pytest.mark.wire

CLIENT_ENDPOINTS = ["/token", "/introspect", "/revoke"]
GET_ENDPOINTS = ["/jwks", "/.well-known/oauth-authorization-server"]


def assert_refused(response: WireResponse, method: str, path: str, status: int, description: str,
                   reason: str) -> None:
    assert response.status == status, (response.status, response.body)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert response.headers["content-type"] == "application/json"
    if method != "HEAD":  # the headers of the same answer, without its body
        assert response.json() == {"error": "invalid_request", "error_description": description}
    [line] = [e for e in response.events if e.get("event") == "request_refused"]
    assert line["level"] == "warning" and (line["method"], line["path"]) == (method, path)
    assert (line["status"], line["error"], line["reason"]) == (status, "invalid_request", reason)
    assert line["error_description"] == description
    assert re.fullmatch(r"127\.0\.0\.1:\d+", line["peer"])


def send(wire: WireClient, method: str, path: str) -> WireResponse:
    body = b"grant_type=client_credentials" if method in ("POST", "PUT", "PATCH") else None
    headers: dict[str, Any] = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    return wire.request(method, path, None, body, headers)


@pytest.mark.parametrize("path", CLIENT_ENDPOINTS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
def test_other_methods_on_a_client_endpoint(wire: WireClient, method: str, path: str) -> None:
    response = send(wire, method, path)
    assert_refused(response, method, path, 405, "use POST for this endpoint", "method_not_allowed")
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize("path", GET_ENDPOINTS)
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_on_a_get_endpoint(wire: WireClient, method: str, path: str) -> None:
    response = send(wire, method, path)
    assert_refused(response, method, path, 405, "use GET or HEAD for this endpoint", "method_not_allowed")
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", GET_ENDPOINTS)
def test_get_endpoints_still_answer(wire: WireClient, path: str) -> None:
    response = wire.get(path)
    assert response.status == 200 and response.json()
    assert not [e for e in response.events if e.get("event") == "request_refused"]


# "/token/" must not be redirected to "/token": an OAuth endpoint does not redirect a POST.
@pytest.mark.parametrize(("method", "path"), [("POST", "/nope"), ("POST", "/TOKEN"), ("POST", "/token/"),
                                              ("GET", "/token/"), ("POST", "/jwks/"), ("GET", "/")])
def test_unknown_path(wire: WireClient, method: str, path: str) -> None:
    response = send(wire, method, path)
    assert_refused(response, method, path, 404, "there is no endpoint at this path", "not_found")
    assert "location" not in response.headers


def test_long_unknown_path_is_logged_cut(wire: WireClient) -> None:
    path = "/" + "a" * 1999
    response = send(wire, "POST", path)
    [line] = [e for e in response.events if e.get("event") == "request_refused"]
    assert line["path"] == path[:200] + "...[1800 more characters]"
