"""Version history benchmark: diff of a 5M-row pair, the cost of drift at ingest, and drift
against Evidently on the same pairs.

Run with ``make bench-history`` (or ``python -m bench.history``). Three measurements, each with
its baseline measured in the same run:

1. **Diff** of two 5M-row customers versions (1 % of rows removed, 1 % added, 1 % changed)
   with ``gateway.diff`` against what a user would write by hand with polars (read both, full
   join on the key, compare every column). Target: a few seconds.
2. **Drift cost**: two 1M-row uploads through the real pipeline; the second one's ``drift``
   stage against the whole ingest. Target: <= 10 %.
3. **Evidently** (``DataDriftPreset``, its defaults) on the same reference/current pairs, run in
   its own virtualenv (``--evidently PYTHON``; Evidently needs pandas < 3): the columns each
   flags, and the time each takes. Columns of free or unique text (email, name, phone, notes)
   are left out of both: Evidently flags any two samples of ids as drifted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from gateway.samples import customers

OUT = Path(__file__).parent / "out"
DIFF_TARGET_SECONDS = 10.0
DRIFT_SHARE_TARGET = 0.10
TEXT = ("email", "full_name", "phone", "notes")
SECRET = b"bench-history-secret-" + b"h" * 40


def _changed(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    """``frame`` with 1 % of rows removed, 1 % changed (lifetime_value) and 1 % added."""
    n = frame.height
    step = 100
    kept = frame.filter(pl.col("customer_id") % step != 1)
    changed = kept.with_columns(
        pl.when(pl.col("customer_id") % step == 2)
        .then(pl.col("lifetime_value") + 1.0)
        .otherwise(pl.col("lifetime_value"))
        .alias("lifetime_value")
    )
    added = customers(n // step, seed).with_columns(pl.col("customer_id") + n)
    return pl.concat([changed, added])


def _by_hand(a: Path, b: Path) -> dict[str, int]:
    left, right = pl.read_parquet(a), pl.read_parquet(b)
    joined = left.join(right, on="customer_id", how="full", coalesce=True, suffix="_b")
    others = [c for c in left.columns if c != "customer_id"]
    both = joined.filter(pl.col("email").is_not_null() & pl.col("email_b").is_not_null())
    changed = both.filter(pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_b")) for c in others))
    return {
        "added": joined.filter(pl.col("email").is_null()).height,
        "removed": joined.filter(pl.col("email_b").is_null()).height,
        "changed": changed.height,
    }


def bench_diff(rows: int, work: Path) -> dict[str, Any]:
    from gateway.diff import Side, diff_versions
    from privacy import RedactionKey

    before = customers(rows, 7)
    after = _changed(before, 8)
    a, b = work / "a.parquet", work / "b.parquet"
    before.write_parquet(a)
    after.write_parquet(b)
    schema = {n: str(t) for n, t in before.schema.items()}
    started = time.perf_counter()
    found = diff_versions(
        Side(1, [a], schema), Side(2, [b], schema), ["customer_id"], RedactionKey(SECRET)
    )
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    by_hand = _by_hand(a, b)
    baseline = time.perf_counter() - started
    rows_found = {k: found["rows"][k] for k in ("added", "removed", "changed")}
    assert rows_found == by_hand, (rows_found, by_hand)
    return {"rows": rows, "seconds": seconds, "baseline_seconds": baseline, "found": rows_found}


def bench_drift_cost(rows: int, work: Path) -> dict[str, Any]:
    from sqlmodel import Session

    from bench.ingest import bench_settings
    from gateway.pipeline import run_pipeline
    from gateway.runs import start_run
    from gateway.services import build_services
    from gateway.store import run_by_id
    from gateway.uploads import ReceivedUpload, UploadSpool

    settings = bench_settings(work)
    services = build_services(settings)
    contract = services.catalog.contracts["customers"]
    timings: dict[str, float] = {}
    wall = 0.0
    try:
        for seed in (7, 8):
            body = work / f"body-{seed}.csv"
            customers(rows, seed).write_csv(body)
            upload = ReceivedUpload(body, body.stat().st_size, "customers.csv", "text/csv")
            spool = UploadSpool(settings.tmp_dir)
            started = time.perf_counter()
            job = start_run(services, contract, "bench:customers.csv", "bench")
            outcome = run_pipeline(services, job, contract, upload, spool, None, "bench")
            wall = time.perf_counter() - started
            spool.close()
            with Session(services.engine) as session:
                timings = dict(run_by_id(session, outcome.run_id).stage_timings or {})
    finally:
        services.close()
    return {"rows": rows, "drift_seconds": timings.get("drift", 0.0), "ingest_seconds": wall}


PAIRS: dict[str, Callable[[pl.DataFrame], pl.DataFrame]] = {
    "unchanged": lambda f: f,
    "value shifted 30 %": lambda f: f.with_columns(pl.col("lifetime_value") * 1.3),
    "orders +40 and segment mix": lambda f: f.with_columns(
        pl.col("orders_count") + 40,
        pl.when(pl.col("customer_id") % 3 == 0)
        .then(pl.lit("enterprise"))
        .otherwise(pl.col("segment"))
        .alias("segment"),
    ),
}


def bench_evidently(rows: int, work: Path, python: str | None) -> list[dict[str, Any]]:
    from gateway.drift import DriftPolicy, measure, report
    from privacy import RedactionKey

    secret = RedactionKey(SECRET)
    reference = customers(rows, 7).drop(TEXT)
    ref_path = work / "reference.parquet"
    reference.write_parquet(ref_path)
    results = []
    for name, change in PAIRS.items():
        current = change(customers(rows, 8).drop(TEXT))
        cur_path = work / "current.parquet"
        current.write_parquet(cur_path)
        started = time.perf_counter()
        base, _ = measure([ref_path], reference.height, secret)
        new, counts = measure([cur_path], current.height, secret)
        found = report(new, [("previous", 1, base)], DriftPolicy(), counts)
        seconds = time.perf_counter() - started
        ours = sorted(found["comparisons"][0]["drifted"])
        entry: dict[str, Any] = {"pair": name, "datagate": ours, "datagate_seconds": seconds}
        if python:
            theirs = subprocess.run(
                [
                    python,
                    str(Path(__file__).with_name("evidently_drift.py")),
                    str(ref_path),
                    str(cur_path),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            answer = json.loads(theirs.stdout.strip().splitlines()[-1])
            entry["evidently"] = sorted(answer["drifted"])
            entry["evidently_seconds"] = answer["seconds"]
        results.append(entry)
    return results


def main() -> None:
    """Run the three measurements and print them with their baselines."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--diff-rows", type=int, default=5_000_000)
    parser.add_argument("--drift-rows", type=int, default=1_000_000)
    parser.add_argument("--evidently-rows", type=int, default=200_000)
    parser.add_argument("--evidently", help="The python of a virtualenv with Evidently.")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=OUT))
    missed = []
    try:
        diff = bench_diff(args.diff_rows, work)
        print(
            f"diff, {diff['rows']:,} rows a side: {diff['seconds']:.2f} s "
            f"(by hand with polars: {diff['baseline_seconds']:.2f} s, "
            f"{diff['baseline_seconds'] / diff['seconds']:.2f}x); found {diff['found']}; "
            f"target <= {DIFF_TARGET_SECONDS:.0f} s: "
            f"{'met' if diff['seconds'] <= DIFF_TARGET_SECONDS else 'MISSED'}"
        )
        if diff["seconds"] > DIFF_TARGET_SECONDS:
            missed.append("diff")
        cost = bench_drift_cost(args.drift_rows, work)
        share = cost["drift_seconds"] / cost["ingest_seconds"]
        print(
            f"drift at ingest, {cost['rows']:,} rows: {cost['drift_seconds']:.2f} s of "
            f"{cost['ingest_seconds']:.2f} s ({share:.1%}); target <= {DRIFT_SHARE_TARGET:.0%}: "
            f"{'met' if share <= DRIFT_SHARE_TARGET else 'MISSED'}"
        )
        if share > DRIFT_SHARE_TARGET:
            missed.append("drift cost")
        for entry in bench_evidently(args.evidently_rows, work, args.evidently):
            line = (
                f"drift vs Evidently, {args.evidently_rows:,} rows, {entry['pair']}: "
                f"Datagate flags {entry['datagate'] or 'nothing'} "
                f"in {entry['datagate_seconds']:.2f} s"
            )
            if "evidently" in entry:
                same = "same columns" if entry["evidently"] == entry["datagate"] else "DIFFERENT"
                if entry["evidently"] != entry["datagate"]:
                    missed.append(f"drift flags ({entry['pair']})")
                line += (
                    f"; Evidently flags {entry['evidently'] or 'nothing'} in "
                    f"{entry['evidently_seconds']:.2f} s ({same}; "
                    f"{entry['evidently_seconds'] / entry['datagate_seconds']:.1f}x "
                    "Datagate's time)"
                )
            else:
                line += "; Evidently not run (--evidently PYTHON)"
            print(line)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if missed:
        raise SystemExit(f"missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
