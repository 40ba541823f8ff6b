"""Logging: one structured event per line (JSON in production, readable text in development).

Every log record — Datagate's own (stdlib ``logging``), uvicorn's and the libraries' — passes
through one structlog formatter that adds the time (UTC, ISO 8601), the level, the logger and
whatever the request has bound: ``request_id``, and for uploads ``dataset`` and ``run_id``.
Exceptions are rendered as type names and frames only (``redacted_traceback``): an exception
message may quote a cell value, and no raw personal data may reach a log line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from gateway.errors import redacted_traceback

_HANDLER_NAME = "datagate"


def _drop_terminal_colours(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    event.pop("color_message", None)  # uvicorn's ANSI-coloured copy of the message
    return event


def _redact_exception(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    exc_info = event.pop("exc_info", None)
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
        if isinstance(exc, BaseException):
            event["exception"] = redacted_traceback(exc)
    return event


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    _redact_exception,
]


def formatter(fmt: str) -> logging.Formatter:
    """The formatter for ``fmt`` ("json" or "console")."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.stdlib.ExtraAdder(), _drop_terminal_colours],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


# structlog loggers hand their events to stdlib logging, whose handlers decide where they go
# (set here at import, so tests and embedders get the same routing without configure_logging).
structlog.configure(
    processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)


def configure_logging(level: str, fmt: str) -> None:
    """Send every log record to stderr through the structured formatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != _HANDLER_NAME] + [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn's loggers go through the root handler, not their own.
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # Each request is logged once, with its route, dataset and run, by the request middleware.
    logging.getLogger("uvicorn.access").propagate = False
    # Alembic narrates every migration context (readiness checks open one); gateway.db logs
    # what was applied.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    """A structlog logger whose events go through stdlib logging (and so the handlers above)."""
    return structlog.stdlib.get_logger(name)
