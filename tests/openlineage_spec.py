"""Validate OpenLineage events against the official JSON schemas in ../shared/openlineage-spec."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[1]
SPEC_DIR = Path(
    os.environ.get("DATAGATE_OPENLINEAGE_SPEC", REPO.parent / "shared" / "openlineage-spec")
)
CORE_ID = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
_KIND_BY_BASE = {
    "RunFacet": "run",
    "JobFacet": "job",
    "DatasetFacet": "dataset",
    "InputDatasetFacet": "input",
    "OutputDatasetFacet": "output",
}


def spec_dir() -> Path:
    """The spec folder; missing is a failure in CI and a visible skip elsewhere."""
    if not (SPEC_DIR / "OpenLineage.json").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"OpenLineage spec not found at {SPEC_DIR}")
        pytest.skip(f"OpenLineage spec not found at {SPEC_DIR}")
    return SPEC_DIR


@cache
def _registry_and_facets() -> tuple[Registry, dict[str, list[tuple[str, str]]]]:
    folder = spec_dir()
    registry: Registry = Registry()
    facets: dict[str, list[tuple[str, str]]] = {}
    for path in [folder / "OpenLineage.json", *sorted((folder / "facets").glob("*.json"))]:
        document = json.loads(path.read_text())
        registry = registry.with_resource(document["$id"], Resource.from_contents(document))
        if path.parent.name != "facets":
            continue
        for key in document.get("properties", {}):
            prop = document["properties"][key]
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
    return registry, facets


def _validate(instance: Any, ref: str) -> None:
    registry, _ = _registry_and_facets()
    Draft202012Validator({"$ref": ref}, registry=registry).validate(instance)


def _check_facets(facets: dict[str, Any] | None, kind: str) -> None:
    _, known = _registry_and_facets()
    for key, facet in (facets or {}).items():
        if key not in known:
            assert {"_producer", "_schemaURL"} <= set(facet), f"custom facet {key} lacks base"
            continue
        placed = [schema_id for schema_id, facet_kind in known[key] if facet_kind in (kind, "any")]
        assert placed, f"facet {key} is a {[k for _, k in known[key]]} facet, placed as {kind}"
        _validate({key: facet}, placed[0])


def validate_event(event: dict[str, Any]) -> None:
    """Raise if ``event`` breaks the core schema or any standard facet's schema or placement."""
    _validate(event, CORE_ID)
    _check_facets(event.get("run", {}).get("facets"), "run")
    _check_facets(event.get("job", {}).get("facets"), "job")
    for dataset in event.get("inputs", []):
        _check_facets(dataset.get("facets"), "dataset")
        _check_facets(dataset.get("inputFacets"), "input")
    for dataset in event.get("outputs", []):
        _check_facets(dataset.get("facets"), "dataset")
        _check_facets(dataset.get("outputFacets"), "output")
