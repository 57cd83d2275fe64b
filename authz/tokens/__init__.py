"""Access tokens: JWTs per RFC 9068, bound to the client certificate per RFC 8705 §3."""
