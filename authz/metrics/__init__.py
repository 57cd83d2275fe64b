"""Metrics (Prometheus text format) and health probes.

Nothing here imports prometheus-client at import time: in multiprocess mode (``--workers N``)
prometheus-client decides how it stores values when it is first imported, from
``PROMETHEUS_MULTIPROC_DIR``, which ``authz serve`` sets before anything imports it. The hot
path reads ``authz.metrics.state.ACTIVE`` (None while metrics are off, so off costs one
attribute read).

What other parts of the server report through here without depending on metrics being on:

- ``revocation_data_updated(source, next_update=..., hard_fail=...)``: the freshness of CRL or
  OCSP data (``authz.metrics.revocation``), for the ``authz_revocation_data_*`` gauges and the
  ``revocation_data`` readiness check.
"""

from authz.metrics.revocation import REVOCATION_DATA, RevocationDataRegistry, revocation_data_updated

__all__ = ["REVOCATION_DATA", "RevocationDataRegistry", "revocation_data_updated"]
