"""The hypothesis profiles of the fuzz package (see ``tests/fuzz/__init__.py``) and ``budget``,
which scales each property's own number of examples to the profile in force."""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

__all__ = ["PROFILE", "budget"]

# Generating structured inputs (certificates, JWTs, forms of thousands of fields) is slower
# than hypothesis expects of a strategy; the deadline still bounds the code under test.
_SLOW_GENERATION = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]

settings.register_profile(
    "ci",
    # The same examples on every run of the same command on the same code: a red CI run is
    # reproduced by running it again, and a green one cannot turn red because chance picked a
    # new input.
    derandomize=True,
    deadline=timedelta(milliseconds=500),
    suppress_health_check=_SLOW_GENERATION,
    print_blob=True,
)
settings.register_profile(
    "long",
    derandomize=False,  # new inputs each run; failures are kept in .hypothesis/ and replayed first
    deadline=timedelta(milliseconds=500),
    suppress_health_check=_SLOW_GENERATION,
    print_blob=True,
)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)
_SCALE = int(os.environ.get("FUZZ_SCALE", "40")) if PROFILE == "long" else 1


def budget(examples: int, *, deadline_ms: int = 500) -> settings:
    """Settings for one property: ``examples`` in the ci profile (the long one multiplies
    it), and a per-example deadline. Deadlines are far above what any example takes on an
    idle machine (parsers: well under 10 ms for the largest input) so that a loaded 2-core
    machine does not trip them, and far below what a quadratic path on a 16 KiB input costs."""
    return settings(max_examples=examples * _SCALE, deadline=timedelta(milliseconds=deadline_ms))
