"""Counts on the token path, kept in plain Python numbers and added to prometheus-client's
shared values once a second (``ServerMetrics.flush``).

In multiprocess mode each increment of a prometheus-client value takes a lock and writes to a
memory-mapped file. That is about 1 µs in a loop, but measured 3-5 times more inside a
request, whose own work has evicted what that write needs from the CPU's caches: with a
counter and a histogram per token, about 8 % of a token's CPU. Here the request adds to an
integer and a list; the flush, on the worker's event loop, makes the writes once per second
for all the requests of that second. A scrape sees a count at most a second late.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

__all__ = ["LocalCounter", "LocalHistogram"]


class LocalCounter:
    """One labelled counter child's increments, pending until ``flush``."""

    __slots__ = ("_child", "pending")

    def __init__(self, child: Any) -> None:
        self._child = child
        self.pending = 0

    def inc(self) -> None:
        self.pending += 1

    def flush(self) -> None:
        pending, self.pending = self.pending, 0
        if pending:
            self._child.inc(pending)


class LocalHistogram:
    """One labelled histogram child's observations, bucketed here and added to its values by
    ``flush``. That needs the child's bucket and sum values, which prometheus-client keeps in
    ``_buckets`` and ``_sum`` (since its first multiprocess release); should a version not
    have them, each observation goes to the child directly instead: slower, never wrong."""

    __slots__ = ("_bounds", "_buckets", "_child", "_counts", "_sum", "_total", "observe")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._bounds = tuple(getattr(child, "_upper_bounds", ()))
        self._buckets = getattr(child, "_buckets", None)
        self._sum = getattr(child, "_sum", None)
        self._counts = [0] * len(self._bounds)
        self._total = 0.0
        usable = (self._buckets is not None and self._sum is not None and len(self._buckets) == len(self._bounds)
                  and bool(self._bounds) and self._bounds[-1] == float("inf"))
        # Bound once: the hot path calls one or the other without a test.
        self.observe = self._observe_locally if usable else child.observe

    def _observe_locally(self, value: float) -> None:
        # The first upper bound >= value: Prometheus buckets are "le".
        self._counts[bisect_left(self._bounds, value)] += 1
        self._total += value

    def flush(self) -> None:
        if self._buckets is None or self._sum is None or not any(self._counts):
            return
        counts, self._counts = self._counts, [0] * len(self._bounds)
        total, self._total = self._total, 0.0
        for value, count in zip(self._buckets, counts, strict=True):
            if count:
                value.inc(count)
        self._sum.inc(total)
