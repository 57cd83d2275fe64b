"""The command-line options of proxy mode, shared by ``authz serve`` and the sample API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from authz.proxy.formats import FORMATS

__all__ = ["proxy_options"]

F = TypeVar("F", bound=Callable[..., Any])


def proxy_options(certificate_file: click.Path, *, environment: bool) -> Callable[[F], F]:
    """Decorate a click command with the proxy-mode options; ``environment`` names their
    ``AUTHZ_*`` variables in the help (``authz serve`` reads them, the sample API does not)."""

    def env(name: str) -> str:
        return f" (env AUTHZ_{name})" if environment else ""

    def decorate(command: F) -> F:
        for option in reversed([
            click.option("--proxy-cert-header", type=click.Choice(list(FORMATS)),
                         help="Behind a TLS-terminating proxy: read the client certificate from the header this "
                              f"proxy writes{env('PROXY_CERT_HEADER')}. Without --tls-cert, serve plain HTTP "
                              "to the proxy."),
            click.option("--proxy-cert-header-name",
                         help="The header's name, for nginx, haproxy and apache (default X-SSL-Client-Cert)."),
            click.option("--trusted-proxy", "trusted_proxies", multiple=True,
                         help=f"Address or CIDR of a proxy whose header is honoured, repeatable"
                              f"{env('TRUSTED_PROXIES')}."),
            click.option("--trusted-proxy-cert", "trusted_proxy_certs", multiple=True, type=certificate_file,
                         help="A proxy's own client certificate (PEM): its TLS connections may carry the header."),
            click.option("--trusted-proxy-ca", "trusted_proxy_cas", multiple=True, type=certificate_file,
                         help="A CA (PEM) issuing proxies' client certificates: their TLS connections may carry "
                              "the header."),
        ]):
            command = option(command)
        return command

    return decorate
