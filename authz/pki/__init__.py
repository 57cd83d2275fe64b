"""A development PKI. Never for production: its keys sit unencrypted on disk."""
