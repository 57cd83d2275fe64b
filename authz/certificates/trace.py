"""The steps of one certificate check, for ``authz explain``.

``check_client_certificate`` (and the ``ChainValidator`` it calls) take an optional
``CheckTrace`` and record each step they take, with its verdict and the values it compared.
The endpoints pass none: the check they run is the same code, and costs a ``None`` test per
step. ``authz explain`` passes one and prints it, so what it shows is what the token endpoint
decides, not a second implementation of it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["CheckTrace", "Step", "StepVerdict"]


class StepVerdict(enum.Enum):
    PASSED = "ok"
    FAILED = "FAIL"
    SKIPPED = "skip"  # not part of this check (e.g. no revocation source configured)


@dataclass(frozen=True)
class Step:
    """One step: ``name`` (``chain``, ``validity``, ...), its verdict, one line saying what was
    found, and the values behind it in order (for example ``registered`` and ``presented``)."""

    name: str
    verdict: StepVerdict
    summary: str
    facts: tuple[tuple[str, str], ...] = ()


@dataclass
class CheckTrace:
    steps: list[Step] = field(default_factory=list)

    def record(self, name: str, verdict: StepVerdict, summary: str, **facts: str) -> None:
        self.steps.append(Step(name, verdict, summary, tuple(facts.items())))

    def passed(self, name: str, summary: str, **facts: str) -> None:
        self.record(name, StepVerdict.PASSED, summary, **facts)

    def failed(self, name: str, summary: str, **facts: str) -> None:
        self.record(name, StepVerdict.FAILED, summary, **facts)

    def skipped(self, name: str, summary: str, **facts: str) -> None:
        self.record(name, StepVerdict.SKIPPED, summary, **facts)

    def step(self, name: str) -> Step | None:
        """The last step recorded under ``name``."""
        return next((s for s in reversed(self.steps) if s.name == name), None)
