"""Lineage benchmark: graph, provenance and impact queries on a large history in PostgreSQL.

Run with ``make bench-lineage`` (or ``python -m bench.lineage``). It creates a fresh PostgreSQL
database (``--admin-url``, default the local server), loads a synthetic history — chains of
pipelines 20 jobs deep from Datagate datasets to models, several versions each — and times the
queries the API answers with, at depth 20. Target: p95 < 100 ms for each.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import insert, text
from sqlmodel import Session

from gateway.db import make_engine, migrate
from gateway.graph import lineage_graph, model_provenance, version_impact
from gateway.models import Dataset, DatasetVersion, IngestRun, LineageEdge, LineageEvent

NAMESPACE = "datagate"
TARGET_MS = 100.0


def _load(engine: Any, chains: int, depth: int, versions: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    events: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    datasets: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    stored: list[dict[str, Any]] = []
    event_id = 0

    def add_run(
        job: str, inputs: list[tuple[str, str | None]], outputs: list[tuple[str, str | None]]
    ) -> None:
        nonlocal event_id
        run_id = str(uuid.UUID(int=rng.getrandbits(128)))
        for state in ("START", "COMPLETE"):
            event_id += 1
            events.append(
                {
                    "id": event_id,
                    "origin": "external",
                    "event_kind": "RunEvent",
                    "run_id": run_id,
                    "event_type": state,
                    "job_namespace": job.split(":")[1],
                    "job_name": job.split(":", 2)[2],
                    "event_time": now,
                    "payload": {"eventType": state},
                    "delivered_at": None,
                    "delivery_attempts": 0,
                    "next_attempt_at": None,
                }
            )
            for direction, items in (("in", inputs), ("out", outputs)):
                edges.extend(
                    {
                        "event_id": event_id,
                        "run_id": run_id,
                        "job": job,
                        "dataset": dataset,
                        "direction": direction,
                        "dataset_version": version,
                    }
                    for dataset, version in items
                )

    for chain in range(chains):
        root = f"root_{chain:05d}"
        datasets.append(
            {"id": chain + 1, "name": root, "latest_version": versions, "created_at": now}
        )
        for v in range(1, versions + 1):
            run_id = str(uuid.UUID(int=rng.getrandbits(128)))
            runs.append(
                {
                    "id": run_id,
                    "dataset": root,
                    "status": "accepted",
                    "uploader": f"producer-{chain % 50}",
                    "created_version": True,
                    "started_at": now,
                }
            )
            stored.append(
                {
                    "dataset_id": chain + 1,
                    "number": v,
                    "content_hash": f"{chain:032d}{v:032d}",
                    "row_count": 1000,
                    "byte_size": 10_000,
                    "storage_key": f"{root}/v{v}.parquet",
                    "schema_fields": [],
                    "contract_name": root,
                    "contract_version": "1.0.0",
                    "contract_fingerprint": "f" * 64,
                    "source": "crm:export",
                    "uploader": f"producer-{chain % 50}",
                    "run_id": run_id,
                    "created_at": now + timedelta(days=v),
                }
            )
            previous = f"dataset:{NAMESPACE}:{root}"
            add_run(
                f"job:{NAMESPACE}:ingest.{root}",
                [(f"dataset:crm:export_{chain}", None)],
                [(previous, str(v))],
            )
            for hop in range(1, depth + 1):
                current = f"dataset:warehouse:c{chain:05d}_d{hop:02d}"
                add_run(
                    f"job:etl:c{chain:05d}_step{hop:02d}", [(previous, str(v))], [(current, str(v))]
                )
                previous = current
            add_run(
                f"job:ml:train.m{chain:05d}",
                [(previous, str(v))],
                [(f"dataset:model:m{chain:05d}", str(v))],
            )
            add_run(
                f"job:ml:train.direct{chain:05d}",
                [(f"dataset:{NAMESPACE}:{root}", str(v))],
                [(f"dataset:model:direct{chain:05d}", str(v))],
            )
    with engine.begin() as connection:
        models: list[tuple[Any, list[dict[str, Any]]]] = [
            (Dataset, datasets),
            (IngestRun, runs),
            (DatasetVersion, stored),
            (LineageEvent, events),
            (LineageEdge, edges),
        ]
        for model, rows in models:
            for start in range(0, len(rows), 5_000):
                connection.execute(insert(model), rows[start : start + 5_000])
        connection.execute(text("ANALYZE"))
    dataset_nodes = {e["dataset"] for e in edges}
    return {
        "events": len(events),
        "edges": len(edges),
        "datasets": len(dataset_nodes),
        "models": sum(1 for d in dataset_nodes if d.startswith("dataset:model:")),
    }


def _time(work: Callable[[], Any], repeat: int) -> list[float]:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    """Create the database, load the history, time the three queries."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--admin-url", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    )
    parser.add_argument("--chains", type=int, default=500)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    name = f"datagate_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    params = dict(part.split("=", 1) for part in args.admin_url.split())
    user, host, port = (
        params.get("user", "postgres"),
        params.get("host", "127.0.0.1"),
        params.get("port", "5432"),
    )
    url = f"postgresql+psycopg://{user}@{host}:{port}/{name}"
    engine = make_engine(url)
    try:
        migrate(engine)
        started = time.perf_counter()
        sizes = _load(engine, args.chains, args.depth, args.versions, seed=7)
        loaded = time.perf_counter() - started
        print(
            f"history: {sizes['events']:,} events, {sizes['edges']:,} edges, "
            f"{sizes['datasets']:,} datasets, {sizes['models']:,} models, chains {args.depth} "
            f"jobs deep (loaded in {loaded:.1f} s)"
        )
        rng = random.Random(11)

        def pick_chain() -> int:
            return rng.randrange(args.chains)

        queries: dict[str, Callable[[Session], Any]] = {
            "lineage graph, depth 20, from a root dataset": lambda s: lineage_graph(
                s, f"dataset:{NAMESPACE}:root_{pick_chain():05d}", args.depth
            ),
            "provenance of a model version": lambda s: model_provenance(
                s, NAMESPACE, f"direct{pick_chain():05d}", str(rng.randint(1, args.versions))
            ),
            "impact of a dataset version (20 hops)": lambda s: version_impact(
                s, NAMESPACE, f"root_{pick_chain():05d}", rng.randint(1, args.versions)
            ),
        }
        ok = True
        with Session(engine) as session:
            # The answers are right before they are timed: chain 0's root reaches both models.
            impact = version_impact(session, NAMESPACE, "root_00000", 1)
            assert {(m["model"], m["version"]) for m in impact["models"]} == {
                ("m00000", "1"),
                ("direct00000", "1"),
            }
            assert len(impact["datasets"]) == args.depth
            graph = lineage_graph(session, f"dataset:{NAMESPACE}:root_00000", args.depth)
            # Depth counts jobs: 20 reaches the last of the chain's 20 pipeline steps.
            last = f"dataset:warehouse:c00000_d{args.depth:02d}"
            assert last in {node["id"] for node in graph["graph"]}
            for label, query in queries.items():
                timings = _time(lambda q=query: q(session), args.queries)  # type: ignore[misc]
                p95 = statistics.quantiles(timings, n=20)[18]
                ok &= p95 < TARGET_MS
                verdict = "ok" if p95 < TARGET_MS else "MISS"
                print(
                    f"  {label:46s} p50 {statistics.median(timings):6.1f} ms  p95 {p95:6.1f} ms  "
                    f"max {max(timings):6.1f} ms  ({verdict}, target p95 < {TARGET_MS:.0f} ms)"
                )
        sys.exit(0 if ok else 1)
    finally:
        engine.dispose()
        with psycopg.connect(args.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
