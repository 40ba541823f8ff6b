"""Prometheus metrics at ``/metrics``: the lineage outbox backlog and delivery failures.

The backlog is read from the database at scrape time, so every replica reports the shared
outbox's true size.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.outbox import LineageDelivery


class LineageCollector(Collector):
    """Outbox size, age of its oldest event, and this process's failed deliveries."""

    def __init__(self, delivery: LineageDelivery) -> None:
        self.delivery = delivery

    def collect(self) -> Iterator[Metric]:
        backlog = self.delivery.backlog()
        yield GaugeMetricFamily(
            "datagate_lineage_outbox_pending",
            "Lineage events stored but not yet delivered to the OpenLineage transport.",
            value=backlog["pending"],
        )
        yield GaugeMetricFamily(
            "datagate_lineage_outbox_oldest_pending_seconds",
            "Age of the oldest undelivered lineage event (0 when none).",
            value=backlog["oldest_pending_seconds"] or 0.0,
        )
        yield CounterMetricFamily(
            "datagate_lineage_delivery_failures",
            "Failed lineage delivery attempts in this process.",
            value=backlog["delivery_failures"],
        )


def build_registry(delivery: LineageDelivery) -> CollectorRegistry:
    """A registry holding Datagate's collectors."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LineageCollector(delivery))
    return registry
