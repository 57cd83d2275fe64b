"""``authz``: the command group. Sub-commands live in one module each."""

from __future__ import annotations

import click

from authz.cli.client_update import update
from authz.cli.clients import clients
from authz.cli.keys import keys
from authz.cli.pki import pki
from authz.cli.registration import registration
from authz.cli.resources import resources
from authz.cli.serve import dev, serve
from authz.cli.store import store
from authz_resource.sample.cli import sample_api

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="authz-mtls")
def main() -> None:
    """OAuth 2.0 authorization server for mutual-TLS client authentication (RFC 8705)."""


main.add_command(pki)
main.add_command(clients)
clients.add_command(update)
main.add_command(keys)
main.add_command(resources)
main.add_command(registration)
main.add_command(store)
main.add_command(serve)
main.add_command(dev)
main.add_command(sample_api)  # the resource server's sample API (package authz_resource)
