"""Ingest benchmark: the Datagate pipeline vs plain polars read_csv + write_parquet, one run.

Run with ``make bench`` (or ``python -m bench.ingest --rows 1000000``). Each measurement runs in
a fresh child process, so peak RSS is that of the work alone; the best of ``--repeat`` runs
counts. Targets: pipeline throughput >= 0.42 x plain polars (issue 14: what it was before
uploads were read in parts), pipeline peak RSS <= 4 x CSV size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "out"
THROUGHPUT_TARGET = 0.42
RSS_TARGET = 4.0


def _baseline(csv: Path, work: Path) -> dict[str, float]:
    import polars as pl

    started = time.perf_counter()
    frame = pl.read_csv(csv)
    frame.write_parquet(work / "plain.parquet", compression="zstd")
    return {"seconds": time.perf_counter() - started, "rows": frame.height}


def bench_settings(work: Path) -> Any:
    """A gateway's settings for a benchmark: the example contracts, a home in ``work``."""
    from gateway.settings import Settings

    return Settings(
        home=work / "home",
        contracts_dir=Path(__file__).resolve().parents[1] / "contracts",
        pii_key="bench-pii-key-" + "b" * 40,
        max_upload_bytes=1 << 34,
    )


def _pipeline(csv: Path, work: Path) -> dict[str, float]:
    from gateway.pipeline import run_pipeline
    from gateway.runs import start_run
    from gateway.services import build_services
    from gateway.uploads import ReceivedUpload, UploadSpool

    settings = bench_settings(work)
    services = build_services(settings)
    contract = services.catalog.contracts["customers"]
    spool = UploadSpool(settings.tmp_dir)
    # The HTTP layer would have streamed the body here; the pipeline starts from that file.
    body = work / "body.csv"
    shutil.copyfile(csv, body)
    upload = ReceivedUpload(
        path=body, size=body.stat().st_size, filename="customers.csv", content_type="text/csv"
    )
    started = time.perf_counter()
    job = start_run(services, contract, "bench:customers.csv", "bench")
    outcome = run_pipeline(services, job, contract, upload, spool, None, "bench")
    seconds = time.perf_counter() - started
    spool.close()
    return {"seconds": seconds, "rows": outcome.version.row_count}


def _peak_rss_bytes() -> int:
    # This process's own high-water mark (VmHWM), excluding any worker processes it started.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class _WithoutPandas:
    """An import hook that makes pandas look uninstalled, as in a production install."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)


def _child(kind: str, csv: Path) -> None:
    if kind == "pipeline":
        # pandas is in the dev extras only (for the presidio-structured comparison); a
        # production install has none, and pandera imports it (~90 MB) whenever it is there.
        sys.meta_path.insert(0, _WithoutPandas())
    with tempfile.TemporaryDirectory(dir=OUT) as work:
        result = (_baseline if kind == "baseline" else _pipeline)(csv, Path(work))
        result["peak_rss_bytes"] = _peak_rss_bytes()
    print(json.dumps(result))


def _measure(kind: str, csv: Path) -> dict[str, float]:
    from gateway.cli import JEMALLOC_CONF

    # Both children run with the allocator setting `datagate serve` uses (polars appends it to
    # its own defaults at import).
    env = {**os.environ, "_RJEM_MALLOC_CONF": JEMALLOC_CONF}
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.ingest", "--child", kind, "--csv", str(csv)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
        env=env,
    )
    assert process.stdout is not None
    output = process.stdout.read()
    if process.wait() != 0:
        raise SystemExit(f"{kind} run failed with status {process.returncode}")
    result: dict[str, float] = json.loads(output.decode().strip().splitlines()[-1])
    return result


def main() -> None:
    """Generate the data if needed, measure both, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=["baseline", "pipeline"])
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    if args.child:
        _child(args.child, args.csv)
        return

    from bench.generate import customers

    csv = OUT / f"customers-{args.rows}.csv"
    if not csv.exists():
        customers(args.rows).write_csv(csv)
    size = csv.stat().st_size
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.repeat):
        for kind in ("baseline", "pipeline"):
            result = _measure(kind, csv)
            if kind not in best or result["seconds"] < best[kind]["seconds"]:
                best[kind] = result
    base, pipe = best["baseline"], best["pipeline"]
    ratio = base["seconds"] / pipe["seconds"]
    rss_ratio = pipe["peak_rss_bytes"] / size
    print(f"input: {args.rows:,} rows, CSV {size / 1e6:.1f} MB (best of {args.repeat})")
    for name, result in (("plain polars read_csv+write_parquet", base), ("datagate ingest", pipe)):
        seconds = result["seconds"]
        print(
            f"  {name:36s} {seconds:6.2f} s  {result['rows'] / seconds:>11,.0f} rows/s"
            f"  {size / seconds / 1e6:6.1f} MB/s  peak RSS {result['peak_rss_bytes'] / 1e6:6.1f} MB"
        )
    print(f"throughput ratio pipeline/plain: {ratio:.2f} (target >= {THROUGHPUT_TARGET})")
    print(f"pipeline peak RSS / CSV size:    {rss_ratio:.2f} (target <= {RSS_TARGET})")
    ok = ratio >= THROUGHPUT_TARGET and rss_ratio <= RSS_TARGET
    print("targets met" if ok else "TARGETS MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
