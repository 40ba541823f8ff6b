"""Scale benchmark: memory and throughput of a large upload through a real `datagate serve`.

Run with ``make bench-scale`` (or ``python -m bench.scale --gb 5 --gb 1``). For each size a
customers CSV of that many gigabytes is written to a temporary folder (ids unique throughout),
then, in one run:

- baseline: polars ``scan_csv(...).sink_parquet(...)`` on the streaming engine, in a child
  process;
- datagate: the file uploaded over HTTP to a `datagate serve` on the embedded default (SQLite,
  local snapshots; large bodies are ingested asynchronously, the client follows the run);
- download: the stored version fetched as CSV.

Peak RSS is the largest sum of resident memory over the whole process tree (the server, its
in-process ingest workers and its PII detector processes; the baseline's child), sampled every
50 ms. Targets (issue 14): datagate's peak <= 1.5 GB at every size, throughput >= 0.5 x the
baseline.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.serve import ServeProcess

RSS_TARGET_BYTES = 1.5e9
THROUGHPUT_TARGET = 0.5
BLOCK_ROWS = 1_000_000
API_KEY = "bench-admin-key-" + "s" * 32


def _tree(pid: int) -> list[int]:
    found = [pid]
    for index in range(len(found) + 10_000):
        if index >= len(found):
            break
        tasks = Path(f"/proc/{found[index]}/task")
        try:
            for task in tasks.iterdir():
                children = (task / "children").read_text().split()
                found.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class PeakTreeRss:
    """Samples the summed RSS of a process and all its descendants in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(_rss(p) for p in _tree(self.pid)))
            time.sleep(0.05)

    def __enter__(self) -> PeakTreeRss:
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop.clear()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def write_csv(path: Path, gigabytes: float) -> int:
    """A customers CSV of about ``gigabytes`` GB; returns its rows."""
    from gateway.samples import customers

    block = customers(BLOCK_ROWS, seed=21)
    target = gigabytes * 1e9
    rows = 0
    with path.open("wb") as out:
        while out.tell() < target:
            part = block.with_columns(block["customer_id"] + rows)
            part.write_csv(out, include_header=rows == 0)
            rows += part.height
    return rows


def baseline(csv: Path, work: Path) -> dict[str, float]:
    """polars' streaming CSV -> Parquet, in a child process."""
    code = (
        "import polars as pl, sys; "
        "pl.scan_csv(sys.argv[1]).sink_parquet(sys.argv[2], compression='zstd')"
    )
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code, str(csv), str(work / "plain.parquet")])
    with PeakTreeRss(process.pid) as peak:
        if process.wait() != 0:
            raise SystemExit("the baseline failed")
    return {"seconds": time.perf_counter() - started, "peak": peak.peak}


def _timed(server: ServeProcess, step: Callable[[], Any]) -> tuple[Any, float, int]:
    started = time.perf_counter()
    with PeakTreeRss(server.process.pid) as peak:
        result = step()
    return result, time.perf_counter() - started, peak.peak


def _server(work: Path) -> ServeProcess:
    repo = Path(__file__).resolve().parents[1]
    return ServeProcess(
        work / "home",
        f"sqlite:///{work / 'datagate.db'}",
        work / "serve.log",
        env={
            "DATAGATE_CONTRACTS_DIR": str(repo / "contracts"),
            "DATAGATE_ADMIN_KEY": API_KEY,
            "DATAGATE_PII_KEY": "bench-pii-key-" + "p" * 40,
            "DATAGATE_MAX_UPLOAD_BYTES": str(1 << 40),
            "DATAGATE_MAX_DECODED_BYTES": str(1 << 40),
            "DATAGATE_MAX_ROWS": str(1 << 40),
        },
    ).wait_ready()


def datagate(csv: Path, work: Path) -> dict[str, Any]:
    """Upload to a fresh `datagate serve` and follow the run; then, from a freshly started
    server (so that its memory is the download's alone), download the version as CSV."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    server = _server(work)
    idle = sum(_rss(p) for p in _tree(server.process.pid))
    try:
        with httpx.Client(base_url=server.base, headers=headers, timeout=None) as client:

            def ingest() -> dict[str, Any]:
                with csv.open("rb") as body:
                    answer = client.post(
                        "/api/v1/datasets/customers/uploads",
                        content=iter(lambda: body.read(1 << 20), b""),
                        headers={"Content-Type": "text/csv", "Prefer": "respond-async"},
                    )
                if answer.status_code != 202:
                    raise SystemExit(f"upload answered {answer.status_code}: {answer.text}")
                while True:
                    run: dict[str, Any] = client.get(
                        answer.headers["location"], params={"wait": 30}
                    ).json()
                    if run["status"] not in ("queued", "running"):
                        return run

            run, seconds, peak = _timed(server, ingest)
    finally:
        server.stop()
    if run["status"] != "accepted":
        raise SystemExit(f"the upload was not accepted: {run}")
    server = _server(work)
    try:
        with httpx.Client(base_url=server.base, headers=headers, timeout=None) as client:
            target = work / "download.csv"

            def download() -> int:
                url = f"/api/v1/datasets/customers/versions/{run['version']}/data?format=csv"
                with client.stream("GET", url) as response, target.open("wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
                return target.stat().st_size

            size, download_seconds, download_peak = _timed(server, download)
            target.unlink()
    finally:
        server.stop()
    return {
        "seconds": seconds,
        "peak": peak,
        "idle": idle,
        "rows": run["progress"]["rows_total"],
        "timings": run["timings"],
        "download_seconds": download_seconds,
        "download_bytes": size,
        "download_peak": download_peak,
    }


def measure(gigabytes: float) -> bool:
    """One size: write the CSV, measure both, print; True when the targets are met."""
    with tempfile.TemporaryDirectory(prefix="datagate-scale-") as folder:
        work = Path(folder)
        csv = work / "customers.csv"
        rows = write_csv(csv, gigabytes)
        size = csv.stat().st_size
        (work / "baseline").mkdir()
        (work / "datagate").mkdir()
        base = baseline(csv, work / "baseline")
        (work / "baseline" / "plain.parquet").unlink()
        ours = datagate(csv, work / "datagate")
    ratio = base["seconds"] / ours["seconds"]
    print(f"input: {rows:,} rows, CSV {size / 1e9:.2f} GB")
    print(
        f"  polars scan_csv.sink_parquet  {base['seconds']:7.1f} s  "
        f"{size / base['seconds'] / 1e6:6.1f} MB/s  peak RSS {base['peak'] / 1e6:7.1f} MB"
    )
    print(
        f"  datagate upload -> version    {ours['seconds']:7.1f} s  "
        f"{size / ours['seconds'] / 1e6:6.1f} MB/s  peak RSS {ours['peak'] / 1e6:7.1f} MB"
    )
    print(
        f"  datagate download as CSV      {ours['download_seconds']:7.1f} s  "
        f"{ours['download_bytes'] / ours['download_seconds'] / 1e6:6.1f} MB/s  "
        f"peak RSS {ours['download_peak'] / 1e6:7.1f} MB"
    )
    print(f"  datagate idle (server, PII detector processes): {ours['idle'] / 1e6:.1f} MB")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in ours["timings"].items())
    print(f"  datagate stages: {stages}")
    print(f"  throughput ratio datagate/polars: {ratio:.2f} (target >= {THROUGHPUT_TARGET})")
    print(f"  peak RSS: {ours['peak'] / 1e9:.2f} GB (target <= {RSS_TARGET_BYTES / 1e9} GB)")
    return bool(ratio >= THROUGHPUT_TARGET and ours["peak"] <= RSS_TARGET_BYTES)


def main() -> None:
    """Measure every size asked for (default 1 GB and 5 GB)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gb", type=float, action="append", help="CSV size in GB (repeatable)")
    args = parser.parse_args()
    os.environ.setdefault("POLARS_MAX_THREADS", str(os.cpu_count() or 1))
    results = [measure(size) for size in args.gb or [1.0, 5.0]]
    print("targets met" if all(results) else "TARGETS MISSED")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
