"""A small accounts API protected by ``resource``: copy it as a starting point.

``authz sample-api --help`` runs it over TLS with client certificates requested.
"""
