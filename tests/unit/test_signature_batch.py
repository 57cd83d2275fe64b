"""Tokens queued in one event-loop turn are signed together, each correctly, and a signing
failure reaches only the request it belongs to."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from authz.tokens.compact_signer import ES256CompactSigner
from authz.tokens.signature_batch import SignatureBatch


def _signer() -> tuple[ES256CompactSigner, ECKey]:
    key = ECKey.generate_key("P-256", private=True)
    return ES256CompactSigner(key.private_key, {"alg": "ES256", "typ": "at+jwt", "kid": "k"}), key


class RecordingSigner:
    """Signs with ``inner``, records each signing input it signs, fails on ``fail_on``."""

    def __init__(self, inner: ES256CompactSigner, fail_on: bytes | None = None) -> None:
        self.inner = inner
        self.fail_on = fail_on
        self.signed: list[bytes | str] = []

    def signing_input(self, claims: dict[str, Any]) -> bytes:
        return self.inner.signing_input(claims)

    def sign_input(self, signing_input: bytes) -> str:
        self.signed.append(signing_input)
        if signing_input == self.fail_on:
            raise RuntimeError("HSM unplugged")
        return self.inner.sign_input(signing_input)


async def test_tokens_of_one_turn_are_signed_back_to_back_and_each_verifies() -> None:
    inner, key = _signer()
    signer = RecordingSigner(inner)
    batch = SignatureBatch()
    events = signer.signed  # signing inputs, then the requests going on, in order

    async def request(i: int) -> str:
        token = await batch.sign(signer, {"sub": f"client-{i}", "n": i})
        events.append(f"resumed {i}")
        return token

    tokens = await asyncio.gather(*(request(i) for i in range(8)))
    # All eight were signed before the first request went on: one batch, not eight.
    assert [type(e) for e in events] == [bytes] * 8 + [str] * 8
    for i, token in enumerate(tokens):
        assert jwt.decode(token, key, algorithms=["ES256"]).claims == {"sub": f"client-{i}", "n": i}
    # A later turn starts a new batch.
    assert jwt.decode(await batch.sign(signer, {"sub": "later"}), key, algorithms=["ES256"]).claims == {"sub": "later"}


async def test_a_failing_signature_fails_only_its_own_request() -> None:
    inner, key = _signer()
    signer = RecordingSigner(inner, fail_on=inner.signing_input({"sub": "bad"}))
    batch = SignatureBatch()
    good1 = batch.sign(signer, {"sub": "good1"})
    failing = batch.sign(signer, {"sub": "bad"})
    good2 = batch.sign(signer, {"sub": "good2"})
    with pytest.raises(RuntimeError, match="HSM unplugged"):
        await failing
    assert jwt.decode(await good1, key, algorithms=["ES256"]).claims == {"sub": "good1"}
    assert jwt.decode(await good2, key, algorithms=["ES256"]).claims == {"sub": "good2"}
    assert len(signer.signed) == 3


async def test_a_cancelled_request_is_not_signed() -> None:
    inner, _ = _signer()
    signer = RecordingSigner(inner)
    batch = SignatureBatch()
    gone = batch.sign(signer, {"sub": "gone"})
    kept = batch.sign(signer, {"sub": "kept"})
    gone.cancel()
    await kept
    assert signer.signed == [inner.signing_input({"sub": "kept"})]


def test_signing_needs_a_running_event_loop() -> None:
    signer, _ = _signer()
    with pytest.raises(RuntimeError):
        SignatureBatch().sign(signer, {"sub": "x"})


async def test_claims_that_cannot_be_encoded_fail_at_once_and_queue_nothing() -> None:
    signer, key = _signer()
    batch = SignatureBatch()
    with pytest.raises(TypeError):
        batch.sign(signer, {"sub": object()})
    assert jwt.decode(await batch.sign(signer, {"sub": "next"}), key, algorithms=["ES256"]).claims == {"sub": "next"}
