"""``authz``: the command group. Sub-commands live in one module each, imported only when the
command runs: ``authz --help`` and the management commands start without the server's stack
(uvicorn, authlib, the TLS layer), which ``serve`` alone needs."""

from __future__ import annotations

import importlib
from typing import Any

import click

__all__ = ["main"]

# name -> (module:attribute, one-line help shown by ``authz --help`` without importing it).
_COMMANDS: dict[str, tuple[str, str]] = {
    "pki": ("authz.cli.pki:pki", "Development PKI (never for production)."),
    "clients": ("authz.cli.clients:clients", "Registered OAuth clients."),
    "keys": ("authz.cli.keys:keys", "Token signing keys (created on first start)."),
    "resources": ("authz.cli.resources:resources",
                  "Resource servers: the aud of tokens, their scopes, who may introspect them."),
    "registration": ("authz.cli.registration:registration", "The registration API (POST /register)."),
    "store": ("authz.cli.store:store", "The store as a whole."),
    "explain": ("authz.cli.explain:explain",
                "Would this certificate authenticate this client? Each step of the token endpoint's check."),
    "serve": ("authz.cli.serve:serve", "Run the authorization server over TLS, requesting client certificates."),
    "dev": ("authz.cli.serve:dev", "Quick start: development PKI, two demo clients, the server."),
    "sample-api": ("authz_resource.sample.cli:sample_api", "Run the sample accounts API (a protected resource)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        module_name, _, attribute = _COMMANDS[cmd_name][0].partition(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        if cmd_name == "clients":
            from authz.cli.client_update import update

            assert isinstance(command, click.Group)
            command.add_command(update)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The one-line helps from the table: listing the commands imports none of them.
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_text) for name, (_, help_text) in _COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="authz-mtls")
def main(**_: Any) -> None:
    """OAuth 2.0 authorization server for mutual-TLS client authentication (RFC 8705)."""
