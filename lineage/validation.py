"""Validate OpenLineage events against the official JSON schemas shipped in ``lineage/spec``.

The core schema validates the event; each standard facet is also validated against its own
schema, and must sit where the spec defines it (a run facet on the run, an input-dataset facet
in ``inputFacets``, ...). Custom facets need the base fields ``_producer`` and ``_schemaURL``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource

SPEC_DIR = Path(__file__).parent / "spec"
CORE_ID = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
_KIND_BY_BASE = {
    "RunFacet": "run",
    "JobFacet": "job",
    "DatasetFacet": "dataset",
    "InputDatasetFacet": "input",
    "OutputDatasetFacet": "output",
}
MAX_REASON = 500


class InvalidEvent(ValueError):
    """The event does not conform to the OpenLineage spec; the message says where and why."""


@dataclass(frozen=True)
class _Spec:
    registry: Registry
    facets: dict[str, list[tuple[str, str]]]


@cache
def _spec(folder: Path = SPEC_DIR) -> _Spec:
    registry: Registry = Registry()
    facets: dict[str, list[tuple[str, str]]] = {}
    for path in [folder / "OpenLineage.json", *sorted((folder / "facets").glob("*.json"))]:
        document = json.loads(path.read_text())
        registry = registry.with_resource(document["$id"], Resource.from_contents(document))
        if path.parent.name != "facets":
            continue
        for key, prop in document.get("properties", {}).items():
            refs = [prop["$ref"]] if "$ref" in prop else [p["$ref"] for p in prop.get("anyOf", [])]
            bases = {
                part["$ref"].split("/")[-1]
                for ref in refs
                for part in document["$defs"][ref.split("/")[-1]].get("allOf", [])
                if "$ref" in part
            }
            kinds = {_KIND_BY_BASE[b] for b in bases if b in _KIND_BY_BASE}
            kind = kinds.pop() if len(kinds) == 1 else "any"
            facets.setdefault(key, []).append((document["$id"], kind))
    return _Spec(registry=registry, facets=facets)


def _reason(error: ValidationError, where: str) -> str:
    path = "/".join(str(p) for p in error.absolute_path)
    location = f"{where}/{path}".rstrip("/") if path else where
    return f"{location}: {error.message}"[:MAX_REASON]


def _validate(instance: Any, schema_id: str, where: str) -> None:
    validator = Draft202012Validator(
        {"$ref": schema_id},
        registry=_spec().registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    error = best_match(validator.iter_errors(instance))
    if error is not None:
        raise InvalidEvent(_reason(error, where))


def _check_facets(facets: Any, kind: str, where: str) -> None:
    if facets is None:
        return
    if not isinstance(facets, dict):
        raise InvalidEvent(f"{where}: facets must be an object")
    known = _spec().facets
    for key, facet in facets.items():
        if key not in known:
            if not isinstance(facet, dict) or not {"_producer", "_schemaURL"} <= set(facet):
                raise InvalidEvent(f"{where}/{key}: a custom facet needs _producer and _schemaURL")
            continue
        placed = [schema_id for schema_id, facet_kind in known[key] if facet_kind in (kind, "any")]
        if not placed:
            kinds = sorted({k for _, k in known[key]})
            raise InvalidEvent(f"{where}/{key}: a {'/'.join(kinds)} facet placed as a {kind} facet")
        _validate({key: facet}, placed[0], where)


def validate_event(event: Any) -> str:
    """Check ``event`` and return its kind: ``RunEvent``, ``DatasetEvent`` or ``JobEvent``.

    Raises:
        InvalidEvent: the event breaks the core schema or a standard facet's schema or placement.
    """
    if not isinstance(event, dict):
        raise InvalidEvent("an OpenLineage event is a JSON object")
    # The core schema is a oneOf; validating against the intended kind gives a precise reason.
    if "run" in event:
        kind = "RunEvent"
    elif "dataset" in event and "job" not in event:
        kind = "DatasetEvent"
    else:
        kind = "JobEvent"
    _validate(event, f"{CORE_ID}#/$defs/{kind}", "event")
    _check_facets(event.get("run", {}).get("facets"), "run", "run/facets")
    _check_facets(event.get("job", {}).get("facets"), "job", "job/facets")
    for side in ("inputs", "outputs"):
        for index, dataset in enumerate(event.get(side) or []):
            where = f"{side}/{index}"
            _check_facets(dataset.get("facets"), "dataset", f"{where}/facets")
            extra = "inputFacets" if side == "inputs" else "outputFacets"
            _check_facets(
                dataset.get(extra), "input" if side == "inputs" else "output", f"{where}/{extra}"
            )
    if kind == "DatasetEvent":
        _check_facets(event["dataset"].get("facets"), "dataset", "dataset/facets")
    return kind
