"""The console's pages and forms (see ``gateway.ui``)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from gateway.api.bodies import read_body
from gateway.api.dependencies import DatasetPath, ServicesDep, VersionPath
from gateway.api.views import dataset_view
from gateway.audit_log import AuditRecord
from gateway.audit_log import search as audit_search
from gateway.contracts import DATASET_NAME
from gateway.errors import (
    BodyTooLarge,
    DatagateError,
    DatasetNotFound,
    NotFound,
    TooBusy,
    Unauthorized,
    VersionGone,
    VersionNotFound,
)
from gateway.exports import EXPORT_MEDIA_TYPES, ExportFormat
from gateway.graph import (
    impact_markdown,
    lineage_edges,
    model_provenance,
    provenance_markdown,
    version_impact,
)
from gateway.keys import Principal, create_key, list_keys, revoke_key
from gateway.middleware import PLAIN_TARGET
from gateway.models import QuarantineBatch
from gateway.problems import problem_for
from gateway.services import Services
from gateway.store import (
    dataset_by_name,
    list_datasets,
    version_by_number,
    version_count,
)
from gateway.ui.sessions import COOKIE, SignedIn, current, same_token, sign_in, sign_out
from lineage import MODEL_NAMESPACE

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))

SIGNIN_COOKIE = "datagate_signin"
FORM_LIMIT = 4096  # a sign-in or sign-out form: a key and a token
# No inline script or style, nothing from another host, no framing.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _secure(services: Services) -> bool:
    return services.settings.env == "production"


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(HEADERS)
    return response


def _redirect(to: str) -> RedirectResponse:
    response = RedirectResponse(to, status_code=303)
    response.headers.update(HEADERS)
    return response


def _admin_key(services: Services) -> str | None:
    secret = services.settings.admin_key
    return secret.get_secret_value() if secret else None


async def _signed_in(request: Request, services: Services) -> SignedIn | None:
    return await run_in_threadpool(
        current, services.engine, request.cookies.get(COOKIE), _admin_key(services)
    )


async def _form(request: Request) -> dict[str, str]:
    try:
        raw = await read_body(request, FORM_LIMIT)
    except BodyTooLarge:
        return {}
    try:
        fields = parse_qs(raw.decode("utf-8", "replace"), max_num_fields=10)
    except ValueError:  # more fields than any console form has
        return {}
    # No NUL anywhere (PostgreSQL cannot store one in text): such a field is no field.
    return {k: v[0] for k, v in fields.items() if v and "\x00" not in k + v[0]}


def _audit(services: Services, request: Request, principal: Principal | None, action: str) -> None:
    _audit_twin(services, request, principal, action, "/ui", 200 if principal else 401)


class EarlyAnswer(Exception):
    """A console answer given before a route's own work: the sign-in redirect, a refused
    form, a page the key may not see (``install`` makes the app send it)."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


def install(app: FastAPI) -> None:
    """Serve the console from ``app``."""

    async def answer(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, EarlyAnswer)
        return exc.response

    app.add_exception_handler(EarlyAnswer, answer)
    app.include_router(router)


@dataclass(frozen=True)
class Console:
    """A signed-in request: who asks, and pages rendered for them."""

    request: Request
    services: Services
    signed_in: SignedIn

    @property
    def me(self) -> Principal:
        return self.signed_in.principal

    @property
    def csrf(self) -> str:
        return self.signed_in.csrf

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return _page(self.request, name, status, me=self.me, csrf=self.csrf, **context)

    def missing(self, what: str) -> HTMLResponse:
        """The answer for what does not exist and for what the key may not see alike."""
        return self.page("missing.html", 404, what=what)

    def need(
        self, roles: Sequence[str] | None = None, dataset: str | None = None, what: str = "page"
    ) -> None:
        """Go on only for one of ``roles`` (any, if None) that may use ``dataset``; else the
        page is missing (as the API's 404s, nothing says whether it exists)."""
        if (roles is not None and self.me.role not in roles) or (
            dataset is not None and not self.me.may_use_dataset(dataset)
        ):
            raise EarlyAnswer(self.missing(what))

    def audit(
        self, action: str, target: str, outcome: int, dataset: str | None = None
    ) -> Awaitable[None]:
        """Record a console action under its API twin's name."""
        return run_in_threadpool(
            _audit_twin, self.services, self.request, self.me, action, target, outcome, dataset
        )


async def _console(request: Request, services: ServicesDep) -> Console:
    signed_in = await _signed_in(request, services)
    if signed_in is None:
        raise EarlyAnswer(_redirect("/ui/signin"))
    return Console(request, services, signed_in)


def _not_signed_in(request: Request) -> EarlyAnswer:
    return EarlyAnswer(_page(request, "signin.html", 403, csrf="", error="Not signed in."))


@dataclass(frozen=True)
class Submitted:
    """A form sent in a live session with the session's CSRF token."""

    console: Console
    form: dict[str, str]


async def _submitted(request: Request, services: ServicesDep) -> Submitted:
    signed_in = await _signed_in(request, services)
    if signed_in is None:  # the body is read only once the session is known
        raise _not_signed_in(request)
    form = await _form(request)
    if not same_token(form.get("csrf"), signed_in.csrf):
        raise _not_signed_in(request)
    return Submitted(Console(request, services, signed_in), form)


ConsoleDep = Annotated[Console, Depends(_console)]
SubmittedDep = Annotated[Submitted, Depends(_submitted)]


@router.get("/signin", response_class=HTMLResponse)
async def signin_page(request: Request, services: ServicesDep) -> Response:
    """The sign-in form (a double-submit token guards it before there is a session)."""
    token = secrets.token_urlsafe(24)
    response = _page(request, "signin.html", csrf=token, error=None)
    response.set_cookie(
        SIGNIN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(services),
        path="/ui",
        max_age=900,
    )
    return response


@router.post("/signin", response_class=HTMLResponse)
async def signin(request: Request, services: ServicesDep) -> Response:
    """Exchange an API key for a session; the key itself is never stored or shown."""
    form = await _form(request)
    if not same_token(form.get("csrf"), request.cookies.get(SIGNIN_COOKIE)):
        return _page(request, "signin.html", 403, csrf="", error="The form expired: reload it.")
    try:
        token, principal = await run_in_threadpool(
            sign_in,
            services.engine,
            form.get("key", ""),
            _admin_key(services),
            services.settings.ui_session_hours,
        )
    except Unauthorized:
        await run_in_threadpool(_audit, services, request, None, "SIGNIN /ui")
        fresh = secrets.token_urlsafe(24)
        refused = _page(
            request, "signin.html", 401, csrf=fresh, error="Unknown, revoked or expired key."
        )
        refused.set_cookie(
            SIGNIN_COOKIE,
            fresh,
            httponly=True,
            samesite="strict",
            secure=_secure(services),
            path="/ui",
        )
        return refused
    await run_in_threadpool(_audit, services, request, principal, "SIGNIN /ui")
    signed = _redirect("/ui")
    signed.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(services),
        path="/ui",
        max_age=int(services.settings.ui_session_hours * 3600),
    )
    signed.delete_cookie(SIGNIN_COOKIE, path="/ui")
    return signed


@router.post("/signout")
async def signout(sent: SubmittedDep) -> Response:
    """End the session (its form carries the session's CSRF token)."""
    console = sent.console
    await run_in_threadpool(sign_out, console.services.engine, console.signed_in)
    await run_in_threadpool(_audit, console.services, console.request, console.me, "SIGNOUT /ui")
    out = _redirect("/ui/signin")
    out.delete_cookie(COOKIE, path="/ui")
    return out


def _datasets(services: Services, principal: Principal) -> list[dict[str, Any]]:
    from sqlmodel import col, select

    from gateway.models import IngestRun

    with Session(services.engine) as session:
        shown = []
        for row in list_datasets(session):
            if not principal.may_use_dataset(row.name):
                continue
            latest = (
                version_by_number(session, row, row.latest_version) if row.latest_version else None
            )
            contract = services.catalog.get(row.name)
            found = dataset_view(row, contract, latest, version_count(session, row))
            found["last_run"] = session.exec(
                select(IngestRun.status)
                .where(IngestRun.dataset == row.name)
                .order_by(col(IngestRun.started_at).desc())
            ).first()
            found["unavailable"] = services.catalog.unavailable.get(row.name)
            shown.append(found)
    return shown


@router.get("", response_class=HTMLResponse)
async def datasets_page(console: ConsoleDep, q: str = "") -> Response:
    """Every dataset the key may read (``q``: whose name holds it): contract (or why it does
    not load), latest version, drift status, the last run's outcome."""
    query = q.strip().lower()[:200]
    shown = await run_in_threadpool(_datasets, console.services, console.me)
    shown = [d for d in shown if query in d["name"]]
    return console.page("datasets.html", datasets=shown, q=query)


VERSIONS_PER_PAGE = 50
DATA_READERS = ("consumer", "admin")  # the roles that may download a version's data


def _dataset(services: Services, name: str, page: int) -> dict[str, Any]:
    from sqlmodel import col, select

    from gateway.api.views import version_view
    from gateway.models import ContractVersion, DatasetVersion

    with Session(services.engine) as session:
        row = dataset_by_name(session, name)
        rows = session.exec(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == row.id)
            .order_by(col(DatasetVersion.number).desc())
            .offset(page * VERSIONS_PER_PAGE)
            .limit(VERSIONS_PER_PAGE)
        ).all()
        versions = [version_view(name, v) for v in rows]
        total = version_count(session, row)
        history = session.exec(
            select(ContractVersion)
            .where(ContractVersion.name == name)
            .order_by(col(ContractVersion.first_seen_at), col(ContractVersion.id))
        ).all()
    contract = services.catalog.get(name)
    loaded = None if contract is None else contract.fingerprint
    return {
        "name": name,
        "contract": None if contract is None else contract.describe(),
        "unavailable": services.catalog.unavailable.get(name),
        "history": [
            {
                "version": h.version,
                "fingerprint": h.fingerprint,
                "first_seen_at": h.first_seen_at.isoformat(),
                "active": h.fingerprint == loaded,
            }
            for h in reversed(history)
        ],
        "versions": versions,
        "total": total,
        "page": page,
        "more": (page + 1) * VERSIONS_PER_PAGE < total,
    }


@router.get("/datasets/{dataset}", response_class=HTMLResponse)
async def dataset_page(dataset: DatasetPath, console: ConsoleDep, page: int = 0) -> Response:
    """One dataset: its contract and its versions, newest first, with drift and tombstones."""
    console.need(dataset=dataset, what=dataset)
    try:
        found = await run_in_threadpool(
            _dataset, console.services, dataset, max(0, min(page, 100_000))
        )
    except DatasetNotFound:
        return console.missing(dataset)
    return console.page("dataset.html", dataset=found)


def _version(services: Services, name: str, number: int) -> dict[str, Any]:
    from gateway.api.views import version_view

    with Session(services.engine) as session:
        row = version_by_number(session, dataset_by_name(session, name), number)
        shown = version_view(name, row)
        report = (row.drift or {}).get("report")
    return {"version": shown, "drift": report}


@router.get("/datasets/{dataset}/versions/{version}", response_class=HTMLResponse)
async def version_page(dataset: DatasetPath, version: VersionPath, console: ConsoleDep) -> Response:
    """One version: schema, validation, PII handling per column, drift, and (loaded when the
    page is) what changed since the previous version; the data's download links for the
    roles that may read data."""
    console.need(dataset=dataset, what=dataset)
    try:
        found = await run_in_threadpool(_version, console.services, dataset, version)
    except (DatasetNotFound, VersionNotFound):
        return console.missing(f"{dataset} v{version}")
    reads_data = console.me.role in DATA_READERS
    return console.page("version.html", dataset=dataset, reads_data=reads_data, **found)


@router.get("/datasets/{dataset}/versions/{version}/changes", response_class=HTMLResponse)
async def version_changes(
    dataset: DatasetPath, version: VersionPath, request: Request, services: ServicesDep
) -> Response:
    """The diff against the previous version, as a fragment (htmx loads it into the page)."""
    signed_in = await _signed_in(request, services)
    if signed_in is None or not signed_in.principal.may_use_dataset(dataset):
        return _page(request, "fragment_missing.html", 404)
    if version <= 1:
        return _page(request, "changes.html", diff=None, previous=None)
    me = signed_in.principal
    try:
        with services.diffs.slot(me.key_id or me.name):
            found = await run_in_threadpool(_changes, services, dataset, version)
    except (DatasetNotFound, VersionNotFound, VersionGone):
        return _page(request, "changes.html", diff=None, previous=version - 1)
    except TooBusy:
        # htmx swaps only a 2xx answer in: the fragment says why, and the page stays whole.
        return _page(request, "changes.html", diff=None, previous=version - 1, busy=True)
    return _page(request, "changes.html", diff=found, previous=version - 1)


DATA_ROUTE = "GET /api/v1/datasets/{dataset}/versions/{version}/data"


@router.get("/datasets/{dataset}/versions/{version}/data")
async def version_download(
    dataset: DatasetPath, version: VersionPath, console: ConsoleDep, format: str = "parquet"
) -> Response:
    """The version's data for the roles that read data, sent as its API twin sends it (the
    API needs a bearer key, which a browser's link cannot carry) and audited as it is."""
    me = console.me
    answer: Response
    if me.role not in DATA_READERS or not me.may_use_dataset(dataset):
        answer = console.missing(dataset)
        outcome = 403  # what the API answers such a key
    elif format not in EXPORT_MEDIA_TYPES:
        answer, outcome = console.missing(f"{dataset} v{version} as {format[:20]}"), 404
    else:
        try:
            answer = await run_in_threadpool(
                _download, console.services, dataset, version, cast(ExportFormat, format)
            )
            outcome = 200
        except (DatasetNotFound, VersionNotFound):
            answer, outcome = console.missing(f"{dataset} v{version}"), 404
        except VersionGone:
            answer, outcome = console.page("gone.html", 410, what=f"{dataset} v{version}"), 410
    target = f"/api/v1/datasets/{dataset}/versions/{version}/data"
    await console.audit(DATA_ROUTE, target, outcome, dataset)
    return answer


def _download(services: Services, dataset: str, version: int, format: ExportFormat) -> Response:
    from gateway.api.datasets import version_data

    with Session(services.engine) as session:
        answer = version_data(services, session, dataset, version, format)
    answer.headers.update(HEADERS)
    return answer


def _changes(services: Services, name: str, number: int) -> dict[str, Any]:
    from gateway.api.versions import diff_of

    with Session(services.engine) as session:
        return diff_of(services, session, name, number - 1, number)


RUN_STATUSES = ("queued", "running", "accepted", "quarantined", "rejected", "failed")
RUNS_PER_PAGE = 50


def _runs(
    services: Services, principal: Principal, status: str | None, dataset: str | None, page: int
) -> list[dict[str, Any]]:
    from sqlmodel import col, select

    from gateway.api.views import run_view
    from gateway.models import IngestRun

    query = select(IngestRun).order_by(col(IngestRun.started_at).desc())
    if status:
        query = query.where(IngestRun.status == status)
    if dataset:
        query = query.where(IngestRun.dataset == dataset)
    if principal.role != "admin" and principal.datasets is not None:
        query = query.where(col(IngestRun.dataset).in_(sorted(principal.datasets)))
    query = query.offset(page * RUNS_PER_PAGE).limit(RUNS_PER_PAGE)
    with Session(services.engine) as session:
        return [run_view(run) for run in session.exec(query).all()]


@router.get("/runs", response_class=HTMLResponse)
async def runs_page(
    console: ConsoleDep, status: str | None = None, dataset: str | None = None, page: int = 0
) -> Response:
    """Ingest runs, newest first, filtered by status and dataset; a refused run's report as a
    table (values as the API shows them: PII as placeholders)."""
    status = status if status in RUN_STATUSES else None
    dataset = dataset if dataset and DATASET_NAME.match(dataset) else None
    page = max(0, min(page, 10_000))
    shown = await run_in_threadpool(_runs, console.services, console.me, status, dataset, page)
    return console.page(
        "runs.html",
        runs=shown,
        chosen=status,
        dataset=dataset,
        statuses=RUN_STATUSES,
        page=page,
        more=len(shown) == RUNS_PER_PAGE,
    )


AUDITORS = ("auditor", "admin")


@router.get("/models/{model}", response_class=HTMLResponse)
async def provenance_page(model: str, console: ConsoleDep, version: str = "") -> Response:
    """Everything behind a model version (auditors and admins): its training runs' inputs,
    their uploads, contracts, PII handling, deleted inputs named as such, and whether it
    needs retraining. Printable; the Markdown export beside it."""
    console.need(AUDITORS, what=model)
    try:
        report = await run_in_threadpool(_provenance, console.services, model, version)
    except NotFound:
        return console.missing(f"{model} {version}")
    return console.page("provenance.html", report=report)


@router.get("/models/{model}/provenance.md")
async def provenance_markdown_export(
    model: str, console: ConsoleDep, version: str = ""
) -> Response:
    """The provenance as Markdown, for a ticket."""
    console.need(AUDITORS, what=model)
    try:
        report = await run_in_threadpool(_provenance, console.services, model, version)
    except NotFound:
        return _markdown(None)
    return _markdown(provenance_markdown(report))


def _markdown(text: str | None) -> Response:
    if text is None:
        return Response("not found\n", status_code=404, media_type="text/plain", headers=HEADERS)
    return Response(text, media_type="text/markdown", headers=HEADERS)


def _provenance(services: Services, model: str, version: str) -> dict[str, Any]:
    with Session(services.engine) as session:
        return model_provenance(session, services.settings.namespace, model, version)


@router.get("/datasets/{dataset}/versions/{version}/impact", response_class=HTMLResponse)
async def impact_page(dataset: DatasetPath, version: VersionPath, console: ConsoleDep) -> Response:
    """Every model, job and dataset downstream of a version (auditors and admins), models
    needing retraining marked."""
    console.need(AUDITORS, what=dataset)
    try:
        report = await run_in_threadpool(_impact, console.services, dataset, version)
    except (DatasetNotFound, VersionNotFound):
        return console.missing(f"{dataset} v{version}")
    return console.page("impact.html", report=report)


@router.get("/datasets/{dataset}/versions/{version}/impact.md")
async def impact_markdown_export(
    dataset: DatasetPath, version: VersionPath, console: ConsoleDep
) -> Response:
    """The impact as Markdown, for a ticket."""
    console.need(AUDITORS, what=dataset)
    try:
        report = await run_in_threadpool(_impact, console.services, dataset, version)
    except (DatasetNotFound, VersionNotFound):
        return _markdown(None)
    return _markdown(impact_markdown(report))


def _impact(services: Services, dataset: str, version: int) -> dict[str, Any]:
    with Session(services.engine) as session:
        version_by_number(session, dataset_by_name(session, dataset), version)
        return version_impact(session, services.settings.namespace, dataset, version)


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(
    console: ConsoleDep, actor: str | None = None, dataset: str | None = None
) -> Response:
    """The audit trail, newest first (auditors and admins), by actor and dataset."""
    console.need(AUDITORS, what="audit trail")
    actor = (actor or "")[:200] or None
    dataset = dataset if dataset and DATASET_NAME.match(dataset) else None
    entries, total = await run_in_threadpool(_audit_entries, console.services, actor, dataset)
    return console.page("audit.html", entries=entries, total=total, actor=actor, dataset=dataset)


def _audit_entries(
    services: Services, actor: str | None, dataset: str | None
) -> tuple[list[Any], int]:
    with Session(services.engine) as session:
        entries, total = audit_search(session, actor, None, dataset, None, None, 200)
        return list(entries), int(total)


# -- quarantine review -------------------------------------------------------------------------

REVIEWERS = ("producer", "auditor", "admin")
ACTORS = ("producer", "admin")


def _batch(services: Services, principal: Principal, batch_id: str) -> Any:
    from gateway.review import get_batch

    with Session(services.engine) as session:
        batch = get_batch(session, batch_id[:64])
    if principal.role not in REVIEWERS or not principal.may_use_dataset(batch.dataset):
        raise NotFound("no such batch")  # ids are not probed
    return batch


def _batches(services: Services, principal: Principal) -> list[Any]:
    from gateway.review import list_batches

    scope = None if principal.role in ("admin", "auditor") else principal.datasets
    with Session(services.engine) as session:
        batches, _ = list_batches(
            session, dataset=None, status=None, datasets=scope, limit=200, offset=0
        )
        return list(batches)


@router.get("/quarantine", response_class=HTMLResponse)
async def quarantine_page(console: ConsoleDep) -> Response:
    """Quarantine batches the key may review, newest first."""
    console.need(REVIEWERS, what="quarantine")
    batches = await run_in_threadpool(_batches, console.services, console.me)
    return console.page("quarantine.html", batches=batches)


async def _visible_batch(console: Console, batch_id: str) -> QuarantineBatch | None:
    try:
        return await run_in_threadpool(_batch, console.services, console.me, batch_id)
    except NotFound:
        return None


async def _batch_page(
    console: Console, batch: QuarantineBatch | None, status: int = 200, message: str | None = None
) -> Response:
    from gateway.review import shown_rows

    if batch is None:
        return console.missing("batch")
    rows = await run_in_threadpool(
        partial(shown_rows, console.services, batch, offset=0, limit=100)
    )
    columns = list(rows[0]["values"]) if rows else []
    return console.page(
        "batch.html",
        status,
        batch=batch,
        rows=rows,
        columns=columns,
        acts=console.me.role in ACTORS and batch.status == "open",
        message=message,
        status_code=status,
    )


@router.get("/quarantine/{batch_id}", response_class=HTMLResponse)
async def batch_page(batch_id: str, console: ConsoleDep) -> Response:
    """A batch: why its rows were held, and its held rows with their failures (personal
    data as placeholders); replay and discard for those who may act. Audited as reading
    held rows through the API is."""
    batch = await _visible_batch(console, batch_id)
    await console.audit(
        "GET /api/v1/quarantine/{batch_id}",
        f"/api/v1/quarantine/{batch_id}",
        404 if batch is None else 200,
        None if batch is None else batch.dataset,
    )
    return await _batch_page(console, batch)


@router.post("/quarantine/{batch_id}/{action}", response_class=HTMLResponse)
async def batch_action(batch_id: str, action: str, sent: SubmittedDep) -> Response:
    """Replay or discard a batch, as its API twin does (and audited as it is, refusals too)."""
    from gateway.review import discard, release
    from gateway.uploads import UploadSpool

    console, form = sent.console, sent.form
    me, services = console.me, console.services
    if action not in ("replay", "discard"):
        return console.missing("action")
    twin = f"POST /api/v1/quarantine/{{batch_id}}/{action}"
    batch = await _visible_batch(console, batch_id)
    if me.role not in ACTORS or batch is None:
        refused = 404 if me.role in ACTORS else 403  # as the API: the role is checked first
        dataset = None if batch is None else batch.dataset
        await console.audit(twin, f"/api/v1/quarantine/{batch_id}/{action}", refused, dataset)
        return await _batch_page(console, batch, refused, "Not allowed." if batch else None)
    request_id = getattr(console.request.state, "request_id", None)
    outcome = 200
    try:
        if action == "replay":
            spool = UploadSpool(services.work_dir)
            try:
                done = await run_in_threadpool(
                    release, services, batch.id, me.name, spool, request_id
                )
            finally:
                spool.close()
            message = f"Replayed: {done.released} row(s) released, {done.still_held} still held."
        else:
            reason = (form.get("reason") or "").strip() or "discarded in the console"
            await run_in_threadpool(discard, services, batch.id, me.name, reason)
            message = "Discarded: the held rows and their key are destroyed."
    except DatagateError as error:
        outcome = problem_for(error).status
        message = f"{problem_for(error).title}: {error.detail}"
    await console.audit(twin, f"/api/v1/quarantine/{batch.id}/{action}", outcome, batch.dataset)
    return await _batch_page(console, await _visible_batch(console, batch.id), outcome, message)


# -- administration: keys, subject erasure -----------------------------------------------------


def _audit_twin(
    services: Services,
    request: Request,
    me: Principal | None,
    action: str,
    target: str,
    outcome: int,
    dataset: str | None = None,
) -> None:
    """An audit entry for a console action, named as its API twin's (anonymous refusals are
    counted, as the API's are). A path holding other text than a plain path's is recorded as
    its route, as the API's are: what a user typed never lands in the trail."""
    if target.startswith("/") and not PLAIN_TARGET.match(target):
        target = action.partition(" ")[2]
    services.audit.record(
        AuditRecord(
            actor=me.name if me else "anonymous",
            role=me.role if me else None,
            action=action,
            target=target,
            dataset=dataset if dataset and DATASET_NAME.match(dataset) else None,
            outcome=outcome,
            request_id=getattr(request.state, "request_id", None) or secrets.token_hex(8),
            client=request.client.host[:100] if request.client else None,
        ),
        anonymous=me is None,
    )


ADMINS = ("admin",)


@router.get("/keys", response_class=HTMLResponse)
async def keys_page(console: ConsoleDep) -> Response:
    """API keys (admins): every key with its role, datasets and state; create and revoke."""
    console.need(ADMINS)
    keys = await run_in_threadpool(list_keys, console.services.engine)
    return console.page("keys.html", keys=keys, created=None, error=None)


@router.post("/keys", response_class=HTMLResponse)
async def keys_action(sent: SubmittedDep) -> Response:
    """Create a key (shown once, on this answer only) or revoke one, as the API does."""
    console, form = sent.console, sent.form
    console.need(ADMINS)
    services = console.services
    created, error, status = None, None, 200
    if form.get("revoke"):
        key_id = form["revoke"][:32]
        try:
            await run_in_threadpool(revoke_key, services.engine, key_id)
        except NotFound as exc:
            error, status = exc.detail, 404
        await console.audit("DELETE /api/v1/keys/{key_id}", f"/api/v1/keys/{key_id}", status)
    else:
        names = [d.strip() for d in (form.get("datasets") or "").split(",") if d.strip()]
        try:
            row, secret = await run_in_threadpool(
                create_key,
                services.engine,
                form.get("role", ""),
                (form.get("name") or "console-key")[:200],
                names or None,
            )
            created = {"id": row.id, "name": row.name, "role": row.role, "key": secret}
            status = 201
        except DatagateError as exc:
            error, status = exc.detail, problem_for(exc).status
        await console.audit("POST /api/v1/keys", "/api/v1/keys", status)
    keys = await run_in_threadpool(list_keys, services.engine)
    return console.page(
        "keys.html", 200 if status < 400 else status, keys=keys, created=created, error=error
    )


@router.get("/privacy", response_class=HTMLResponse)
async def privacy_page(console: ConsoleDep) -> Response:
    """Subject search and erasure (admins): a dry run first."""
    console.need(ADMINS)
    return console.page("privacy.html", outcome=None, error=None)


@router.post("/privacy", response_class=HTMLResponse)
async def privacy_action(sent: SubmittedDep) -> Response:
    """Find (dry run) or erase one subject. The identifiers are never shown back, stored or
    logged; the answer is counts and version numbers."""
    from gateway.erasure import erase_subject, subject_digest

    console, form = sent.console, sent.form
    console.need(ADMINS)
    services, me = console.services, console.me
    identifiers = [i.strip() for i in (form.get("identifiers") or "").splitlines() if i.strip()]
    identifiers = [i[:1000] for i in identifiers[:100]]
    if not identifiers:
        return console.page("privacy.html", 400, outcome=None, error="Give an identifier.")
    dry_run = form.get("erase") != "yes"
    override = form.get("override_holds") == "yes"
    digest = subject_digest(identifiers, services.redaction_key)
    outcome, error, status = None, None, 200
    try:
        found = await run_in_threadpool(
            partial(
                erase_subject,
                services,
                identifiers,
                me.name,
                dry_run=dry_run,
                override_holds=override,
            )
        )
        outcome = found.as_dict()
    except DatagateError as exc:
        error, status = exc.detail, problem_for(exc).status
    await console.audit(
        "POST /api/v1/privacy/subjects/erase",
        f"subject:{digest}" + (" (dry run)" if dry_run else ""),
        status,
    )
    return console.page("privacy.html", status, outcome=outcome, error=error)


# -- lineage explorer --------------------------------------------------------------------------

NODE = re.compile(r"^(dataset|job):.+:.+$")


def _elements(services: Services, node: str, depth: int) -> dict[str, Any]:
    with Session(services.engine) as session:
        carried = lineage_edges(session, node, depth)
    names = {n for edge in carried for n in edge} | {node}
    nodes = []
    for name in sorted(names):
        kind, _, rest = name.partition(":")
        namespace, _, label = rest.rpartition(":")
        nodes.append(
            {
                "id": name,
                "label": label,
                "kind": "model" if namespace == MODEL_NAMESPACE else kind,
                "start": name == node,
            }
        )
    edges = [
        {"source": origin, "target": destination, "versions": sorted(versions)}
        for (origin, destination), versions in sorted(carried.items())
    ]
    return {"nodes": nodes, "edges": edges}


@router.get("/lineage", response_class=HTMLResponse)
async def lineage_page(console: ConsoleDep, node: str = "", depth: int = 2) -> Response:
    """The lineage around a dataset, job or model: a graph to click through (layered, the
    versions on its edges, models marked), and the same edges as a table."""
    depth = max(0, min(depth, 10))
    graph, status = None, 200
    if NODE.match(node) and len(node) <= 2000:
        try:
            graph = await run_in_threadpool(_elements, console.services, node, depth)
        except NotFound:
            status = 404
    return console.page("lineage.html", status, node=node, graph=graph, depth=depth)


@router.get("/lineage/graph.json")
async def lineage_json(
    request: Request, services: ServicesDep, node: str = "", depth: int = 1
) -> Response:
    """The graph's elements around a node, for the explorer to draw or expand."""
    signed_in = await _signed_in(request, services)
    if signed_in is None or not NODE.match(node) or len(node) > 2000:
        return JSONResponse({"nodes": [], "edges": []}, status_code=404, headers=HEADERS)
    try:
        graph = await run_in_threadpool(_elements, services, node, max(0, min(depth, 10)))
    except NotFound:
        return JSONResponse({"nodes": [], "edges": []}, status_code=404, headers=HEADERS)
    return JSONResponse(graph, headers=HEADERS)


@router.get("/contracts/{name}/diff", response_class=HTMLResponse)
async def contract_diff_page(
    name: str, console: ConsoleDep, old: str = "", new: str = ""
) -> Response:
    """Every change between two recorded versions of a contract, labelled for backward and
    forward compatibility under the newer one's mode."""
    console.need(dataset=name, what=name)
    try:
        verdict = await run_in_threadpool(_contract_diff, console.services, name, old, new)
    except NotFound:
        return console.missing(f"{name} {old} {new}")
    return console.page("contract_diff.html", contract=name, verdict=verdict)


def _contract_diff(services: Services, name: str, old: str, new: str) -> dict[str, Any]:
    from sqlmodel import select

    from gateway.evolution import judge
    from gateway.models import ContractVersion

    with Session(services.engine) as session:
        rows = {
            r.fingerprint: r
            for r in session.exec(select(ContractVersion).where(ContractVersion.name == name))
        }
    if old not in rows or new not in rows:
        raise NotFound(f"no such versions of contract {name!r}")
    return judge(rows[old].definition, rows[new].definition).as_dict()


@router.post("/audit/verify", response_class=HTMLResponse)
async def audit_verify(sent: SubmittedDep) -> Response:
    """Recompute the audit trail's keyed chain (admins), as ``datagate audit verify`` does."""
    console = sent.console
    console.need(ADMINS)
    result = await run_in_threadpool(console.services.audit.verify)
    entries, total = await run_in_threadpool(_audit_entries, console.services, None, None)
    return console.page(
        "audit.html", entries=entries, total=total, actor=None, dataset=None, verified=result
    )
