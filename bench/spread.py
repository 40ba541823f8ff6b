"""Spread benchmark: one free-text upload redacted by one worker, then by two.

Run with ``make bench-scale`` (after the scale figures) or ``python -m bench.spread [--rows N]``.
Needs the PostgreSQL of the project machine (127.0.0.1:5432, user postgres; a database of its
own is created and dropped). In one run:

- a CSV of support tickets (default 200,000 rows), every row with a note of its own in free
  text, about a third naming a person, an e-mail address or a phone number (``bench.pii_data``);
- a `datagate serve` that only queues (every body is over its synchronous limit), and 1, then 2
  `datagate worker` processes; each worker is pinned to a CPU of its own (with its PII detector
  processes), as if each were a one-CPU machine: on this two-CPU machine that is the only fair
  way to ask whether a second machine makes an upload faster;
- the same upload through each, timed from the first byte sent to the version recorded.

Target (issue 14): two workers >= 1.6 x the throughput of one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from bench.serve import DATAGATE, ServeProcess

TARGET = 1.6
API_KEY = "bench-admin-key-" + "s" * 32
PII_KEY = "bench-pii-key-" + "p" * 40
PART_ROWS = 10_000
CONTRACT = """
import datetime

import pandera.polars as pa


class Tickets(pa.DataFrameModel):
    ticket_id: str = pa.Field(unique=True)
    opened_on: datetime.date
    amount: float = pa.Field(ge=0)
    country: str = pa.Field(isin=["US", "GB", "DE", "FR", "NL", "CA"])
    notes: str = pa.Field(nullable=True, metadata={"pii": "scan"})

    class Config:
        name = "tickets"
        metadata = {"version": "1.0.0", "owner": "bench"}
"""


def tickets(rows: int) -> pl.DataFrame:
    """``rows`` tickets, each note different (so none is analysed from another's result):
    Faker's notes for a base of rows, each repeated with its own ticket reference."""
    from bench.pii_data import mixed_table

    base = mixed_table(min(rows, 10_000), seed=7).frame
    frame = pl.concat([base] * (rows // base.height + 1)).head(rows)
    number = pl.int_range(0, rows, eager=True)
    return frame.select(
        pl.format("T-{}", number).alias("ticket_id"),
        "opened_on",
        "amount",
        "country",
        pl.format("{} (ref {})", "notes", number).alias("notes"),
    )


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database on the project machine's server."""
    import psycopg

    name = f"datagate_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _environment(work: Path, database_url: str, contracts: Path) -> dict[str, str]:
    return {
        "DATAGATE_DATABASE_URL": database_url,
        "DATAGATE_CONTRACTS_DIR": str(contracts),
        "DATAGATE_ADMIN_KEY": API_KEY,
        "DATAGATE_PII_KEY": PII_KEY,
        "DATAGATE_STORAGE_URL": str(work / "snapshots"),
        "DATAGATE_SYNC_MAX_BYTES": "1000",
        "DATAGATE_MAX_UPLOAD_BYTES": str(1 << 40),
        "DATAGATE_MAX_DECODED_BYTES": str(1 << 40),
        "DATAGATE_INGEST_CHUNK_ROWS": str(PART_ROWS),
        "DATAGATE_LOG_LEVEL": "warning",
    }


def _start_worker(work: Path, name: str, cpu: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    settings = {**os.environ, **env, "DATAGATE_HOME": str(work / name)}
    log = (work / f"{name}.log").open("w")
    return subprocess.Popen(
        [DATAGATE, "worker", "--concurrency", "1"],
        env=settings,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),  # its detector processes inherit it
    )


def _registered(database_url: str) -> int:
    import psycopg

    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as connection:
        row = connection.execute("SELECT count(*) FROM gateway_instance").fetchone()
    return int(row[0]) if row else 0


def ingest(csv: Path, workers: int, work: Path, contracts: Path) -> dict[str, Any]:
    """Upload ``csv`` to a fresh gateway with ``workers`` pinned workers; time it."""
    work.mkdir()
    with postgres_database() as database_url:
        env = _environment(work, database_url, contracts)
        server = ServeProcess(work / "api", database_url, work / "api.log", env=env).wait_ready()
        started = [_start_worker(work, f"worker{i}", i, env) for i in range(workers)]
        try:
            deadline = time.monotonic() + 300
            while _registered(database_url) < workers + 1:  # the workers, and the API
                if time.monotonic() > deadline or any(w.poll() is not None for w in started):
                    raise SystemExit(f"workers did not start; see {work}")
                time.sleep(0.5)
            headers = {"Authorization": f"Bearer {API_KEY}"}
            with httpx.Client(base_url=server.base, headers=headers, timeout=None) as client:
                began = time.perf_counter()
                answer = client.post(
                    "/api/v1/datasets/tickets/uploads",
                    content=csv.read_bytes(),
                    headers={"Content-Type": "text/csv"},
                )
                if answer.status_code != 202:
                    raise SystemExit(f"upload answered {answer.status_code}: {answer.text}")
                while True:
                    run: dict[str, Any] = client.get(
                        answer.headers["location"], params={"wait": 30}
                    ).json()
                    if run["status"] not in ("queued", "running"):
                        break
                seconds = time.perf_counter() - began
        finally:
            for worker in started:
                worker.terminate()
            for worker in started:
                worker.wait(timeout=60)
            server.stop()
    if run["status"] != "accepted":
        raise SystemExit(f"the upload was not accepted: {run}")
    return {
        "seconds": seconds,
        "rows": run["progress"]["rows_total"],
        "workers": len({p["worker"] for p in run["parts"]}),
        "parts": len(run["parts"]),
        "timings": run["timings"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000, help="tickets in the upload")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("this benchmark needs two CPUs")
    with tempfile.TemporaryDirectory(prefix="datagate-spread-") as folder:
        work = Path(folder)
        contracts = work / "contracts"
        contracts.mkdir()
        (contracts / "tickets.py").write_text(CONTRACT)
        csv = work / "tickets.csv"
        tickets(args.rows).write_csv(csv)
        results = {n: ingest(csv, n, work / f"with-{n}", contracts) for n in (1, 2)}
    print(f"input: {args.rows:,} tickets with free-text notes, {PART_ROWS:,} rows per part")
    for count, result in results.items():
        print(
            f"  {count} worker(s), one CPU each: {result['seconds']:7.1f} s  "
            f"{result['rows'] / result['seconds']:8.0f} rows/s  "
            f"({result['parts']} parts, done by {result['workers']} worker(s))"
        )
    ratio = results[1]["seconds"] / results[2]["seconds"]
    print(f"  throughput ratio 2 workers / 1 worker: {ratio:.2f} (target >= {TARGET})")
    print("target met" if ratio >= TARGET else "TARGET MISSED")
    sys.exit(0 if ratio >= TARGET else 1)


if __name__ == "__main__":
    main()
