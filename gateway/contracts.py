"""Load data contracts (Pandera polars ``DataFrameModel`` classes) from ``.py`` files.

Gateway policy lives in Pandera's own ``metadata``: ``Config.metadata`` for the dataset
(version, owner, description, on_invalid, undeclared_pii) and ``Field(metadata=...)`` per
column (pii, redact, justification). Each contract is fingerprinted over its canonical schema.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib.util
import inspect
import json
import re
import shutil
import sys
import tempfile
import threading
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.api.checks import Check

from gateway.drift import DriftPolicy, drift_policy
from gateway.errors import ContractLoadError, ContractUnavailable, DatasetNotFound
from privacy import ACTIONS, ColumnPolicy, DetectionConfig, PolicyError

DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,127}$")
ON_INVALID = frozenset({"reject", "quarantine"})
DEFAULT_MAX_INVALID_FRACTION = 0.05
UNDECLARED_PII = frozenset({"redact", "reject", "warn"})
DEFAULT_REDACT_ACTION = "replace"
_KNOWN_ACTIONS = frozenset(ACTIONS)


@dataclass(frozen=True)
class QuarantinePolicy:
    """``on_invalid: "quarantine"``: rows failing a check are held for review instead of
    refusing the upload, while they are at most ``max_invalid_fraction`` of it and at least
    ``min_valid_rows`` rows pass. ``keys`` match corrections to held rows (``primary_key`` in
    the metadata, else the ``unique=True`` columns); ``expire_days`` overrides the setting."""

    max_invalid_fraction: float = DEFAULT_MAX_INVALID_FRACTION
    min_valid_rows: int = 1
    expire_days: int | None = None
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetentionPolicy:
    """``retention: {keep_last: N, max_age_days: D}``: a version is kept while it is one of the
    ``keep_last`` newest or younger than ``max_age_days`` (either may be left out); the
    others expire. The latest version, held versions and versions models were trained on
    (unless released) never expire."""

    keep_last: int | None = None
    max_age_days: float | None = None


@dataclass(frozen=True)
class ColumnSpec:
    """One contract column: its polars dtype, constraints, checks and PII policy."""

    name: str
    dtype: pl.DataType
    nullable: bool
    unique: bool
    required: bool
    checks: tuple[dict[str, Any], ...]
    policy: ColumnPolicy | None
    description: str | None = None
    # Pandera's coerce (the model's Config.coerce or the field's own): typed data of another
    # dtype is cast (cells that do not convert are failures); without it, it fails the dtype
    # check. Text formats (CSV) are parsed into the contract's dtypes either way.
    coerce: bool = False
    # ``name`` is a regular expression: the spec governs every column it matches (Pandera's
    # ``Field(alias=..., regex=True)``).
    regex: bool = False

    def describe(self) -> dict[str, Any]:
        """The column as the API shows it."""
        return {
            "name": self.name,
            "regex": self.regex,
            "dtype": str(self.dtype),
            "nullable": self.nullable,
            "unique": self.unique,
            "required": self.required,
            "coerce": self.coerce,
            "checks": list(self.checks),
            "pii": None
            if self.policy is None
            else {
                "entity": self.policy.entity,
                "action": self.policy.action,
                "justification": self.policy.justification,
            },
            "description": self.description,
        }


@dataclass(frozen=True)
class Contract:
    """A loaded contract: the Pandera schema plus the gateway policy read from its metadata."""

    dataset: str
    model_name: str
    schema: pa.DataFrameSchema
    # The schema without coercion (Datagate coerces first, with Pandera's engine, so that a
    # cell that does not convert is reported by its column)...
    checked_schema: pa.DataFrameSchema
    # ...and, for a drop_invalid_rows contract, one that keeps the rows, to report them.
    reporting_schema: pa.DataFrameSchema
    version: str
    owner: str | None
    description: str | None
    on_invalid: str
    undeclared_pii: str
    source_file: str
    columns: tuple[ColumnSpec, ...]
    definition: dict[str, Any]
    fingerprint: str
    detection: DetectionConfig
    quarantine: QuarantinePolicy | None = None
    source: str = ""  # the contract file's code as loaded
    retention: RetentionPolicy | None = None
    drift: DriftPolicy = field(default_factory=DriftPolicy)
    # ``primary_key`` in the metadata: the columns that identify a row (diff, corrections).
    primary_key: tuple[str, ...] = ()

    @property
    def extra_columns(self) -> str | None:
        """What the contract does with columns it does not declare, if it says."""
        extra = self.definition["metadata"].get("extra_columns")
        return None if extra is None else str(extra)

    @property
    def policies(self) -> tuple[ColumnPolicy, ...]:
        """The PII policies of the columns that declare one."""
        return tuple(c.policy for c in self.columns if c.policy is not None)

    @property
    def pii_columns(self) -> frozenset[str]:
        """Names of columns whose values must never be shown raw."""
        return frozenset(c.name for c in self.columns if c.policy is not None)

    @property
    def check_names(self) -> frozenset[str]:
        """Every check name a validation report of this contract can give."""
        names = {"not_nullable", "field_uniqueness", "column_in_schema", "column_in_dataframe"}
        for column in self.columns:
            names.add(f"dtype('{column.dtype}')")
            names.update(check["id"] for check in column.checks)
        names.update(check["id"] for check in self.definition["dataframe_checks"])
        return frozenset(names)

    def spec_for(self, column: str | None) -> ColumnSpec | None:
        """The contract column governing ``column`` of an upload (by name or regex), if any."""
        if column is None:
            return None
        for spec in self.columns:
            if spec.name == column if not spec.regex else re.fullmatch(spec.name, column):
                return spec
        return None

    @property
    def dtypes(self) -> dict[str, pl.DataType]:
        """Column name to the polars dtype the contract requires."""
        return {c.name: c.dtype for c in self.columns}

    def describe(self) -> dict[str, Any]:
        """The contract as ``GET /api/v1/contracts/{name}`` shows it."""
        return {
            "name": self.dataset,
            "model": self.model_name,
            "version": self.version,
            "fingerprint": self.fingerprint,
            "owner": self.owner,
            "description": self.description,
            "source_file": self.source_file,
            "policies": {
                "on_invalid": self.on_invalid,
                "undeclared_pii": self.undeclared_pii,
                "pii_entities": sorted(self.detection.entities),
                "pii_phone_regions": list(self.detection.phone_regions),
                **(
                    {
                        "quarantine": {
                            "max_invalid_fraction": self.quarantine.max_invalid_fraction,
                            "min_valid_rows": self.quarantine.min_valid_rows,
                            "quarantine_days": self.quarantine.expire_days,
                            "keys": list(self.quarantine.keys),
                        }
                    }
                    if self.quarantine is not None
                    else {}
                ),
                "primary_key": list(self.primary_key),
                "retention": None
                if self.retention is None
                else {
                    "keep_last": self.retention.keep_last,
                    "max_age_days": self.retention.max_age_days,
                },
                "drift": {
                    "action": self.drift.action,
                    "default": dict(self.drift.default) if self.drift.default else None,
                    "columns": {c: dict(t) for c, t in self.drift.columns.items()},
                },
            },
            "strict": self.definition["strict"],
            "columns": [c.describe() for c in self.columns],
            "dataframe_checks": self.definition["dataframe_checks"],
        }


@dataclass
class ContractCatalog:
    """Every contract found in a folder, every file that failed to load, and the datasets
    that cannot be served until their contract files are fixed."""

    folder: Path
    contracts: dict[str, Contract] = field(default_factory=dict)
    errors: list[ContractLoadError] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)

    def get(self, dataset: str) -> Contract | None:
        """The contract of ``dataset``, if one is loaded."""
        return self.contracts.get(dataset)

    def require(self, dataset: str) -> Contract:
        """The contract of ``dataset``.

        Raises:
            ContractUnavailable: contract files for it exist but none can be used (e.g. two
                contracts claim the dataset).
            DatasetNotFound: no contract defines it.
        """
        contract = self.contracts.get(dataset)
        if contract is not None:
            return contract
        if dataset in self.unavailable:
            raise ContractUnavailable(self.unavailable[dataset])
        raise DatasetNotFound(f"no contract defines dataset {dataset!r}")


def snake_case(name: str) -> str:
    """``CustomerOrders`` -> ``customer_orders``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _describe_check(check: Any) -> dict[str, Any]:
    described: dict[str, Any] = {
        "name": check.name,
        "id": check.error or check.name,
        "statistics": json.loads(json.dumps(check.statistics or {}, default=str, sort_keys=True)),
    }
    return described


def _column_policy(name: str, metadata: Mapping[str, Any]) -> ColumnPolicy | None:
    entity = metadata.get("pii")
    action = metadata.get("redact")
    if entity is None:
        if action is not None:
            raise PolicyError(f"column {name!r}: 'redact' given without 'pii'")
        return None
    if not isinstance(entity, str):
        raise PolicyError(f"column {name!r}: pii must be a string, got {type(entity).__name__}")
    policy = ColumnPolicy(
        column=name,
        entity=entity,
        action=action
        if action is not None
        else ("scan" if entity == "scan" else DEFAULT_REDACT_ACTION),
        justification=metadata.get("justification"),
    )
    if policy.is_free_text:
        if action is not None:
            raise PolicyError(f"column {name!r}: pii 'scan' finds spans itself; drop 'redact'")
        return policy
    policy.check(_KNOWN_ACTIONS)
    return policy


def _dataset_name(model: type[pa.DataFrameModel]) -> str:
    # Pandera fills Config.name with the class name when the author gave none.
    config = model.__config__
    explicit = getattr(config, "name", None)
    if isinstance(explicit, str) and explicit != model.__name__:
        return explicit
    return snake_case(model.__name__)


def _without_coercion(schema: pa.DataFrameSchema) -> pa.DataFrameSchema:
    # Datagate coerces with Pandera's dtype engine itself, column by column, so that a cell that
    # does not convert is reported under its column (Pandera files it under the schema's name);
    # Pandera's own coercion would also crash on a missing column a dataframe check uses.
    # A nested model's column stays as Pandera sets it: Pandera validates the struct's fields
    # through that coercion.
    checked = copy.deepcopy(schema)
    checked.coerce = False
    for column in checked.columns.values():
        if nested_model(column) is None:
            column.coerce = False
    return checked


def nested_model(column: Any) -> str | None:
    """The name of the DataFrameModel a column's struct is validated against, if any."""
    schema = getattr(column.dtype, "schema", None)
    return None if schema is None else str(getattr(schema, "name", None) or "nested model")


def _keeping_rows(schema: pa.DataFrameSchema) -> pa.DataFrameSchema:
    kept = copy.deepcopy(schema)
    kept.drop_invalid_rows = False
    return kept


def build_contract(model: type[pa.DataFrameModel], source_file: str) -> Contract:
    """Turn a DataFrameModel into a Contract, checking its gateway policy.

    Raises:
        ValueError: the model's metadata holds a policy Datagate cannot apply.
    """
    schema = model.to_schema()
    dataset = _dataset_name(model)
    if not DATASET_NAME.match(dataset):
        raise ValueError(f"dataset name {dataset!r} must match {DATASET_NAME.pattern}")
    config = model.__config__
    meta = dict((config.metadata if config is not None else None) or {})
    on_invalid = meta.get("on_invalid", "reject")
    if on_invalid not in ON_INVALID:
        raise ValueError(
            f"on_invalid {on_invalid!r} is not supported "
            f"(supported: {', '.join(sorted(ON_INVALID))})"
        )
    primary_key = _primary_key(meta, schema)
    quarantine = _quarantine_policy(meta, schema) if on_invalid == "quarantine" else None
    retention = _retention_policy(meta.get("retention"))
    drift = drift_policy(meta.get("drift"), list(schema.columns))
    extra = meta.get("extra_columns")
    if extra is not None:
        schema = copy.deepcopy(schema)  # not the model's own (cached) schema
        schema.strict = _strictness(extra, schema.strict)
    undeclared = meta.get("undeclared_pii", "redact")
    if undeclared not in UNDECLARED_PII:
        raise ValueError(
            f"undeclared_pii {undeclared!r} must be one of {', '.join(sorted(UNDECLARED_PII))}"
        )
    columns: list[ColumnSpec] = []
    for name, column in schema.columns.items():
        col_meta = dict(column.metadata or {})
        columns.append(
            ColumnSpec(
                name=name,
                dtype=column.dtype.type if column.dtype is not None else pl.String(),
                nullable=bool(column.nullable),
                unique=bool(column.unique),
                required=bool(column.required),
                checks=tuple(_describe_check(c) for c in column.checks),
                policy=_column_policy(name, col_meta),
                description=column.description,
                coerce=bool(schema.coerce or column.coerce),
                regex=bool(column.regex),
            )
        )
    definition = {
        "dataset": dataset,
        "strict": schema.strict,
        "coerce": schema.coerce,
        "unique": schema.unique,
        "metadata": json.loads(json.dumps(meta, default=str, sort_keys=True)),
        "columns": [
            {
                **c.describe(),
                "metadata": json.loads(
                    json.dumps(schema.columns[c.name].metadata or {}, default=str, sort_keys=True)
                ),
            }
            for c in columns
        ],
        "dataframe_checks": [_describe_check(c) for c in schema.checks],
    }
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode())
    digest.update(code_digest(model).encode())
    checked = _without_coercion(schema)
    if quarantine is not None:
        checked.drop_invalid_rows = True  # failing rows leave the version, to be held
    return Contract(
        dataset=dataset,
        model_name=model.__name__,
        schema=schema,
        checked_schema=checked,
        reporting_schema=_keeping_rows(_without_coercion(schema)),
        version=str(meta.get("version", "0.0.0")),
        owner=meta.get("owner"),
        description=meta.get("description") or (inspect.getdoc(model) or None),
        on_invalid=on_invalid,
        undeclared_pii=undeclared,
        source_file=source_file,
        columns=tuple(columns),
        definition=definition,
        fingerprint=digest.hexdigest(),
        detection=DetectionConfig.from_metadata(meta),
        quarantine=quarantine,
        retention=retention,
        drift=drift,
        primary_key=primary_key,
    )


EXTRA_COLUMNS = {"reject": True, "drop": "filter", "keep": False}


def _strictness(extra: Any, strict: Any) -> Any:
    """Pandera's ``strict`` for ``extra_columns`` (dlt's schema-contract modes for columns the
    contract does not declare): reject them, drop them from what is stored, or keep them
    (kept ones go through undeclared-PII handling like any undeclared column)."""
    if extra not in EXTRA_COLUMNS:
        raise ValueError(f"extra_columns {extra!r} must be one of {', '.join(EXTRA_COLUMNS)}")
    if strict not in (False, EXTRA_COLUMNS[extra]):
        raise ValueError(
            f"extra_columns {extra!r} contradicts Config.strict = {strict!r}: declare one of them"
        )
    return EXTRA_COLUMNS[extra]


def _quarantine_policy(meta: Mapping[str, Any], schema: pa.DataFrameSchema) -> QuarantinePolicy:
    fraction = meta.get("max_invalid_fraction", DEFAULT_MAX_INVALID_FRACTION)
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, int | float)
        or not 0 <= fraction <= 1
    ):
        raise ValueError("max_invalid_fraction must be a number from 0 to 1")
    minimum = meta.get("min_valid_rows", 1)
    if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 0:
        raise ValueError("min_valid_rows must be a whole number of rows, 0 or more")
    days = meta.get("quarantine_days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
        raise ValueError("quarantine_days must be a whole number of days, 1 or more")
    keys = _primary_key(meta, schema) or tuple(
        name for name, column in schema.columns.items() if column.unique and not column.regex
    )
    return QuarantinePolicy(
        max_invalid_fraction=float(fraction), min_valid_rows=minimum, expire_days=days, keys=keys
    )


def _primary_key(meta: Mapping[str, Any], schema: pa.DataFrameSchema) -> tuple[str, ...]:
    declared = meta.get("primary_key")
    if declared is None:
        return ()
    if isinstance(declared, str):
        declared = [declared]
    if not isinstance(declared, list | tuple) or not all(isinstance(k, str) for k in declared):
        raise ValueError("primary_key must name a column or a list of columns")
    unknown = [k for k in declared if k not in schema.columns]
    if unknown or not declared:
        raise ValueError(f"primary_key names no column of the contract: {unknown[:3]}")
    return tuple(declared)


def _retention_policy(declared: Any) -> RetentionPolicy | None:
    if declared is None:
        return None
    if not isinstance(declared, Mapping) or not set(declared) <= {"keep_last", "max_age_days"}:
        raise ValueError("retention must be a dict with keep_last and/or max_age_days")
    keep = declared.get("keep_last")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise ValueError("retention keep_last must be a whole number of versions, 1 or more")
    age = declared.get("max_age_days")
    if age is not None and (isinstance(age, bool) or not isinstance(age, int | float) or age <= 0):
        raise ValueError("retention max_age_days must be a number of days above 0")
    if keep is None and age is None:
        raise ValueError("retention needs keep_last, max_age_days or both")
    return RetentionPolicy(keep_last=keep, max_age_days=None if age is None else float(age))


def _models_in(module: Any) -> list[type[pa.DataFrameModel]]:
    models = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, pa.DataFrameModel)
        and obj is not pa.DataFrameModel
        and obj.__module__ == module.__name__
    ]
    # A model used as another's column type describes a struct inside it, not a dataset
    # (Pandera builds its schema where it is used, under the model's name).
    nested: set[str | None] = set()
    for model in models:
        try:
            columns = model.to_schema().columns.values()
        except Exception:  # noqa: S112 - build_contract reports this model with its reason
            continue
        nested.update(
            getattr(column.dtype.schema, "name", None)
            for column in columns
            if getattr(column.dtype, "schema", None) is not None
        )
    return [model for model in models if model.__name__ not in nested]


def _object_api_schemas(module: Any) -> list[str]:
    return [
        name
        for name, obj in vars(module).items()
        if isinstance(obj, pa.DataFrameSchema) and not name.startswith("_")
    ]


PACKAGE = "datagate_contracts"
_LOADING = threading.Lock()


def _helpers(folder: Path) -> dict[str, Path]:
    """Helper modules of a contracts folder: ``_name.py`` files (not contracts themselves)."""
    return {p.stem: p for p in sorted(folder.glob("_*.py")) if p.stem != "__init__"}


@contextmanager
def _importable(folder: Path) -> Iterator[None]:
    """While contracts load, their helper modules import like a package's: ``from _helpers
    import x`` and ``from ._helpers import x`` both work. Afterwards the helpers leave
    ``sys.modules``, so another folder's ``_helpers`` is never confused with these."""
    helpers = _helpers(folder)
    package = types.ModuleType(PACKAGE)
    package.__path__ = [str(folder)]
    saved = sys.modules.get(PACKAGE)
    sys.modules[PACKAGE] = package
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        for stem in helpers:
            for name in (stem, f"{PACKAGE}.{stem}"):
                module = sys.modules.get(name)
                if module is not None and _defined_in(module, folder):
                    del sys.modules[name]
        if saved is None:
            sys.modules.pop(PACKAGE, None)
        else:
            sys.modules[PACKAGE] = saved


def _defined_in(module: Any, folder: Path) -> bool:
    origin = getattr(module, "__file__", None)
    return origin is not None and Path(origin).resolve().parent == folder.resolve()


def _registered_function(entry: Any, depth: int = 0) -> Any:
    """The user's function behind a registered check (Pandera keeps it in closures)."""
    function = getattr(entry, "func", entry)
    code = getattr(function, "__code__", None)
    if code is not None and "pandera" not in Path(code.co_filename).parts:
        return function
    if depth > 3:
        return None
    for cell in getattr(function, "__closure__", None) or ():
        try:
            found = _registered_function(cell.cell_contents, depth + 1)
        except ValueError:  # an empty cell
            continue
        if found is not None:
            return found
    return None


def _registered_checks() -> dict[str, Path | None]:
    """Every registered custom check and the file that defines it."""
    owners: dict[str, Path | None] = {}
    for name, entry in Check.REGISTERED_CUSTOM_CHECKS.items():
        function = _registered_function(entry)
        owners[name] = None if function is None else Path(function.__code__.co_filename)
    return owners


def _forget_checks_of(folder: Path) -> None:
    # Reloading a folder registers its checks anew; Pandera refuses a name twice.
    for name, owner in _registered_checks().items():
        if owner is not None and owner.resolve().parent == folder.resolve():
            Check.REGISTERED_CUSTOM_CHECKS.pop(name, None)


def _import_file(path: Path) -> Any:
    module_name = f"{PACKAGE}.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError("not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except ValueError as exc:
        sys.modules.pop(module_name, None)
        taken = re.match(r"method with name '(\w+)' already defined", str(exc))
        if taken is None:
            raise
        owner = _registered_checks().get(taken.group(1))
        where = f" by {owner.name}" if owner is not None else ""
        raise ValueError(
            f"check {taken.group(1)!r} is already registered{where}; registered check names "
            "are shared by every contract, so give this one another name"
        ) from None
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def load_contracts(folder: Path) -> ContractCatalog:
    """Load every contract in ``folder``; a broken file is recorded, never raised.

    A dataset claimed by two contracts gets neither (whichever file sorts first must not win):
    both are reported and the dataset is unavailable until one is removed. A file that raises
    anything at import — ``SystemExit`` included — is reported as broken. Files whose name
    starts with ``_`` are helper modules the contracts may import.
    """
    catalog = ContractCatalog(folder=folder)
    if not folder.is_dir():
        catalog.errors.append(ContractLoadError(str(folder), "contracts folder does not exist"))
        return catalog
    claims: dict[str, list[Contract]] = {}
    with _LOADING, _importable(folder):
        _forget_checks_of(folder)
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            try:
                module = _import_file(path)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # a contract file is user code: any failure is reported
                catalog.errors.append(ContractLoadError(str(path), _reason(exc)))
                continue
            models = _models_in(module)
            if not models and _object_api_schemas(module):
                names = ", ".join(_object_api_schemas(module))
                catalog.errors.append(
                    ContractLoadError(
                        str(path),
                        f"{names}: a pa.DataFrameSchema object; Datagate reads contracts written "
                        "as DataFrameModel classes (the same columns and checks, as a class)",
                    )
                )
            for model in models:
                try:
                    contract = build_contract(model, str(path))
                    contract = replace(contract, source=path.read_text(errors="replace"))
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:
                    catalog.errors.append(
                        ContractLoadError(str(path), f"{model.__name__}: {_reason(exc)}")
                    )
                    continue
                claims.setdefault(contract.dataset, []).append(contract)
    for dataset, contracts in claims.items():
        if len(contracts) == 1:
            catalog.contracts[dataset] = contracts[0]
            continue
        names = " and ".join(f"{c.model_name} in {Path(c.source_file).name}" for c in contracts)
        reason = (
            f"dataset {dataset!r} is defined by {names}; neither is used until only one remains"
        )
        catalog.unavailable[dataset] = reason
        for contract in contracts:
            catalog.errors.append(ContractLoadError(contract.source_file, reason))
    return catalog


# -- the code of a contract ------------------------------------------------------------------


def _code_of(path: Path) -> str:
    """A module's syntax tree: what it does, without its comments and formatting."""
    return ast.dump(ast.parse(path.read_text(), filename=str(path)), include_attributes=False)


def _local_imports(tree: ast.Module, folder: Path) -> set[Path]:
    helpers = _helpers(folder)
    found: set[Path] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.module:
                names = [node.module]
            elif node.level:  # from . import _helpers
                names = [alias.name for alias in node.names]
        for name in names:
            head = name.split(".")[0]
            if head == PACKAGE and "." in name:
                head = name.split(".")[1]
            if head in helpers:
                found.add(helpers[head])
    return found


def code_digest(model: type[pa.DataFrameModel]) -> str:
    """SHA-256 over the code that gives ``model`` its meaning: its module's syntax tree (other
    models of the same file left out) and the helper modules of the contracts folder it
    imports, transitively. Comments and formatting do not count; any change to a check's body,
    a helper or a constant does."""
    module = sys.modules.get(model.__module__)
    source = getattr(module, "__file__", None)
    if source is None:
        return ""
    path = Path(source)
    tree = ast.parse(path.read_text(), filename=str(path))
    others = {
        name
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and issubclass(obj, pa.DataFrameModel)
        and obj is not model
        and obj.__module__ == model.__module__
    }
    tree.body = [
        node for node in tree.body if not (isinstance(node, ast.ClassDef) and node.name in others)
    ]
    digest = hashlib.sha256(ast.dump(tree, include_attributes=False).encode())
    seen: set[Path] = set()
    pending = _local_imports(tree, path.parent)
    while pending:
        helper = pending.pop()
        if helper in seen:
            continue
        seen.add(helper)
        digest.update(helper.name.encode() + b"\0" + _code_of(helper).encode())
        pending |= _local_imports(ast.parse(helper.read_text()), path.parent)
    return digest.hexdigest()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    return f"{type(exc).__name__}: {exc}"


def load_source(source: str, filename: str, helpers: Path) -> ContractCatalog:
    """Contracts from recorded code (a file named ``filename``), with the ``_`` helpers of
    the folder ``helpers``, loaded in a folder of their own."""
    with tempfile.TemporaryDirectory(prefix="datagate-contract-") as folder:
        copy = Path(folder)
        for helper in helpers.glob("_*.py"):
            shutil.copy(helper, copy / helper.name)
        (copy / filename).write_text(source)
        catalog = load_contracts(copy)
        _forget_checks_of(copy)
    return catalog


def load_contract_path(path: Path) -> ContractCatalog:
    """The contracts of a folder, or of one file (loaded with its folder's ``_`` helpers, in a
    folder of its own, so two versions of one file load side by side).

    Raises:
        FileNotFoundError: no such file or folder.
    """
    if path.is_dir():
        return load_contracts(path)
    if not path.is_file():
        raise FileNotFoundError(f"no contract file or folder at {path}")
    with tempfile.TemporaryDirectory(prefix="datagate-contract-") as folder:
        copy = Path(folder)
        for helper in path.parent.glob("_*.py"):
            shutil.copy(helper, copy / helper.name)
        shutil.copy(path, copy / path.name)
        catalog = load_contracts(copy)
        _forget_checks_of(copy)
    for error in catalog.errors:  # name the user's file, not the copy
        error.file = str(path)
    return catalog
