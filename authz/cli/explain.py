"""``authz explain``: would this certificate authenticate this client, and if not, what to change.

Offline, with the trust configuration of ``authz serve`` (the same options and ``AUTHZ_*``
variables, read by the same settings) and the client as the store holds it. With revocation
checking configured, the CRLs and OCSP answers are read and fetched as the server would (the
command waits for each fetch, at most the fetch timeout). The certificate
goes through the token endpoint's own code: ``PresentedCertificate.from_der`` (the limits and
the parse), then ``check_client_certificate`` with a ``CheckTrace`` recording each step. This
module only prints the steps and, for the one that failed, the change that would fix it.

Exit status: 0 when the certificate would authenticate the client (and ``--key`` is its key),
1 when it would be refused, 2 when the question cannot be asked (bad options, unreadable files,
no store).
"""

from __future__ import annotations

import asyncio
import base64
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from authz.certificates.revocation.options import revocation_options
from authz.cli.options import store_location_options

if TYPE_CHECKING:  # the command imports them when it runs: `authz --help` stays light
    from cryptography import x509

    from authz.certificates.chain import ChainValidator
    from authz.certificates.presented import PresentedCertificate
    from authz.certificates.rejection import CertificateRejected
    from authz.certificates.revocation.config import RevocationConfig
    from authz.certificates.trace import CheckTrace
    from authz.clients.model import RegisteredClient
    from authz.settings import Settings

__all__ = ["explain"]

_FILE = click.Path(dir_okay=False, path_type=Path)
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.DOTALL)


class _CannotExplain(click.ClickException):
    exit_code = 2


@dataclass
class _Report:
    lines: list[str] = field(default_factory=list)

    def step(self, verdict: str, name: str, summary: str, facts: tuple[tuple[str, str], ...] = ()) -> None:
        self.lines.append(f"  {verdict:<5} {name:<11} {summary}")
        width = max((len(k) for k, _ in facts), default=0)
        for key, value in facts:
            self.lines.append(f"  {'':<5} {'':<11}   {key.replace('_', ' '):<{width}}  {value}")


@click.command("explain")
@click.option("--cert", "cert_file", type=_FILE, required=True,
              help="The client's certificate, PEM or DER; a PEM file may go on with the intermediates it sends.")
@click.option("--chain", "chain_file", type=_FILE, help="The intermediates the client sends (PEM), if not in --cert.")
@click.option("--client-id", required=True, help="The client_id the client sends.")
@click.option("--key", "key_file", type=_FILE, help="The client's private key (PEM): is it the certificate's?")
@click.option("--trust-anchor", "trust_anchors", multiple=True, type=_FILE,
              help="As for serve (env AUTHZ_TRUST_ANCHORS).")
@click.option("--intermediate", "intermediates", multiple=True, type=_FILE,
              help="As for serve (env AUTHZ_INTERMEDIATES).")
@revocation_options(_FILE)
@store_location_options(environment=False)
def explain(cert_file: Path, chain_file: Path | None, client_id: str, key_file: Path | None,
            **options: Any) -> None:
    """Check a certificate against a client as the token endpoint would, offline, and print
    each step with its verdict, and for a failure the change that fixes it.

    Exit status 0: it would authenticate; 1: it would be refused; 2: error.
    """
    from authz.certificates.check import check_client_certificate
    from authz.certificates.presented import PresentedCertificate
    from authz.certificates.rejection import CertificateRejected
    from authz.certificates.trace import CheckTrace
    from authz.cli.serve import settings_from_options
    from authz.context import ConfigurationError, chain_validator

    try:
        settings = settings_from_options(options)
    except click.ClickException as exc:
        raise _CannotExplain(exc.message) from exc
    ders = _read_chain(cert_file) + (_read_chain(chain_file) if chain_file else [])
    try:
        validator = chain_validator(settings)
    except ConfigurationError as exc:
        raise _CannotExplain(str(exc)) from exc
    client, unusable = _client(settings, client_id)

    report = _Report()
    click.echo(f"client_id {client_id}" + (f" ({client.auth_method})" if client else ""))
    click.echo(f"certificate {cert_file}" + (f", intermediates from {chain_file}" if chain_file else "")
               + f": {len(ders)} certificate(s)")
    refusal: CertificateRejected | None = None
    trace = CheckTrace()
    presented: PresentedCertificate | None = None
    try:
        presented = PresentedCertificate.from_der(ders)
        report.step("ok", "parsed", _describe(presented.leaf), (
            ("issuer", _name(presented.leaf, "issuer")), ("serial", format(presented.leaf.serial_number, "x")),
            ("sent_with_it", f"{len(presented.intermediates_der)} intermediate(s)")))
    except CertificateRejected as rejected:
        refusal = rejected
        report.step("FAIL", "parsed", rejected.reason.public_description, (("detail", rejected.detail),))
    if presented is not None and client is not None:
        try:
            revocation = settings.revocation_config() if client.auth_method == "tls_client_auth" else None
            if revocation is None:
                check_client_certificate(client, presented, validator, trace=trace)
            else:
                asyncio.run(_check_with_revocation(client, presented, validator, revocation, trace))
        except CertificateRejected as rejected:
            refusal = rejected
        finally:
            validator.close()
    for step in trace.steps:
        facts = tuple((k, _anchor_file(v, settings) if k == "anchor_sha256" else v) for k, v in step.facts)
        report.step(step.verdict.value, step.name, step.summary, facts)
    if client is not None and presented is not None:
        for name in _STEPS[client.auth_method]:
            if trace.step(name) is None:
                report.step("--", name, "not reached: an earlier step failed")

    key_problem = _key_problem(presented, key_file) if key_file is not None and presented is not None else None
    if key_file is not None and presented is not None:
        if key_problem is None:
            report.step("ok", "key", f"{key_file} holds the certificate's private key")
        else:
            report.step("FAIL", "key", key_problem)
    if client is None:
        report.step("FAIL", "client", unusable or f"no client {client_id!r} is registered")

    click.echo("\n".join(report.lines))
    if presented is not None:
        click.echo(f"thumbprint (cnf x5t#S256): {presented.x5t_s256}")
    if client is not None and refusal is None and key_problem is None:
        click.echo("verdict: the certificate authenticates the client"
                   + ("" if key_file is not None else " (with its private key: --key checks the pair)"))
        return
    fixes: list[str] = []
    if refusal is not None:
        click.echo(f"verdict: refused: {refusal.public_description}")
        fixes.append(_fix(refusal, client, presented, trace, cert_file, settings))
    elif client is None:
        # The token endpoint's own descriptions.
        click.echo("verdict: refused: " + ("the registration of this client is not usable; contact the server "
                                           "operator" if unusable else "unknown client_id"))
    else:
        click.echo("verdict: refused: the TLS handshake would fail (the client cannot prove it holds the key)")
    if client is None:
        fixes.append(_fix_client(client_id, unusable))
    if key_problem is not None:
        fixes.append(f"configure the client with the private key this certificate was issued for; {key_file} "
                     "belongs to another certificate")
    for fix in fixes:
        click.echo(f"fix: {fix}")
    raise SystemExit(1)


async def _check_with_revocation(client: RegisteredClient, presented: PresentedCertificate,
                                 validator: ChainValidator, config: RevocationConfig, trace: CheckTrace) -> None:
    """``check_client_certificate`` with the revocation data the server would use: the --crl
    files, and the distribution points and responders of the path, fetched now. The server
    waits at most --revocation-max-wait for a fetch on a token request (the next requests get
    the answer); explain has no next request, so it waits for every fetch to end (each is
    bounded by --revocation-fetch-timeout)."""
    import dataclasses

    from authz.certificates.check import check_client_certificate
    from authz.certificates.rejection import CertificateRejected
    from authz.certificates.revocation.checker import RevocationChecker

    checker = RevocationChecker(dataclasses.replace(config, max_wait=_fetches_end(config)))
    try:
        await checker.start(validator.known_cas())
        try:
            path = validator.validate(presented)
        except CertificateRejected:
            path = None  # refused before revocation matters: the traced check says why
        if path is not None:
            # Each round waits for what is under way; what that brings may start more (a CRL
            # fetched, then its signature checked; an intermediate's CRL after the leaf's).
            for _ in range(_PREPARE_ROUNDS):
                await checker.prepare(presented, path)
        check_client_certificate(client, presented, validator, checker, trace=trace)
    finally:
        await checker.close()


# Rounds of prepare(): a round returns at once when nothing is under way.
_PREPARE_ROUNDS = 4


def _fetches_end(config: RevocationConfig) -> float:
    # A CRL and an OCSP answer per certificate of the path, fetched at the same time, then
    # parsed and their signatures checked one after another off the event loop (a CRL may be
    # 10 MiB): the fetch timeout and a wide margin; explain is run by a person who waits.
    return config.fetch_timeout + 10.0


def _read_chain(path: Path) -> list[bytes]:
    """The DER certificates of a file, unparsed: parsing is the check's first step."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _CannotExplain(f"cannot read {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN" not in data:
        if not data.strip():
            raise _CannotExplain(f"{path} is empty")
        return [data]  # DER
    blocks = _PEM_BLOCK.findall(data)
    if not blocks:
        what = "a private key, not a certificate" if b"PRIVATE KEY-----" in data else "no PEM certificate"
        raise _CannotExplain(f"{path} holds {what}")
    try:
        return [base64.b64decode(b"".join(block.split()), validate=True) for block in blocks]
    except ValueError as exc:
        raise _CannotExplain(f"{path}: a PEM block is not base64 ({exc})") from exc


def _client(settings: Settings, client_id: str) -> tuple[RegisteredClient | None, str | None]:
    """The registered client (None if unknown), and why its registration is unusable."""
    from authz.cli.options import with_store
    from authz.clients.directory import ClientDirectory, UnusableRegistration
    from authz.storage.base import RecordStore

    async def lookup(store: RecordStore) -> tuple[RegisteredClient | None, str | None]:
        try:
            return await ClientDirectory(store).get(client_id), None
        except UnusableRegistration as exc:
            return None, f"the registration is unusable: {exc.reason}"

    try:
        return with_store(settings.store_config(), lookup)
    except click.ClickException as exc:
        raise _CannotExplain(exc.message) from exc


def _name(certificate: x509.Certificate, which: str) -> str:
    try:
        return str(getattr(certificate, which).rfc4514_string())
    except ValueError as exc:
        return f"<undecodable: {exc}>"


def _describe(leaf: x509.Certificate) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    key = leaf.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        kind = f"RSA {key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        kind = f"EC {key.curve.name}"
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        kind = type(key).__name__.removeprefix("_").removesuffix("PublicKey")
    else:
        kind = type(key).__name__
    return f"{_name(leaf, 'subject')} ({kind} key)"


def _anchor_file(sha256_hex: str, settings: Settings) -> str:
    """The trust anchor file holding the certificate with this SHA-256."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    for path in settings.trust_anchors:
        try:
            for certificate in x509.load_pem_x509_certificates(Path(path).read_bytes()):
                if certificate.fingerprint(hashes.SHA256()).hex() == sha256_hex:
                    return f"{sha256_hex} (in {path})"
        except (OSError, ValueError):
            continue
    return sha256_hex


def _key_problem(presented: PresentedCertificate, key_file: Path) -> str | None:
    """Why ``key_file`` is not the private key of the presented certificate, or None."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except OSError as exc:
        raise _CannotExplain(f"cannot read {key_file}: {exc.strerror or exc}") from exc
    except TypeError:
        return f"{key_file} is encrypted; explain needs it unencrypted to compare it"
    except ValueError as exc:
        return f"{key_file} is not a PEM private key ({exc})"

    def spki(public: Any) -> bytes:
        return bytes(public.public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo))

    if spki(key.public_key()) != spki(presented.leaf.public_key()):
        return (f"{key_file} is not the certificate's private key: the TLS handshake would fail "
                "(the client cannot sign its CertificateVerify with the certificate's key)")
    return None


def _fix_client(client_id: str, unusable: str | None) -> str:
    if unusable is not None:
        return (f"repair the registration (authz clients update {shlex.quote(client_id)} ...) or register it anew "
                f"(authz clients add {shlex.quote(client_id)} --replace ...)")
    return (f"register the client (authz clients add {shlex.quote(client_id)} ...), or check --client-id and "
            "--data-dir/--store: they must be the server's")


def _fix(refusal: CertificateRejected, client: RegisteredClient | None, presented: PresentedCertificate | None,
         trace: CheckTrace, cert_file: Path, settings: Settings) -> str:
    """The change that would make the certificate authenticate the client."""
    from authz.certificates.rejection import RejectionReason as R

    reason = refusal.reason
    # Refusals of the parse, before any client is involved.
    if reason is R.UNPARSABLE:
        return f"the file does not hold a usable X.509 certificate ({refusal.detail}): export it again, leaf first"
    if reason is R.CHAIN_TOO_LARGE:
        return "send the leaf and its intermediates only: " + refusal.detail
    if reason is R.UNSUPPORTED_KEY:
        from authz.certificates.limits import ACCEPTED_KEYS

        return f"issue the certificate with an accepted key ({ACCEPTED_KEYS}); this one has: {refusal.detail}"
    assert client is not None and presented is not None  # the check ran
    client_id = shlex.quote(client.client_id)
    cert = shlex.quote(str(cert_file))
    if reason is R.SELF_SIGNED:
        return (f"to authenticate with this certificate, register the client for it: authz clients add {client_id} "
                f"--replace --auth-method self_signed_tls_client_auth --cert {cert} (with its --scope and "
                "--resource); or give the client a certificate issued by a trusted CA")
    if reason in (R.EXPIRED, R.NOT_YET_VALID):
        leaf = presented.leaf
        if reason is R.EXPIRED:
            return f"renew the certificate: it expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        return (f"wait until {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC, when it becomes valid, or check the "
                "clock of the machine that issued it and of this server")
    if reason is R.EKU_NOT_CLIENT_AUTH:
        step = trace.step("eku")
        usages = dict(step.facts).get("extended_key_usage", "") if step else ""
        return f"issue the certificate with extendedKeyUsage clientAuth (it allows: {usages})"
    if reason is R.UNTRUSTED_CHAIN:
        anchors = ", ".join(str(p) for p in settings.trust_anchors) or "none configured"
        return (f"its issuer ({_name(presented.leaf, 'issuer')}) leads to no trust anchor (anchors: {anchors}): "
                "add the CA that issued it with --trust-anchor (serve and explain; then kill -HUP the server), give "
                "the missing intermediates with --chain (the client must send them) or --intermediate, or issue the "
                "certificate from a trusted CA")
    if reason is R.CHAIN_TOO_LONG:
        return "issue the certificate from a CA closer to the trust anchor (at most 8 intermediates)"
    if reason in (R.SUBJECT_DN_MISMATCH, R.SAN_DNS_MISMATCH, R.SAN_URI_MISMATCH, R.SAN_IP_MISMATCH,
                  R.SAN_EMAIL_MISMATCH):
        return _fix_subject(client, presented)
    if reason is R.NOT_REGISTERED:
        fix = (f"register this certificate beside the client's others: authz clients update {client_id} "
               f"--add-cert {cert}")
        leaf = presented.leaf
        if leaf.subject.public_bytes() != leaf.issuer.public_bytes():
            fix += (f"; it is issued by {_name(leaf, 'issuer')}: a client authenticating with it would rather use "
                    f"tls_client_auth (--subject-dn {shlex.quote(_name(leaf, 'subject'))})")
        return fix
    if reason is R.CA_PIN_MISMATCH:
        return (f"the client is pinned to another CA ({refusal.detail}): issue the certificate from the pinned CA, "
                f"or pin the client to the CA that issued it: authz clients update {client_id} --pin-ca CA_FILE "
                f"(or --no-pin-ca)")
    if reason is R.REVOKED:
        return "the certificate is revoked: issue the client a new certificate"
    if reason is R.CA_REVOKED:
        return (f"a CA of its chain is revoked ({refusal.detail}): issue the client a new certificate from a CA "
                "that is not revoked")
    if reason is R.REVOCATION_UNKNOWN:
        return (f"no fresh revocation data ({refusal.detail}): make the CRL distribution point or OCSP responder "
                "reachable from the server, replace the --crl file with a current CRL, or run the server with "
                "--revocation-policy soft-fail")
    if reason is R.JWKS_URI_UNAVAILABLE:
        return (f"the server could not fetch the client's jwks_uri ({refusal.detail}): make it reachable, or "
                "register the certificates themselves (authz clients update ... --add-cert)")
    return f"the validator refuses the chain: {refusal.detail}; issue the certificate anew from a trusted CA"


# The steps of each method, in the order the check takes them.
_STEPS = {"tls_client_auth": ("validity", "eku", "chain", "subject", "ca_pin", "revocation"),
          "self_signed_tls_client_auth": ("registered",)}

_WHAT = {"tls_client_auth_subject_dn": "subject DN", "tls_client_auth_san_dns": "dNSName SAN",
         "tls_client_auth_san_uri": "URI SAN", "tls_client_auth_san_ip": "iPAddress SAN",
         "tls_client_auth_san_email": "rfc822Name SAN"}
_OPTIONS = {"tls_client_auth_subject_dn": "--subject-dn", "tls_client_auth_san_dns": "--san-dns",
            "tls_client_auth_san_uri": "--san-uri", "tls_client_auth_san_ip": "--san-ip",
            "tls_client_auth_san_email": "--san-email"}


def _fix_subject(client: RegisteredClient, presented: PresentedCertificate) -> str:
    matcher = client.subject
    assert matcher is not None  # a tls_client_auth client
    option = _OPTIONS[matcher.parameter]
    values = matcher.presented_values(presented)
    client_id = shlex.quote(client.client_id)
    what = _WHAT[matcher.parameter]
    if values:
        register = " or ".join(f"authz clients update {client_id} {option} {shlex.quote(v)}" for v in values[:3])
        return (f"register what the certificate carries ({register}), or issue a certificate with the {what} "
                f"{client.subject_value!r}")
    return (f"the certificate has no {what}: issue one with the {what} {client.subject_value!r}, or register the "
            f"certificate's subject instead (authz clients update {client_id} "
            f"--subject-dn {shlex.quote(_name(presented.leaf, 'subject'))})")
