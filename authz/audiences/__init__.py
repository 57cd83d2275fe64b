"""Resource servers (APIs) and the audience of access tokens (RFC 8707, RFC 9068)."""
