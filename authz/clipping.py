"""Client input in log lines, cut to a bounded length: one request must not be able to write
kilobytes to the operator's log, and the operator must see that a value was cut."""

from __future__ import annotations

__all__ = ["clipped"]


def clipped(value: str | None, limit: int) -> str | None:
    """``value`` if it has at most ``limit`` characters; else its start, marked as cut."""
    if value is None or len(value) <= limit:
        return value
    return f"{value[:limit]}...[{len(value) - limit} more characters]"
