"""privacy and lineage are libraries: they never import gateway (or FastAPI, or SQL)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVICE_ONLY = {"gateway", "fastapi", "starlette", "sqlmodel", "sqlalchemy", "pydantic_settings"}
FORBIDDEN = {"privacy": SERVICE_ONLY | {"lineage"}, "lineage": SERVICE_ONLY | {"privacy"}}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_library_package_does_not_import_the_service(package: str) -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(_imported_roots(path) & FORBIDDEN[package])
        for path in (REPO / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_environment_is_read_only_where_settings_are_built() -> None:
    # Settings reads DATAGATE_* (and XDG_CONFIG_HOME, to find the client's config file); services
    # hands os.environ to the OpenLineage client, whose
    # standard configuration lives there; the CLI tunes polars' allocator before it loads and
    # sets prometheus-client's PROMETHEUS_MULTIPROC_DIR, which metrics reads back (as
    # prometheus-client itself does). Nothing else looks at the environment.
    readers = sorted(
        str(path.relative_to(REPO))
        for package in ("gateway", "privacy", "lineage")
        for path in (REPO / package).rglob("*.py")
        if "os.environ" in path.read_text() or "getenv" in path.read_text()
    )
    assert readers == [
        "gateway/cli.py",
        "gateway/metrics.py",
        "gateway/services.py",
        "gateway/settings.py",
    ]


def _runtime_gateway_imports(path: Path) -> set[str]:
    """The gateway modules ``path`` imports when it is loaded (not under TYPE_CHECKING, not
    inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in tree.body:  # module level only
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gateway"):
            found.add(node.module)
    return found


def test_the_ingest_modules_depend_one_way() -> None:
    # pipeline (orchestration) -> stages -> runs (bookkeeping) -> ingest_lineage (mapping)
    layers = ["gateway.pipeline", "gateway.stages", "gateway.runs", "gateway.ingest_lineage"]
    for index, module in enumerate(layers):
        imported = _runtime_gateway_imports(REPO / (module.replace(".", "/") + ".py"))
        above = set(layers[: index + 1])
        assert not imported & above, (module, imported & above)


def _gateway_imports(path: Path, *, anywhere: bool = True) -> set[str]:
    """The gateway modules ``path`` imports: anywhere (also under TYPE_CHECKING and inside
    functions), or only those loaded with it (its module-level imports)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree) if anywhere else iter(tree.body):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gateway"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("gateway"))
    return found


# The modules that do the ingest's work, run jobs and recover from crashes.
WORKING = ["pipeline", "stages", "runs", "ingest_lineage", "jobs", "spread", "staging", "recovery"]


@pytest.mark.parametrize("module", WORKING)
def test_the_working_modules_name_what_they_need_not_the_services_bag(module: str) -> None:
    # They take gateway.context's protocols; gateway.services composes them (and imports them),
    # so naming it, even for a type, would tie them in a circle again.
    assert "gateway.services" not in _gateway_imports(REPO / "gateway" / f"{module}.py")


def test_the_gateway_modules_import_each_other_without_a_cycle() -> None:
    modules = {
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): path
        for path in (REPO / "gateway").rglob("*.py")
    }
    graph = {
        name: {m for m in _gateway_imports(path, anywhere=False) if m in modules and m != name}
        for name, path in modules.items()
    }
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = [*trail[trail.index(name) :], name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
