"""Property-based fuzzing (hypothesis) of everything that reads client input before the client
is authenticated: the RFC 4514 DN parser, the form parser and body reader of /token,
/introspect and /revoke, client metadata and subject validation, the resource server's bearer
header and JWT pre-verification parsing, the endpoints end to end in process, and the HTTP
layer's protocol fed raw bytes.

Each property says what the code promises for *any* input: a result, or only the documented
refusal (``InvalidDistinguishedName``, ``MalformedForm``, ``InvalidClientMetadata``, an
OAuth/RFC 6750 error answer), never another exception, never a 500, and within a deadline
that a quadratic path on the largest input a client may send would miss.

Two hypothesis profiles (``tests/fuzz/profiles.py``), chosen by ``HYPOTHESIS_PROFILE``:

- ``ci`` (the default, what ``./scripts/test.sh`` runs): a fixed budget of examples per
  property, derandomized: the same command on the same code tries the same inputs, so a CI
  failure reproduces with the same command (hypothesis also draws on the literals of the
  loaded modules: one file run alone may try other inputs; a failure prints its example and a
  ``@reproduce_failure`` blob). The whole package takes about 25 s.
- ``long``: random, many times more examples per property, failures saved to ``.hypothesis/``
  (git-ignored) and replayed first on the next run. By hand, for minutes::

      HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/fuzz -q

  ``FUZZ_SCALE=N`` multiplies the long profile's budget (default 40).
"""
