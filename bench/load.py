"""Load benchmark: sustained small uploads against `datagate serve` on PostgreSQL.

Run with ``make load`` (or ``python -m bench.load --workers 2 --concurrency 8 --seconds 60``).
It creates a fresh PostgreSQL database, starts ``datagate serve --workers N`` on a free port,
and keeps ``--concurrency`` asyncio clients uploading distinct 1,000-row CSV files (each a new
version) for ``--seconds``. It reports uploads/s and p50/p95/max latency, and, as a baseline
measured in the same run against the same server, the rate of ``GET /healthz`` requests (the
HTTP stack alone), so the figures can be compared across machines.

The same helpers drive ``tests/test_load.py`` (64 concurrent uploads, SQLite and PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import polars as pl
import psycopg

from bench.generate import customers
from bench.serve import ServeProcess

REPO = Path(__file__).resolve().parents[1]
CUSTOMERS_CONTRACT = REPO / "contracts" / "customers.py"
ADMIN_KEY = "load-admin-key-" + "a" * 40
PII_KEY = "load-pii-key-" + "k" * 40


@dataclass(frozen=True)
class Upload:
    """One upload: where to and what."""

    dataset: str
    body: bytes


@dataclass(frozen=True)
class Outcome:
    """What the server answered to one upload."""

    dataset: str
    status: int
    seconds: float
    version: int | None
    run_id: str | None
    problem: str | None


def write_contracts(folder: Path, copies: int) -> list[str]:
    """The example contracts plus ``copies`` of ``customers`` named ``customers_00``…; returns
    the copies' dataset names."""
    folder.mkdir(parents=True, exist_ok=True)
    for contract in (REPO / "contracts").glob("*.py"):
        (folder / contract.name).write_text(contract.read_text())
    source = CUSTOMERS_CONTRACT.read_text()
    names = []
    for index in range(copies):
        name = f"customers_{index:02d}"
        text = source.replace('name = "customers"', f'name = "{name}"')
        text = text.replace("class Customers(", f"class Customers{index:02d}(")
        (folder / f"{name}.py").write_text(text)
        names.append(name)
    return names


def distinct_body(rows: int, seed: int) -> bytes:
    """A valid ``customers`` CSV whose content no other seed produces."""
    frame = customers(rows, seed=seed % 1000).with_columns(pl.col("orders_count") + seed)
    return frame.write_csv().encode()


async def upload(client: httpx.AsyncClient, job: Upload) -> Outcome:
    """POST one file and time it; a transport error counts as status 0."""
    started = time.perf_counter()
    try:
        response = await client.post(
            f"/api/v1/datasets/{job.dataset}/uploads",
            content=job.body,
            headers={"Content-Type": "text/csv"},
        )
    except httpx.TransportError as exc:
        return Outcome(job.dataset, 0, time.perf_counter() - started, None, None, repr(exc))
    seconds = time.perf_counter() - started
    body = response.json()
    if response.status_code in (200, 201):
        return Outcome(
            job.dataset,
            response.status_code,
            seconds,
            body["version"]["version"],
            body["run_id"],
            None,
        )
    return Outcome(
        job.dataset, response.status_code, seconds, None, body.get("run_id"), body.get("type")
    )


def client_for(base: str, admin_key: str, timeout: float = 300) -> httpx.AsyncClient:
    """An async client with the admin key and room for many concurrent connections."""
    return httpx.AsyncClient(
        base_url=base,
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=timeout,
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
    )


async def upload_all(base: str, admin_key: str, jobs: Sequence[Upload]) -> list[Outcome]:
    """Send every upload at once; outcomes in the order of ``jobs``."""
    async with client_for(base, admin_key) as client:
        return list(await asyncio.gather(*(upload(client, job) for job in jobs)))


async def sustained(
    base: str, admin_key: str, rows: int, concurrency: int, seconds: float, first_seed: int = 0
) -> tuple[list[Outcome], float]:
    """``concurrency`` clients uploading distinct files back to back for ``seconds``."""
    counter = iter(range(first_seed, 10**9))
    seeds = range(first_seed, first_seed + concurrency * 4)
    bodies = {seed: distinct_body(rows, seed) for seed in seeds}
    outcomes: list[Outcome] = []
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            seed = next(counter)
            body = bodies.get(seed) or distinct_body(rows, seed)
            outcomes.append(await upload(client, Upload("customers", body)))

    started = time.perf_counter()
    async with client_for(base, admin_key) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return outcomes, time.perf_counter() - started


async def health_rate(base: str, concurrency: int, seconds: float) -> float:
    """Requests per second ``GET /healthz`` sustains: the HTTP stack alone."""
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            (await client.get("/healthz")).raise_for_status()
            count += 1

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


def _percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=60, help="measured duration")
    parser.add_argument("--rows", type=int, default=1000, help="rows per upload")
    parser.add_argument(
        "--admin-url", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    )
    args = parser.parse_args()

    name = f"datagate_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    params = psycopg.conninfo.conninfo_to_dict(args.admin_url)
    url = (
        f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}"
        f":{params.get('port', 5432)}/{name}"
    )
    try:
        with tempfile.TemporaryDirectory(prefix="datagate-load-") as work:
            root = Path(work)
            write_contracts(root / "contracts", 0)
            server = ServeProcess(
                root / "home",
                url,
                root / "server.log",
                env={
                    "DATAGATE_CONTRACTS_DIR": str(root / "contracts"),
                    "DATAGATE_ADMIN_KEY": ADMIN_KEY,
                    "DATAGATE_PII_KEY": PII_KEY,
                },
                args=("--workers", str(args.workers)),
            ).wait_ready()
            try:
                print(
                    f"datagate serve --workers {args.workers} on PostgreSQL; "
                    f"{args.concurrency} clients, {args.rows}-row CSV uploads, {args.seconds:.0f} s"
                )
                # Warm-up: every worker process loads its PII engine on first use.
                asyncio.run(
                    sustained(server.base, ADMIN_KEY, args.rows, args.concurrency, 5, 10**6)
                )
                outcomes, elapsed = asyncio.run(
                    sustained(server.base, ADMIN_KEY, args.rows, args.concurrency, args.seconds)
                )
                baseline = asyncio.run(health_rate(server.base, args.concurrency, 5))
            finally:
                server.stop()
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    accepted = [o for o in outcomes if o.status == 201]
    others = [o for o in outcomes if o.status != 201]
    latencies = [o.seconds * 1000 for o in accepted]
    rate = len(accepted) / elapsed
    print(f"uploads accepted      {len(accepted)} in {elapsed:.1f} s, other outcomes {len(others)}")
    print(f"uploads/s             {rate:.2f}")
    print(
        f"latency ms            p50 {_percentile(latencies, 50):.0f}  "
        f"p95 {_percentile(latencies, 95):.0f}  max {max(latencies):.0f}"
    )
    ratio = rate / baseline
    print(f"baseline GET /healthz {baseline:.0f} req/s  (uploads/s ÷ healthz/s = {ratio:.4f})")
    versions = sorted(o.version for o in accepted if o.version is not None)
    gap_free = (
        versions == list(range(versions[0], versions[0] + len(versions))) if versions else True
    )
    print(f"versions unique and gap-free: {gap_free}")
    if others:
        print("non-201 outcomes:", sorted({(o.status, o.problem) for o in others}))
        raise SystemExit(1)


if __name__ == "__main__":
    main()
