"""Reading a running server's metrics listener (``--metrics-listen``) the way Prometheus and
probes do: plain HTTP, the text format parsed by prometheus-client's own parser."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from authz.metrics.instruments import FLUSH_INTERVAL

__all__ = ["MetricsEndpoint", "Scrape"]

SampleKey = tuple[str, frozenset[tuple[str, str]]]


@dataclass(frozen=True)
class Scrape:
    samples: dict[SampleKey, float]
    text: str

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 for a series that does not exist (yet)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def series(self, name: str) -> list[dict[str, str]]:
        """The label sets of every sample called ``name``."""
        return [dict(labels) for sample, labels in self.samples if sample == name]

    def names(self) -> set[str]:
        """Every sample name, and every family announced (with or without samples yet)."""
        announced = set(re.findall(r"^# TYPE (\S+) ", self.text, flags=re.MULTILINE))
        return {name for name, _ in self.samples} | announced


@dataclass(frozen=True)
class MetricsEndpoint:
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, **options: Any) -> httpx.Response:
        return httpx.get(self.base_url + path, timeout=10, **options)

    def scrape(self) -> Scrape:
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples: dict[SampleKey, float] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return Scrape(samples, response.text)

    def settled_scrape(self) -> Scrape:
        """A scrape that sees every count made before it: the workers add the token path's
        counts to the shared values once a second (FLUSH_INTERVAL)."""
        time.sleep(FLUSH_INTERVAL + 0.5)
        return self.scrape()

    def readiness(self) -> tuple[int, dict[str, Any]]:
        response = self.get("/readyz")
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "no-store"
        document: dict[str, Any] = json.loads(response.content)
        return response.status_code, document

    def wait_for(self, condition: Callable[[Scrape], bool], timeout: float = 15.0) -> Scrape:
        """Scrape until ``condition`` holds (a change the store's feed brings within seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            scrape = self.scrape()
            if condition(scrape):
                return scrape
            if time.monotonic() > deadline:
                raise AssertionError(f"not seen within {timeout} s; last scrape:\n{scrape.text}")
            time.sleep(0.2)
