"""Datagate's Python client, synchronous (``DatagateClient``) and asynchronous
(``AsyncDatagateClient``), on httpx. Answers are the API's typed models (``gateway.schemas``);
a refusal raises ``DatagateError`` carrying the problem details.

    with DatagateClient("http://datagate:8000", api_key=KEY) as datagate:
        stored = datagate.upload(Path("customers.csv"), "customers", source="crm:exports")
        frame = datagate.read("customers", stored.version.version)  # a polars DataFrame
        with datagate.training_run("churn", "3", inputs=[("customers", 1)]) as run:
            run.metrics["auc"] = 0.91

Both clients send the same requests: each is described once (``_Api``) and only sent
differently. Importing this module loads neither polars nor the server's dependencies.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Generic, Self, TypeVar

import httpx
from pydantic import BaseModel

from gateway.schemas import (
    AuditLog,
    ContractList,
    ContractOut,
    ContractVersionDetail,
    ContractVersionList,
    DatasetList,
    DatasetOut,
    Impact,
    LineageGraph,
    Provenance,
    RunAccepted,
    RunAcceptedLinks,
    RunOut,
    SubjectSearchResult,
    TrainingRunOut,
    UploadOut,
    VersionDiffOut,
    VersionList,
    VersionOut,
)
from gateway.settings import ClientSettings

if TYPE_CHECKING:
    import polars as pl

T = TypeVar("T")
Progress = Callable[[int, int | None], None]
"""Called with the bytes moved so far and the total, when known."""
DEFAULT_TIMEOUT = 300.0


class DatagateError(Exception):
    """Datagate refused a request; the RFC 9457 problem details are its attributes.

    ``problem`` is the whole body: for a rejected upload (422) ``report`` holds every failing
    check, with placeholders instead of personal data.
    """

    def __init__(self, problem: dict[str, Any]) -> None:
        self.problem = problem
        self.status: int | None = problem.get("status")
        self.title: str | None = problem.get("title")
        self.detail: str | None = problem.get("detail")
        self.type: str | None = problem.get("type")
        super().__init__(
            f"{self.status} {self.title}" + (f": {self.detail}" if self.detail else "")
        )

    @property
    def report(self) -> dict[str, Any] | None:
        """A rejected upload's validation report."""
        report: dict[str, Any] | None = self.problem.get("report")
        return report


@dataclass
class TrainingRun:
    """An open training run; metrics set here are reported when it completes."""

    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)


def _checked(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        try:
            problem = response.json()
        except ValueError:
            problem = None
        if not isinstance(problem, dict):
            problem = {"status": response.status_code, "title": response.reason_phrase}
        raise DatagateError(problem)
    return response


@dataclass(frozen=True)
class _Request(Generic[T]):
    """One API call: what to send and how to read the answer."""

    method: str
    url: str
    read: Callable[[httpx.Response], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None


M = TypeVar("M", bound=BaseModel)


def _as(model: type[M]) -> Callable[[httpx.Response], M]:
    """Read an answer as ``model`` (or raise its problem)."""
    return lambda response: model.model_validate_json(_checked(response).content)


def _text(response: httpx.Response) -> str:
    return _checked(response).text


class _Api:
    """The requests both clients send."""

    @staticmethod
    def datasets() -> _Request[list[DatasetOut]]:
        return _Request(
            "GET",
            "/api/v1/datasets",
            lambda r: _as(DatasetList)(r).datasets,
        )

    @staticmethod
    def dataset(dataset: str) -> _Request[DatasetOut]:
        return _Request(
            "GET",
            f"/api/v1/datasets/{dataset}",
            _as(DatasetOut),
        )

    @staticmethod
    def versions(dataset: str) -> _Request[list[VersionOut]]:
        return _Request(
            "GET",
            f"/api/v1/datasets/{dataset}/versions",
            lambda r: _as(VersionList)(r).versions,
        )

    @staticmethod
    def version(dataset: str, version: int) -> _Request[VersionOut]:
        return _Request(
            "GET",
            f"/api/v1/datasets/{dataset}/versions/{version}",
            _as(VersionOut),
        )

    @staticmethod
    def contracts() -> _Request[ContractList]:
        return _Request(
            "GET",
            "/api/v1/contracts",
            _as(ContractList),
        )

    @staticmethod
    def contract(name: str) -> _Request[ContractOut]:
        return _Request(
            "GET",
            f"/api/v1/contracts/{name}",
            _as(ContractOut),
        )

    @staticmethod
    def diff(dataset: str, version: int, other: int) -> _Request[VersionDiffOut]:
        return _Request(
            "GET",
            f"/api/v1/datasets/{dataset}/versions/{version}/diff/{other}",
            _as(VersionDiffOut),
        )

    @staticmethod
    def contract_versions(name: str) -> _Request[ContractVersionList]:
        return _Request(
            "GET",
            f"/api/v1/contracts/{name}/versions",
            _as(ContractVersionList),
        )

    @staticmethod
    def contract_version(name: str, ref: str) -> _Request[ContractVersionDetail]:
        return _Request(
            "GET",
            f"/api/v1/contracts/{name}/versions/{ref}",
            _as(ContractVersionDetail),
        )

    @staticmethod
    def lineage(node: str, depth: int) -> _Request[LineageGraph]:
        return _Request(
            "GET",
            "/api/v1/lineage",
            _as(LineageGraph),
            params={"nodeId": node, "depth": depth},
        )

    @staticmethod
    def provenance(model: str, version: str) -> _Request[Provenance]:
        return _Request(
            "GET",
            f"/api/v1/audit/models/{model}/provenance",
            _as(Provenance),
            params={"version": version},
        )

    @staticmethod
    def provenance_markdown(model: str, version: str) -> _Request[str]:
        url = f"/api/v1/audit/models/{model}/provenance"
        return _Request("GET", url, _text, params={"version": version, "format": "md"})

    @staticmethod
    def impact(dataset: str, version: int) -> _Request[Impact]:
        return _Request(
            "GET",
            f"/api/v1/audit/datasets/{dataset}/versions/{version}/impact",
            _as(Impact),
        )

    @staticmethod
    def impact_markdown(dataset: str, version: int) -> _Request[str]:
        url = f"/api/v1/audit/datasets/{dataset}/versions/{version}/impact"
        return _Request("GET", url, _text, params={"format": "md"})

    @staticmethod
    def audit_log(filters: dict[str, Any]) -> _Request[AuditLog]:
        return _Request(
            "GET",
            "/api/v1/audit/log",
            _as(AuditLog),
            params={k: v for k, v in filters.items() if v is not None},
        )

    @staticmethod
    def subjects(identifiers: Sequence[str]) -> _Request[SubjectSearchResult]:
        return _Request(
            "POST",
            "/api/v1/privacy/subjects/search",
            _as(SubjectSearchResult),
            json={"identifiers": list(identifiers)},
        )

    @staticmethod
    def report_training(report: dict[str, Any]) -> _Request[TrainingRunOut]:
        return _Request(
            "POST",
            "/api/v1/training-runs",
            _as(TrainingRunOut),
            json={k: v for k, v in report.items() if v is not None},
        )

    @staticmethod
    def upload(
        dataset: str, source: str | None, format: str | None
    ) -> _Request[UploadOut | RunAccepted]:
        params = {k: v for k, v in {"source": source, "format": format}.items() if v}
        return _Request(
            "POST",
            f"/api/v1/datasets/{dataset}/uploads",
            lambda r: _as(RunAccepted)(r) if r.status_code == 202 else _as(UploadOut)(r),
            params=params,
        )

    @staticmethod
    def run_after(run_id: str, wait: float) -> _Request[RunOut]:
        return _Request("GET", f"/api/v1/runs/{run_id}", _as(RunOut), params={"wait": wait})

    @staticmethod
    def data(dataset: str, version: int, format: str) -> _Request[None]:
        url = f"/api/v1/datasets/{dataset}/versions/{version}/data"
        return _Request("GET", url, lambda r: None, params={"format": format})

    @staticmethod
    def training_report(
        model: str,
        version: str,
        inputs: Sequence[tuple[str, int]],
        job: dict[str, str] | None,
        parameters: dict[str, Any] | None,
    ) -> dict[str, Any]:
        return {
            "model": {"name": model, "version": version},
            "inputs": [{"dataset": d, "version": v} for d, v in inputs],
            "job": job or None,
            "parameters": parameters or None,
        }


# Files this large are ingested asynchronously unless the caller says otherwise: no request
# is held open for minutes, and a dropped connection does not lose the ingest.
ASYNC_FROM_BYTES = 64 * 1024**2
FOLLOW_SECONDS = 30.0
Stage = Callable[[str], None]
"""Called with a queued run's status or stage as it changes."""


def _size(data: Path | bytes | pl.DataFrame) -> int | None:
    if isinstance(data, bytes):
        return len(data)
    if isinstance(data, Path):
        return data.stat().st_size
    return None


def _prefer_async(data: Path | bytes | pl.DataFrame, asynchronous: bool | None) -> dict[str, str]:
    size = _size(data)
    wanted = asynchronous if asynchronous is not None else (size or 0) >= ASYNC_FROM_BYTES
    return {"Prefer": "respond-async"} if wanted else {}


def _finished(run: RunOut, stage: Stage | None, seen: list[str]) -> bool:
    """Whether ``run`` has its outcome; reports each new stage to ``stage``."""
    now = run.stage or run.status
    if stage is not None and (not seen or seen[-1] != now):
        seen.append(now)
        stage(now)
    return run.status not in ("queued", "running")


def _refusal(run: RunOut) -> DatagateError:
    """A finished run that stored nothing, as the problem a synchronous upload would raise."""
    problem = dict(run.error or {"status": 500, "title": "Ingest failed"})
    problem.setdefault("run_id", run.id)
    if run.validation_report and not run.validation_report.get("valid", True):
        problem["report"] = run.validation_report
    return DatagateError(problem)


def _accepted(answer: UploadOut | RunAccepted) -> RunAccepted:
    if isinstance(answer, RunAccepted):
        return answer
    # A gateway that ingested at once all the same: the run is already done.
    link = RunAcceptedLinks(run=f"/api/v1/runs/{answer.run_id}")
    return RunAccepted(run_id=answer.run_id, status="accepted", links=link)


class _Counted:
    """A file that reports how much of it has been read (sent)."""

    def __init__(self, fh: IO[bytes], progress: Progress) -> None:
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


@contextmanager
def _upload_body(
    data: Path | bytes | pl.DataFrame, progress: Progress | None
) -> Iterator[dict[str, Any]]:
    """The request body for ``data``: a file as multipart (its name tells the format), bytes as
    they are, a polars DataFrame as Parquet spooled through a temporary file."""
    if isinstance(data, bytes):
        yield {"content": data}
        return
    if isinstance(data, Path):
        with data.open("rb") as fh:
            body: Any = fh if progress is None else _Counted(fh, progress)
            yield {"files": {"file": (data.name, body)}}
        return
    with tempfile.TemporaryFile() as spooled:
        data.write_parquet(spooled)
        spooled.seek(0)
        body = spooled if progress is None else _Counted(spooled, progress)
        yield {"files": {"file": ("frame.parquet", body)}}


class _Partial:
    """A download written beside its target and renamed into place only once complete."""

    def __init__(self, path: Path, total: str | None, progress: Progress | None) -> None:
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial")
        self.total = int(total) if total and total.isdigit() else None
        self.progress = progress
        self.written = 0
        self._out = self.partial.open("wb")

    def write(self, chunk: bytes) -> None:
        self._out.write(chunk)
        self.written += len(chunk)
        if self.progress is not None:
            self.progress(self.written, self.total)

    def finish(self) -> None:
        self._out.close()
        self.partial.replace(self.path)

    def discard(self) -> None:
        self._out.close()
        self.partial.unlink(missing_ok=True)


def _read_parquet(path: Path) -> pl.DataFrame:
    import polars as pl

    return pl.read_parquet(path)


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class DatagateClient:
    """Talks to a Datagate server over HTTP; a context manager that closes its connections.

    Every method raises ``DatagateError`` when Datagate refuses (its problem details attached)
    and ``httpx.TransportError`` when it cannot be reached.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        http: httpx.Client | None = None,
    ) -> None:
        self._http = http or httpx.Client(
            base_url=base_url, timeout=timeout, headers=_headers(api_key)
        )

    @classmethod
    def connect(cls, profile: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> Self:
        """A client that connects as the ``datagate`` command does: a ``profile`` of the config
        file, else ``DATAGATE_URL``/``DATAGATE_API_KEY``, the default profile, or the local
        gateway and its admin key (``ClientSettings.connection``).

        Raises:
            ConfigError: the config file or the profile cannot be used.
        """
        url, key = ClientSettings().connection(profile=profile)
        return cls(url, key, timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _send(self, request: _Request[T], **body: Any) -> T:
        response = self._http.request(
            request.method, request.url, params=request.params, json=request.json, **body
        )
        return request.read(response)

    def upload(
        self,
        data: Path | bytes | pl.DataFrame,
        dataset: str,
        *,
        source: str | None = None,
        format: str | None = None,
        progress: Progress | None = None,
        stage: Stage | None = None,
        asynchronous: bool | None = None,
    ) -> UploadOut:
        """Upload a file, bytes or a polars DataFrame: the run id and the version, new
        (``created``) or identical to one already stored.

        Files of ``ASYNC_FROM_BYTES`` and more (or any, with ``asynchronous=True``; none with
        ``False``) are ingested asynchronously and followed to their outcome, ``stage`` told of
        each stage; the gateway may also choose to (``DATAGATE_SYNC_MAX_BYTES``).

        Raises:
            DatagateError: rejected (422: ``report`` lists the failures) or refused.
        """
        with _upload_body(data, progress) as body:
            answer = self._send(
                _Api.upload(dataset, source, format),
                headers=_prefer_async(data, asynchronous),
                **body,
            )
        if isinstance(answer, UploadOut):
            return answer
        return self.outcome(answer.run_id, stage=stage)

    def submit(
        self,
        data: Path | bytes | pl.DataFrame,
        dataset: str,
        *,
        source: str | None = None,
        format: str | None = None,
        progress: Progress | None = None,
    ) -> RunAccepted:
        """Hand an upload over for asynchronous ingest and return at once with its run (follow
        it with ``outcome``)."""
        with _upload_body(data, progress) as body:
            answer = self._send(
                _Api.upload(dataset, source, format), headers={"Prefer": "respond-async"}, **body
            )
        return _accepted(answer)

    def outcome(self, run_id: str, *, stage: Stage | None = None) -> UploadOut:
        """Wait for a run to finish: its version, or its refusal raised.

        Raises:
            DatagateError: the run was rejected (``report``) or failed.
        """
        seen: list[str] = []
        while True:
            run = self._send(_Api.run_after(run_id, FOLLOW_SECONDS))
            if _finished(run, stage, seen):
                break
        if run.status == "accepted" and run.version is not None:
            return UploadOut(
                run_id=run.id,
                created=run.created_version,
                version=self.version(run.dataset, run.version),
            )
        raise _refusal(run)

    def datasets(self) -> list[DatasetOut]:
        """Every dataset the key may see, with its contract and latest version."""
        return self._send(_Api.datasets())

    def dataset(self, dataset: str) -> DatasetOut:
        """One dataset with its contract and latest version."""
        return self._send(_Api.dataset(dataset))

    def versions(self, dataset: str) -> list[VersionOut]:
        """Every version of ``dataset``, oldest first."""
        return self._send(_Api.versions(dataset))

    def version(self, dataset: str, version: int) -> VersionOut:
        """One version's metadata."""
        return self._send(_Api.version(dataset, version))

    def download(
        self,
        dataset: str,
        version: int,
        path: Path,
        *,
        format: str = "parquet",
        progress: Progress | None = None,
    ) -> Path:
        """Stream a version's data (parquet, csv or ndjson) into ``path``, which appears only
        once the download is complete."""
        request = _Api.data(dataset, version, format)
        with self._http.stream(request.method, request.url, params=request.params) as response:
            if response.is_error:
                response.read()
                _checked(response)
            target = _Partial(path, response.headers.get("Content-Length"), progress)
            try:
                for chunk in response.iter_bytes():
                    target.write(chunk)
                target.finish()
            finally:
                target.discard()
        return path

    def read(self, dataset: str, version: int) -> pl.DataFrame:
        """A version's data as a polars DataFrame."""
        with tempfile.TemporaryDirectory() as folder:
            return _read_parquet(self.download(dataset, version, Path(folder) / "data.parquet"))

    def run(self, run_id: str, wait: float = 0) -> RunOut:
        """An ingest run: status, stages, reports, version (waiting up to ``wait`` seconds,
        at most 60, for a queued or running one to finish)."""
        return self._send(_Api.run_after(run_id, wait))

    def contracts(self) -> ContractList:
        """The loaded contracts, and the contract files that failed to load."""
        return self._send(_Api.contracts())

    def contract(self, name: str) -> ContractOut:
        """One contract: columns, checks, PII policy."""
        return self._send(_Api.contract(name))

    def diff(self, dataset: str, version: int, other: int) -> VersionDiffOut:
        """What changed from ``version`` to ``other``: schema, rows, cells, sample keys."""
        return self._send(_Api.diff(dataset, version, other))

    def contract_versions(self, name: str) -> ContractVersionList:
        """Every version of a contract the gateway ever loaded (``active``: loaded now)."""
        return self._send(_Api.contract_versions(name))

    def contract_version(self, name: str, ref: str) -> ContractVersionDetail:
        """One contract version (by fingerprint or version string): its schema and code."""
        return self._send(_Api.contract_version(name, ref))

    def lineage(self, node: str, depth: int = 20) -> LineageGraph:
        """The lineage graph around ``node`` (``dataset:NS:NAME`` or ``job:NS:NAME``)."""
        return self._send(_Api.lineage(node, depth))

    def provenance(self, model: str, version: str) -> Provenance:
        """Everything behind a model version (auditor keys)."""
        return self._send(_Api.provenance(model, version))

    def provenance_markdown(self, model: str, version: str) -> str:
        """The provenance report as Markdown, for a ticket."""
        return self._send(_Api.provenance_markdown(model, version))

    def impact(self, dataset: str, version: int) -> Impact:
        """Every model and downstream job or dataset that used a dataset version (auditors)."""
        return self._send(_Api.impact(dataset, version))

    def impact_markdown(self, dataset: str, version: int) -> str:
        """The impact report as Markdown."""
        return self._send(_Api.impact_markdown(dataset, version))

    def audit_log(self, **filters: Any) -> AuditLog:
        """Audit entries, newest first: filters actor, action, dataset, since, until, limit."""
        return self._send(_Api.audit_log(filters))

    def subjects(self, identifiers: Sequence[str]) -> SubjectSearchResult:
        """The versions holding a data subject's identifiers and the models trained on them."""
        return self._send(_Api.subjects(identifiers))

    def report_training(self, **report: Any) -> TrainingRunOut:
        """POST one training-run report (see ``POST /api/v1/training-runs``)."""
        return self._send(_Api.report_training(report))

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
        common = _Api.training_report(model, version, inputs, job, parameters)
        run = TrainingRun(self.report_training(**common, status="START").run_id)
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


class AsyncDatagateClient:
    """``DatagateClient`` for asyncio: the same methods, awaited."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._http = http or httpx.AsyncClient(
            base_url=base_url, timeout=timeout, headers=_headers(api_key)
        )

    @classmethod
    def connect(cls, profile: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> Self:
        """A client that connects as the ``datagate`` command does: a ``profile`` of the config
        file, else ``DATAGATE_URL``/``DATAGATE_API_KEY``, the default profile, or the local
        gateway and its admin key (``ClientSettings.connection``).

        Raises:
            ConfigError: the config file or the profile cannot be used.
        """
        url, key = ClientSettings().connection(profile=profile)
        return cls(url, key, timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _send(self, request: _Request[T], **body: Any) -> T:
        response = await self._http.request(
            request.method, request.url, params=request.params, json=request.json, **body
        )
        return request.read(response)

    async def upload(
        self,
        data: Path | bytes | pl.DataFrame,
        dataset: str,
        *,
        source: str | None = None,
        format: str | None = None,
        progress: Progress | None = None,
        stage: Stage | None = None,
        asynchronous: bool | None = None,
    ) -> UploadOut:
        """See ``DatagateClient.upload``."""
        with _upload_body(data, progress) as body:
            answer = await self._send(
                _Api.upload(dataset, source, format),
                headers=_prefer_async(data, asynchronous),
                **body,
            )
        if isinstance(answer, UploadOut):
            return answer
        return await self.outcome(answer.run_id, stage=stage)

    async def submit(
        self,
        data: Path | bytes | pl.DataFrame,
        dataset: str,
        *,
        source: str | None = None,
        format: str | None = None,
        progress: Progress | None = None,
    ) -> RunAccepted:
        """See ``DatagateClient.submit``."""
        with _upload_body(data, progress) as body:
            answer = await self._send(
                _Api.upload(dataset, source, format), headers={"Prefer": "respond-async"}, **body
            )
        return _accepted(answer)

    async def outcome(self, run_id: str, *, stage: Stage | None = None) -> UploadOut:
        """See ``DatagateClient.outcome``."""
        seen: list[str] = []
        while True:
            run = await self._send(_Api.run_after(run_id, FOLLOW_SECONDS))
            if _finished(run, stage, seen):
                break
        if run.status == "accepted" and run.version is not None:
            return UploadOut(
                run_id=run.id,
                created=run.created_version,
                version=await self.version(run.dataset, run.version),
            )
        raise _refusal(run)

    async def datasets(self) -> list[DatasetOut]:
        """See ``DatagateClient.datasets``."""
        return await self._send(_Api.datasets())

    async def dataset(self, dataset: str) -> DatasetOut:
        """See ``DatagateClient.dataset``."""
        return await self._send(_Api.dataset(dataset))

    async def versions(self, dataset: str) -> list[VersionOut]:
        """See ``DatagateClient.versions``."""
        return await self._send(_Api.versions(dataset))

    async def version(self, dataset: str, version: int) -> VersionOut:
        """See ``DatagateClient.version``."""
        return await self._send(_Api.version(dataset, version))

    async def download(
        self,
        dataset: str,
        version: int,
        path: Path,
        *,
        format: str = "parquet",
        progress: Progress | None = None,
    ) -> Path:
        """See ``DatagateClient.download``."""
        request = _Api.data(dataset, version, format)
        async with self._http.stream(
            request.method, request.url, params=request.params
        ) as response:
            if response.is_error:
                await response.aread()
                _checked(response)
            target = _Partial(path, response.headers.get("Content-Length"), progress)
            try:
                async for chunk in response.aiter_bytes():
                    target.write(chunk)
                target.finish()
            finally:
                target.discard()
        return path

    async def read(self, dataset: str, version: int) -> pl.DataFrame:
        """See ``DatagateClient.read``."""
        with tempfile.TemporaryDirectory() as folder:
            path = await self.download(dataset, version, Path(folder) / "data.parquet")
            return _read_parquet(path)

    async def run(self, run_id: str, wait: float = 0) -> RunOut:
        """See ``DatagateClient.run``."""
        return await self._send(_Api.run_after(run_id, wait))

    async def contracts(self) -> ContractList:
        """See ``DatagateClient.contracts``."""
        return await self._send(_Api.contracts())

    async def contract(self, name: str) -> ContractOut:
        """See ``DatagateClient.contract``."""
        return await self._send(_Api.contract(name))

    async def diff(self, dataset: str, version: int, other: int) -> VersionDiffOut:
        """See ``DatagateClient.diff``."""
        return await self._send(_Api.diff(dataset, version, other))

    async def contract_versions(self, name: str) -> ContractVersionList:
        """See ``DatagateClient.contract_versions``."""
        return await self._send(_Api.contract_versions(name))

    async def contract_version(self, name: str, ref: str) -> ContractVersionDetail:
        """See ``DatagateClient.contract_version``."""
        return await self._send(_Api.contract_version(name, ref))

    async def lineage(self, node: str, depth: int = 20) -> LineageGraph:
        """See ``DatagateClient.lineage``."""
        return await self._send(_Api.lineage(node, depth))

    async def provenance(self, model: str, version: str) -> Provenance:
        """See ``DatagateClient.provenance``."""
        return await self._send(_Api.provenance(model, version))

    async def provenance_markdown(self, model: str, version: str) -> str:
        """See ``DatagateClient.provenance_markdown``."""
        return await self._send(_Api.provenance_markdown(model, version))

    async def impact(self, dataset: str, version: int) -> Impact:
        """See ``DatagateClient.impact``."""
        return await self._send(_Api.impact(dataset, version))

    async def impact_markdown(self, dataset: str, version: int) -> str:
        """See ``DatagateClient.impact_markdown``."""
        return await self._send(_Api.impact_markdown(dataset, version))

    async def audit_log(self, **filters: Any) -> AuditLog:
        """See ``DatagateClient.audit_log``."""
        return await self._send(_Api.audit_log(filters))

    async def subjects(self, identifiers: Sequence[str]) -> SubjectSearchResult:
        """See ``DatagateClient.subjects``."""
        return await self._send(_Api.subjects(identifiers))

    async def report_training(self, **report: Any) -> TrainingRunOut:
        """See ``DatagateClient.report_training``."""
        return await self._send(_Api.report_training(report))

    @asynccontextmanager
    async def training_run(
        self,
        model: str,
        version: str,
        inputs: Sequence[tuple[str, int]],
        *,
        job: dict[str, str] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> AsyncIterator[TrainingRun]:
        """See ``DatagateClient.training_run``."""
        common = _Api.training_report(model, version, inputs, job, parameters)
        run = TrainingRun((await self.report_training(**common, status="START")).run_id)
        try:
            yield run
        except BaseException as exc:
            await self.report_training(
                **common, status="FAIL", run_id=run.run_id, error=type(exc).__name__
            )
            raise
        await self.report_training(
            **common, status="COMPLETE", run_id=run.run_id, metrics=run.metrics or None
        )
