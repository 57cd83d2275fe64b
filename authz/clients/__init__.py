"""Registered OAuth clients: their metadata (RFC 7591 / RFC 8705 names) and validation."""
