"""Prometheus metrics at ``/metrics``.

Counters and histograms live in this module and are updated where things happen (pipeline,
outbox, HTTP middleware). Under ``datagate serve`` they are multi-process: ``serve`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before any worker starts, every worker writes its
values there, and whichever worker answers a scrape sums them all (prometheus-client's
multiprocess mode). The lineage outbox backlog is read from the database at scrape time, so
every replica reports the shared outbox's true size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.outbox import LineageDelivery

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The label value for anything outside a bounded set (undeclared columns, unknown checks):
# label values never carry text an uploader chose.
OTHER = "(other)"

# Created without a registry: in multi-process mode values go to files, otherwise
# ``_LOCAL`` collects them.
UPLOADS = Counter(
    "datagate_uploads",
    "Uploads by dataset and outcome (accepted, quarantined, matched, rejected, failed).",
    ["dataset", "outcome"],
    registry=None,
)
ROWS = Counter("datagate_ingested_rows", "Rows in accepted uploads.", ["dataset"], registry=None)
BYTES = Counter(
    "datagate_ingested_bytes", "Bytes received in accepted uploads.", ["dataset"], registry=None
)
STAGE_SECONDS = Histogram(
    "datagate_stage_duration_seconds",
    "Seconds spent in each ingest stage.",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=None,
)
VALIDATION_FAILURES = Counter(
    "datagate_validation_failures",
    "Uploads in which a contract check failed, by contract, column and check.",
    ["contract", "column", "check"],
    registry=None,
)
PII_REDACTED = Counter(
    "datagate_pii_values_redacted",
    "Personal-data values (cells or free-text spans) redacted, by entity type.",
    ["entity"],
    registry=None,
)
LINEAGE_DELIVERY_FAILURES = Counter(
    "datagate_lineage_delivery_failures",
    "Failed attempts to deliver lineage events to the OpenLineage transport.",
    registry=None,
)
HTTP_SECONDS = Histogram(
    "datagate_http_request_duration_seconds",
    "HTTP request latency by method, route template and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=None,
)
QUARANTINE_ROWS = Counter(
    "datagate_quarantine_rows",
    "Rows held back for review by dataset and what became of them (held, replayed, "
    "discarded, expired).",
    ["dataset", "outcome"],
    registry=None,
)
_ALL: tuple[Counter | Histogram, ...] = (
    QUARANTINE_ROWS,
    UPLOADS,
    ROWS,
    BYTES,
    STAGE_SECONDS,
    VALIDATION_FAILURES,
    PII_REDACTED,
    LINEAGE_DELIVERY_FAILURES,
    HTTP_SECONDS,
)


class _Local(Collector):
    """This process's metrics, when not in multi-process mode."""

    def collect(self) -> Iterable[Metric]:
        for metric in _ALL:
            yield from metric.collect()


class LineageCollector(Collector):
    """Outbox size and the age of its oldest event, read from the database."""

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


class QueueCollector(Collector):
    """Uploads waiting for a worker and the age of the oldest, read from the database."""

    def __init__(self, state: Callable[[], tuple[int, float | None]]) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        waiting, oldest = self.state()
        yield GaugeMetricFamily(
            "datagate_ingest_queue_depth",
            "Asynchronous uploads waiting for a worker.",
            value=waiting,
        )
        yield GaugeMetricFamily(
            "datagate_ingest_queue_oldest_seconds",
            "How long the oldest waiting upload has waited (0 when none).",
            value=oldest or 0.0,
        )


class QuarantineCollector(Collector):
    """Open quarantine batches and the rows they hold, per dataset, read from the database."""

    def __init__(self, state: Callable[[], dict[str, tuple[int, int]]]) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        batches = GaugeMetricFamily(
            "datagate_quarantine_open_batches",
            "Quarantine batches waiting for review, by dataset.",
            labels=["dataset"],
        )
        rows = GaugeMetricFamily(
            "datagate_quarantine_held_rows",
            "Rows held in open quarantine batches, by dataset.",
            labels=["dataset"],
        )
        for dataset, (count, held) in sorted(self.state().items()):
            batches.add_metric([dataset], count)
            rows.add_metric([dataset], held)
        yield batches
        yield rows


# (dataset, column, statistic or None for "drifted", value)
DriftGauge = tuple[str, str, str | None, float]


class DriftCollector(Collector):
    """Each dataset's latest drift figures against its previous version, per declared column
    (column names an upload chose never become labels), read from the database."""

    def __init__(self, state: Callable[[], list[DriftGauge]]) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        figures = GaugeMetricFamily(
            "datagate_drift_statistic",
            "Drift of each dataset's latest version against its previous one, per column and "
            "statistic (psi, ks, wasserstein, jensen_shannon, null_rate, distinct).",
            labels=["dataset", "column", "statistic"],
        )
        drifted = GaugeMetricFamily(
            "datagate_drift_drifted",
            "1 when the column of the dataset's latest version drifted, else 0.",
            labels=["dataset", "column"],
        )
        for dataset, column, statistic, value in self.state():
            if statistic is None:
                drifted.add_metric([dataset, column], value)
            else:
                figures.add_metric([dataset, column, statistic], value)
        yield figures
        yield drifted


def multiprocess_dir() -> str | None:
    """The folder shared by the worker processes, when metrics are multi-process."""
    return os.environ.get(MULTIPROC_ENV) or None


def build_registry(
    delivery: LineageDelivery,
    queue: Callable[[], tuple[int, float | None]],
    quarantine: Callable[[], dict[str, tuple[int, int]]] | None = None,
    drift: Callable[[], list[DriftGauge]] | None = None,
) -> CollectorRegistry:
    """The registry ``/metrics`` exposes: all workers' metrics plus the outbox backlog and the
    ingest queue."""
    registry = CollectorRegistry(auto_describe=False)
    folder = multiprocess_dir()
    if folder:
        MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Local())
    registry.register(LineageCollector(delivery))
    registry.register(QueueCollector(queue))
    if quarantine is not None:
        registry.register(QuarantineCollector(quarantine))
    if drift is not None:
        registry.register(DriftCollector(drift))
    return registry
