"""A small accounts API protected by ``authz_resource``: copy it as a starting point.

``authz-sample-api --help`` (or ``python -m authz_resource.sample --help``) runs it over
TLS with client certificates requested.
"""
