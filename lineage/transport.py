"""The OpenLineage client, configured the client's standard way, or none (events stored only)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from openlineage.client import OpenLineageClient

_STANDARD_CONFIG_FILES = (Path.cwd, lambda: Path.home() / ".openlineage")


def _has_standard_configuration(environ: Mapping[str, str]) -> bool:
    if environ.get("OPENLINEAGE_URL") or environ.get("OPENLINEAGE_CONFIG"):
        return True
    if environ.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return True
    if any(key.startswith("OPENLINEAGE__TRANSPORT__") for key in environ):
        return True
    return any((folder() / "openlineage.yml").is_file() for folder in _STANDARD_CONFIG_FILES)


def configured_client(environ: Mapping[str, str]) -> OpenLineageClient | None:
    """An OpenLineageClient when ``environ`` or a config file configures a transport, else None.

    Unconfigured, the client itself would fall back to printing events on the console; Datagate
    instead keeps them in its own store only.
    """
    if not _has_standard_configuration(environ):
        return None
    return OpenLineageClient()


def describe_transport(client: OpenLineageClient | None) -> str:
    """A short, secret-free name of the active transport, for logs and ``/readyz``."""
    if client is None:
        return "none (events stored only)"
    return type(client.transport).__name__
