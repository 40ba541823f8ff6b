"""Console page times on a long history: every page renders in < 300 ms (issue 18).

Run with ``make bench-console`` (or ``python -m bench.console --versions 1000``). A gateway (in
process, the example contracts, detection by patterns) gets ``--versions`` uploads of customers
and a training run; then each console page is fetched ``--repeat`` times and the median counts,
beside the API answer holding the same facts (the baseline, measured in the same run).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from bench.ingest import bench_settings
from gateway.app import create_app
from gateway.samples import customers
from privacy import PiiEngine

TARGET_MS = 300.0
ADMIN = "bench-console-admin-key-" + "c" * 24


def _median_ms(client: TestClient, path: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return statistics.median(times)


def main() -> None:
    """Build the history, time the pages, print them against the target and the API."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = bench_settings(Path(folder)).model_copy(update={"admin_key": SecretStr(ADMIN)})
        app = create_app(settings, pii_engine=PiiEngine(None))
        headers = {"Authorization": f"Bearer {ADMIN}"}
        with TestClient(app, headers=headers) as api:
            started = time.perf_counter()
            for seed in range(args.versions):
                body = customers(5, seed=seed).write_csv().encode()
                stored = api.post(
                    "/api/v1/datasets/customers/uploads",
                    content=body,
                    headers={"Content-Type": "text/csv"},
                )
                assert stored.status_code in (200, 201), stored.text
            api.post(
                "/api/v1/training-runs",
                json={
                    "model": {"name": "churn", "version": "1"},
                    "inputs": [{"dataset": "customers", "version": args.versions}],
                },
            )
            print(f"history: {args.versions} versions in {time.perf_counter() - started:.1f} s")
            browser = TestClient(app)
            page = browser.get("/ui/signin")
            token = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            browser.post("/ui/signin", data={"csrf": token, "key": ADMIN})
            last = args.versions
            pages = {
                "/ui": "/api/v1/datasets",
                "/ui/datasets/customers": "/api/v1/datasets/customers/versions",
                f"/ui/datasets/customers?page={(last - 1) // 50}": (
                    "/api/v1/datasets/customers/versions"
                ),
                f"/ui/datasets/customers/versions/{last}": (
                    f"/api/v1/datasets/customers/versions/{last}"
                ),
                f"/ui/datasets/customers/versions/{last}/changes": (
                    f"/api/v1/datasets/customers/versions/{last - 1}/diff/{last}"
                ),
                "/ui/runs": f"/api/v1/datasets/customers/versions/{last}",
                "/ui/audit": "/api/v1/audit/log?limit=200",
                "/ui/lineage?node=job:datagate:train.churn&depth=1": (
                    "/api/v1/lineage?nodeId=job:datagate:train.churn&depth=1"
                ),
                "/ui/models/churn?version=1": "/api/v1/audit/models/churn/provenance?version=1",
            }
            missed = []
            for path, twin in pages.items():
                ui = _median_ms(browser, path, args.repeat)
                baseline = _median_ms(api, twin, args.repeat)
                verdict = "met" if ui < TARGET_MS else "MISSED"
                if ui >= TARGET_MS:
                    missed.append(path)
                print(
                    f"{path}: {ui:.0f} ms (API {twin}: {baseline:.0f} ms, "
                    f"{ui / baseline:.1f}x); target < {TARGET_MS:.0f} ms: {verdict}"
                )
    if missed:
        raise SystemExit(f"missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
