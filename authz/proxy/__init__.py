"""Proxy mode: the client certificate from a header set by a trusted TLS-terminating proxy,
put where direct TLS puts it (the ASGI TLS extension), so that one check decides either way."""
