"""The command-line options of revocation checking, shared by ``authz serve`` and
``authz explain`` (which checks a certificate as the server configured this way would)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["revocation_options"]

F = TypeVar("F", bound=Callable[..., Any])


def revocation_options(crl_file: click.Path) -> Callable[[F], F]:
    """Decorate a click command with the revocation options (each also read from its
    ``AUTHZ_*`` variable by the settings)."""

    def decorate(command: F) -> F:
        for option in reversed([
            click.option("--revocation-check", type=click.Choice(["off", "crl", "ocsp", "crl+ocsp"]),
                         help="Check tls_client_auth certificates and their intermediates for revocation (env "
                              "AUTHZ_REVOCATION_CHECK, default off)."),
            click.option("--revocation-policy", type=click.Choice(["hard-fail", "soft-fail"]),
                         help="Without a fresh answer: refuse the client, or accept it and log (env "
                              "AUTHZ_REVOCATION_POLICY, default hard-fail)."),
            click.option("--crl", "crls", multiple=True, type=crl_file,
                         help="CRL file (PEM or DER), repeatable, reloaded when it changes (env AUTHZ_CRLS, "
                              "comma-separated)."),
            click.option("--revocation-fetch-timeout", type=float,
                         help="Seconds a CRL or OCSP fetch may take in all (env AUTHZ_REVOCATION_FETCH_TIMEOUT, "
                              "default 3)."),
            click.option("--revocation-max-wait", type=float,
                         help="Seconds a token request may wait for revocation data; fetches go on in the "
                              "background (env AUTHZ_REVOCATION_MAX_WAIT, default 1)."),
            click.option("--crl-grace", type=float,
                         help="Seconds past its nextUpdate a CRL is still used (env AUTHZ_CRL_GRACE, default 0)."),
            click.option("--crl-max-bytes", type=int,
                         help="Largest CRL fetched from a distribution point (env AUTHZ_CRL_MAX_BYTES, default "
                              "10 MiB)."),
            click.option("--ocsp-nonce/--no-ocsp-nonce", default=None,
                         help="Send a nonce in OCSP requests (env AUTHZ_OCSP_NONCE, default no)."),
        ]):
            command = option(command)
        return command

    return decorate
