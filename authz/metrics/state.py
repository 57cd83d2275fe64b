"""The process's metrics, once installed (``authz.metrics.instruments.install``); None while
metrics are off. A module attribute rather than a constructor argument: the TLS listener and
the HTTP layer count before (and beneath) any application object."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from authz.metrics.instruments import ServerMetrics

__all__ = ["ACTIVE"]

ACTIVE: ServerMetrics | None = None
