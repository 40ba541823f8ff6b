"""docker-compose.yml read as `docker compose` reads it: YAML (anchors and merge keys included),
then each ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``
and ``$$`` interpolated from a given environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
_TOKEN = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


class MissingVariable(ValueError):
    """A required ``${VAR:?…}`` has no value: `docker compose` refuses to start."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``text`` with compose's substitutions made from ``env``."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg") or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if unset else str(value)
        if op in (":?", "?"):
            if unset:
                raise MissingVariable(f"{name}: {arg}")
            return str(value)
        return "" if value is None else value

    return _TOKEN.sub(replace, text)


def _interpolated(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolated(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolated(value, env) for key, value in node.items()}
    return node


def raw_services() -> dict[str, Any]:
    """The services as written, ``${…}`` left in place."""
    services: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return services


def services(env: Mapping[str, str]) -> dict[str, Any]:
    """The services as `docker compose` runs them with ``env`` as the shell environment."""
    resolved: dict[str, Any] = _interpolated(raw_services(), env)
    return resolved


def variables() -> set[str]:
    """Every variable the compose file takes from the environment."""
    return {m.group("name") for m in _TOKEN.finditer(COMPOSE_FILE.read_text()) if m.group("name")}


def required_variables() -> set[str]:
    """The variables without which `docker compose` refuses to start."""
    return {
        m.group("name")
        for m in _TOKEN.finditer(COMPOSE_FILE.read_text())
        if m.group("op") in (":?", "?")
    }
