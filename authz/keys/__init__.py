"""The authorization server's token signing keys."""
