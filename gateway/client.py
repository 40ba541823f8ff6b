"""A small Python client for producers and training pipelines.

client = DatagateClient("http://datagate:8000")
client.upload("customers", Path("customers.csv"), source="crm:exports/customers.csv")
with client.training_run("fraud-detector", version="7", inputs=[("customers", 3)]) as run:
    ...  # train; run.metrics["auc"] = 0.91
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx


class DatagateError(Exception):
    """Datagate answered with a problem+json error."""

    def __init__(self, problem: dict[str, Any]) -> None:
        super().__init__(f"{problem.get('status')} {problem.get('title')}: {problem.get('detail')}")
        self.problem = problem


@dataclass
class TrainingRun:
    """An open training run; metrics set here are reported when it completes."""

    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)


class _Counted:
    """A file that reports how much of it has been read (sent)."""

    def __init__(self, fh: BinaryIO, progress: Callable[[int, int | None], None]) -> None:
        self._fh = fh
        self._progress = progress
        self._size = os.fstat(fh.fileno()).st_size
        self._sent = 0

    def fileno(self) -> int:
        return self._fh.fileno()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def read(self, size: int = -1) -> bytes:
        chunk = self._fh.read(size)
        self._sent += len(chunk)
        self._progress(self._sent, self._size)
        return chunk


class DatagateClient:
    """Talks to a Datagate server over HTTP."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 300.0,
        http: httpx.Client | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout, headers=headers)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        if response.is_error:
            try:
                problem = response.json()
            except ValueError:
                problem = {"status": response.status_code, "title": response.reason_phrase}
            raise DatagateError(problem)
        body: dict[str, Any] = response.json()
        return body

    def upload(
        self,
        dataset: str,
        data: Path | bytes,
        *,
        source: str | None = None,
        format: str | None = None,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> dict[str, Any]:
        """Upload a file or bytes; returns the run id and the version (new or identical).

        ``progress`` is called with the bytes sent so far and the file's size.

        Raises:
            DatagateError: rejected (422, with the report in ``problem``) or refused.
        """
        params = {k: v for k, v in {"source": source, "format": format}.items() if v}
        if isinstance(data, Path):
            with data.open("rb") as fh:
                body: Any = fh if progress is None else _Counted(fh, progress)
                response = self._http.post(
                    f"/api/v1/datasets/{dataset}/uploads",
                    params=params,
                    files={"file": (data.name, body)},
                )
        else:
            response = self._http.post(
                f"/api/v1/datasets/{dataset}/uploads", params=params, content=data
            )
        return self._json(response)

    def datasets(self) -> list[dict[str, Any]]:
        """Every dataset the key may see, with its contract and latest version."""
        datasets: list[dict[str, Any]] = self._json(self._http.get("/api/v1/datasets"))["datasets"]
        return datasets

    def versions(self, dataset: str) -> list[dict[str, Any]]:
        """Every version of ``dataset``, oldest first."""
        body = self._json(self._http.get(f"/api/v1/datasets/{dataset}/versions"))
        versions: list[dict[str, Any]] = body["versions"]
        return versions

    def dataset(self, dataset: str) -> dict[str, Any]:
        """One dataset with its contract and latest version."""
        return self._json(self._http.get(f"/api/v1/datasets/{dataset}"))

    def version(self, dataset: str, version: int) -> dict[str, Any]:
        """One version's metadata."""
        return self._json(self._http.get(f"/api/v1/datasets/{dataset}/versions/{version}"))

    def run(self, run_id: str) -> dict[str, Any]:
        """An ingest run: status, stages, report, version."""
        return self._json(self._http.get(f"/api/v1/runs/{run_id}"))

    def contracts(self) -> list[dict[str, Any]]:
        """The loaded contracts."""
        contracts: list[dict[str, Any]] = self._json(self._http.get("/api/v1/contracts"))[
            "contracts"
        ]
        return contracts

    def contract(self, name: str) -> dict[str, Any]:
        """One contract: columns, checks, PII policy."""
        return self._json(self._http.get(f"/api/v1/contracts/{name}"))

    def download(
        self,
        dataset: str,
        version: int,
        path: Path,
        *,
        format: str = "parquet",
        progress: Callable[[int, int | None], None] | None = None,
    ) -> Path:
        """Stream a version's data into ``path`` (written whole or not at all).

        ``progress`` is called with the bytes written so far and the total, when known.
        """
        url = f"/api/v1/datasets/{dataset}/versions/{version}/data"
        partial = path.with_name(f".{path.name}.partial")
        with self._http.stream("GET", url, params={"format": format}) as response:
            if response.is_error:
                response.read()
                self._json(response)
            total = response.headers.get("Content-Length")
            written = 0
            try:
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        written += len(chunk)
                        if progress is not None:
                            progress(written, int(total) if total else None)
                partial.replace(path)
            finally:
                partial.unlink(missing_ok=True)
        return path

    def lineage(self, node: str, depth: int = 20) -> dict[str, Any]:
        """The lineage graph around ``node`` (``dataset:NS:NAME`` or ``job:NS:NAME``)."""
        params: dict[str, str | int] = {"nodeId": node, "depth": depth}
        return self._json(self._http.get("/api/v1/lineage", params=params))

    def provenance(self, model: str, version: str) -> dict[str, Any]:
        """Everything behind a model version (auditor keys)."""
        url = f"/api/v1/audit/models/{model}/provenance"
        return self._json(self._http.get(url, params={"version": version}))

    def impact(self, dataset: str, version: int) -> dict[str, Any]:
        """Every model and downstream job or dataset that used a dataset version (auditors)."""
        url = f"/api/v1/audit/datasets/{dataset}/versions/{version}/impact"
        return self._json(self._http.get(url))

    def report_markdown(self, kind: str, *args: Any) -> str:
        """The provenance (``kind="provenance"``, model, version) or impact (``"impact"``,
        dataset, version) report as Markdown."""
        if kind == "provenance":
            url, params = f"/api/v1/audit/models/{args[0]}/provenance", {"version": args[1]}
        else:
            url, params = f"/api/v1/audit/datasets/{args[0]}/versions/{args[1]}/impact", {}
        response = self._http.get(url, params={**params, "format": "md"})
        if response.is_error:
            self._json(response)
        return response.text

    def audit_log(self, **filters: Any) -> dict[str, Any]:
        """Audit entries, newest first: filters actor, action, dataset, since, until, limit."""
        params = {k: v for k, v in filters.items() if v is not None}
        return self._json(self._http.get("/api/v1/audit/log", params=params))

    def report_training(self, **report: Any) -> dict[str, Any]:
        """POST one training-run report (see ``POST /api/v1/training-runs``)."""
        return self._json(self._http.post("/api/v1/training-runs", json=report))

    @contextmanager
    def training_run(
        self,
        model: str,
        version: str,
        inputs: Sequence[tuple[str, int]],
        *,
        job: dict[str, str] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Iterator[TrainingRun]:
        """Report START on entry and COMPLETE (or FAIL, if the block raises) on exit.

        Raises:
            DatagateError: an input is not a stored dataset version, or the report is invalid.
        """
        common: dict[str, Any] = {
            "model": {"name": model, "version": version},
            "inputs": [{"dataset": d, "version": v} for d, v in inputs],
        }
        if job:
            common["job"] = job
        if parameters:
            common["parameters"] = parameters
        started = self.report_training(**common, status="START")
        run = TrainingRun(run_id=started["run_id"])
        try:
            yield run
        except BaseException as exc:
            self.report_training(
                **common, status="FAIL", run_id=run.run_id, error=type(exc).__name__
            )
            raise
        self.report_training(
            **common, status="COMPLETE", run_id=run.run_id, metrics=run.metrics or None
        )
