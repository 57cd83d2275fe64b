"""A second look at a registration that validates (``RegisteredClient.from_metadata``): what is
legal but likely a mistake, said as warnings, and what the operator chose to refuse.

Run by ``authz clients add``/``update`` and the registration API before they store a client;
never when a stored client is loaded (the server must keep serving what was registered).
"""

from __future__ import annotations

import datetime

from cryptography import x509

from authz.certificates.distinguished_name import most_general_first
from authz.certificates.thumbprint import x5t_s256
from authz.clients.model import InvalidClientMetadata, RegisteredClient

__all__ = ["EXPIRY_WARNING_DAYS", "review_registration"]

# A registered self-signed certificate expiring within this many days gets a warning: time
# to register its successor beside it.
EXPIRY_WARNING_DAYS = 30


def review_registration(client: RegisteredClient, *, refuse_expired: bool = False,
                        now: datetime.datetime | None = None) -> list[str]:
    """The warnings about ``client``'s registration; ``InvalidClientMetadata`` when
    ``refuse_expired`` and a registered certificate has expired."""
    now = now or datetime.datetime.now(datetime.UTC)
    warnings: list[str] = []
    if client.subject is not None and client.subject.parameter == "tls_client_auth_subject_dn":
        reversed_dn = most_general_first(str(client.subject_value))
        if reversed_dn is not None:
            warnings.append(
                f"tls_client_auth_subject_dn {client.subject_value!r} lists the most general RDN first, and "
                "RFC 4514 the most specific: it matches only a certificate whose subject is in that order. If "
                f"the certificate's subject ends with {reversed_dn.split(',')[0]!r} (openssl's default output "
                f"shows it last), register {reversed_dn!r}")
    expired: list[str] = []
    for der in sorted(client.registered_certificates):
        certificate = x509.load_der_x509_certificate(der)
        which = f"the registered certificate x5t#S256={x5t_s256(der)} ({certificate.subject.rfc4514_string()})"
        not_after = certificate.not_valid_after_utc
        if not_after <= now:
            expired.append(f"{which} expired on {not_after:%Y-%m-%d}")
        elif not_after - now <= datetime.timedelta(days=EXPIRY_WARNING_DAYS):
            days = (not_after - now).days
            warnings.append(f"{which} expires on {not_after:%Y-%m-%d} (in {days} day(s)): register its successor "
                            f"beside it before then (authz clients update {client.client_id} --add-cert NEW)")
    if expired and refuse_expired:
        raise InvalidClientMetadata(f"{'; '.join(expired)}: expired certificates are refused here; register a "
                                    "current one")
    warnings += [f"{problem}: this server still accepts it (a self-signed certificate is matched byte for byte, "
                 "RFC 8705 section 2.2), but TLS proxies and client libraries may refuse it; register a new one "
                 "and remove this one" for problem in expired]
    return warnings
