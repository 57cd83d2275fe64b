"""Loads the hypothesis profile before any fuzz module is collected."""

from __future__ import annotations

import pytest

from tests.fuzz import profiles  # noqa: F401  (registers and loads the profile)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A failing example of 16-64 KiB (the large inputs these tests make on purpose) has a repr
    # over hypothesis' 30,000-character warning threshold; with warnings as errors, that
    # warning would replace the failure it reports.
    for item in items:
        if item.nodeid.startswith("tests/fuzz/"):
            item.add_marker(pytest.mark.filterwarnings(
                "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"))
