"""Resource-server side of RFC 8705: accept only access tokens bound to the client
certificate of the request's TLS connection.

    from authz_resource import AuthorizationServer, BearerTokenMiddleware, JWTAccessTokenValidator
    server = AuthorizationServer("https://as.example", ca_file="as-ca.pem")
    validator = JWTAccessTokenValidator(server, audience="https://api.example")  # algorithms=["ES256"]
    app = BearerTokenMiddleware(app, validator, realm="api", max_body_bytes=64 * 1024)

and ``@require_scopes("accounts:read")`` on routes. ``audience`` is this API's identifier: the
``aud`` its tokens carry, which clients request with RFC 8707 ``resource``. See
``authz_resource.sample`` for a whole API.

Behind a TLS-terminating proxy, wrap the application so that the certificate comes from the
proxy's header, from trusted proxies only:

    from authz_resource import ForwardedCertificate, build_proxy_mode
    app = ForwardedCertificate(app, build_proxy_mode("nginx", trusted_proxies=["10.0.0.0/8"]))
"""

from authz.proxy.mode import ForwardedCertificate, ProxyMode, build_proxy_mode
from authz_resource.access_jwt import ASYMMETRIC_ALGORITHMS, JWTAccessTokenValidator
from authz_resource.authorization_server import AuthorizationServer
from authz_resource.errors import (
    ContentTooLarge,
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    NoToken,
    Refusal,
    VerificationUnavailable,
)
from authz_resource.introspection import IntrospectionValidator
from authz_resource.middleware import BearerTokenMiddleware
from authz_resource.scopes import RequireScopes, require_scopes
from authz_resource.serving import uvicorn_tls_options
from authz_resource.token import AccessToken
from authz_resource.validator import TokenValidator

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "AccessToken",
    "AuthorizationServer",
    "BearerTokenMiddleware",
    "ContentTooLarge",
    "ForwardedCertificate",
    "InsufficientScope",
    "IntrospectionValidator",
    "InvalidRequest",
    "InvalidToken",
    "JWTAccessTokenValidator",
    "NoToken",
    "ProxyMode",
    "Refusal",
    "RequireScopes",
    "TokenValidator",
    "VerificationUnavailable",
    "build_proxy_mode",
    "require_scopes",
    "uvicorn_tls_options",
]
