"""Revocation checking of ``tls_client_auth`` certificates: CRLs (files, distribution points)
and OCSP, with a hard-fail or soft-fail policy. ``RevocationChecker`` is the entry point."""
