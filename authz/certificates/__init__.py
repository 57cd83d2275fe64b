"""X.509 decisions of RFC 8705: what the client presented, and whether it authenticates it."""
