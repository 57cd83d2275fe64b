"""Certificates of ``self_signed_tls_client_auth`` clients registered with ``jwks_uri``.

- ``uri``: what a registered ``jwks_uri`` may look like (checked at registration);
- ``destinations``: which addresses the server may connect to (public ones, and the
  operator's allow-list);
- ``fetcher``: one bounded HTTPS fetch, to the very address that was checked;
- ``cache``: the last good set per client, refreshed when a presented certificate is not in
  it, at most once per cooldown.

Nothing is imported here: ``authz.clients.model`` needs ``uri`` alone, and the fetcher needs
the model.
"""
