"""tls_client_auth_subject_dn: spellings of one DN match it (RFC 4517 distinguishedNameMatch),
other DNs do not. Each spelling is registered for a client "spelling-<name>"; all present
the certificate with the subject material.SPELLING_SUBJECT."""

import pytest

from authz.certificates.rejection import RejectionReason
from tests.wire.client import WireClient, assert_invalid_client, assert_token_response
from tests.wire.material import DN_SPELLINGS_MATCHING, DN_SPELLINGS_NOT_MATCHING, WirePKI

pytestmark = pytest.mark.wire


@pytest.mark.parametrize("spelling", DN_SPELLINGS_MATCHING)
def test_spelling_matches(wire: WireClient, pki: WirePKI, spelling: str) -> None:
    body = assert_token_response(wire.token(pki["spelling"], f"spelling-{spelling}"))
    assert body["scope"] == "read"


@pytest.mark.parametrize("spelling", DN_SPELLINGS_NOT_MATCHING)
def test_other_dn_does_not_match(wire: WireClient, pki: WirePKI, spelling: str) -> None:
    client_id = f"spelling-{spelling}"
    assert_invalid_client(wire.token(pki["spelling"], client_id), RejectionReason.SUBJECT_DN_MISMATCH, client_id)
