"""Resource-server side of RFC 8705: accept only access tokens bound to the client
certificate of the request's TLS connection.

    from resource import AuthorizationServer, BearerTokenMiddleware, JWTAccessTokenValidator
    server = AuthorizationServer("https://as.example", ca_file="as-ca.pem")
    validator = JWTAccessTokenValidator(server, audience="https://api.example")
    app = BearerTokenMiddleware(app, validator, realm="api")

and ``@require_scopes("accounts:read")`` on routes. See ``resource.sample`` for a whole API.
"""

from resource.access_jwt import ASYMMETRIC_ALGORITHMS, JWTAccessTokenValidator
from resource.authorization_server import AuthorizationServer
from resource.errors import (
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    NoToken,
    Refusal,
    VerificationUnavailable,
)
from resource.introspection import IntrospectionValidator
from resource.middleware import BearerTokenMiddleware
from resource.scopes import RequireScopes, require_scopes
from resource.serving import uvicorn_tls_options
from resource.token import AccessToken
from resource.validator import TokenValidator

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "AccessToken",
    "AuthorizationServer",
    "BearerTokenMiddleware",
    "InsufficientScope",
    "IntrospectionValidator",
    "InvalidRequest",
    "InvalidToken",
    "JWTAccessTokenValidator",
    "NoToken",
    "Refusal",
    "RequireScopes",
    "TokenValidator",
    "VerificationUnavailable",
    "require_scopes",
    "uvicorn_tls_options",
]
