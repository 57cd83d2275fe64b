"""OAuth 2.0 on authlib's grammar: its grants, errors and client-auth registry, driven from
Starlette. authlib's core is synchronous, so endpoints do the async work (read the body,
look the client up) first and hand authlib a request with everything already resolved."""
