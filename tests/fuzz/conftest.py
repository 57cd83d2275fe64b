"""Loads the hypothesis profile before any fuzz module is collected."""

from tests.fuzz import profiles  # noqa: F401  (registers and loads the profile)
