"""Drift of every new version against the previous one (and a pinned reference version).

Each version keeps a small **profile** of its stored data, computed once at ingest: per column
its rows, nulls and distinct count; for a numeric (or date/time) column 101 quantiles, mean and
standard deviation; for any other column the frequencies of its 200 most common values, each
named by a keyed pseudonym (never a value) — which is also all a PII column is measured by,
since what is stored of it is a pseudonym, a mask or a placeholder. Quantiles and frequencies
come from an evenly spaced sample of at most ``SAMPLE_ROWS`` rows; counts from every row.
Comparing two versions needs only their profiles, so a version is compared with a reference
whose data has since been deleted, and drift costs one pass over the new data.

Statistics (Evidently's, with its defaults for more than 1,000 rows): numeric: PSI on the
baseline's deciles, the Kolmogorov-Smirnov statistic, the Wasserstein distance divided by the
baseline's standard deviation (drift above 0.1); categorical: PSI and the Jensen-Shannon
distance (natural log; drift above 0.1) over the baseline's values holding at least 0.5 % of
its sampled rows (and 30 of them), every rarer value in one bucket (a long tail of ids or
pseudonyms differs between any two samples; Evidently flags such columns, Datagate does not);
every column: the change of its null rate (drift above 0.1) and the relative change of its
distinct count (reported). A contract's ``drift``
metadata sets thresholds per column (``columns``) or for all (``default``), and the action:
``warn`` (the default: the version is stored and flagged) or ``reject`` (the upload is refused
with the report, 422).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from privacy import RedactionKey
from privacy.actions import keyed_pseudonym

SAMPLE_ROWS = 50_000
QUANTILES = 101
TOP_VALUES = 200
# Values of the sample named (by pseudonym) for comparisons: the most common, seen twice or
# more (a value seen once is a drop in any bucket; an id column is all such values).
COUNTED_VALUES = 5_000
MIN_SHARE = 0.005
MIN_COUNT = 30
PROFILE_FORMAT = 1
_EPS = 1e-4
STATISTICS = ("psi", "ks", "wasserstein", "jensen_shannon", "null_rate", "distinct")
NUMERIC_DEFAULTS = {"wasserstein": 0.1, "null_rate": 0.1}
CATEGORICAL_DEFAULTS = {"jensen_shannon": 0.1, "null_rate": 0.1}
ACTIONS = ("warn", "reject")


@dataclass(frozen=True)
class DriftPolicy:
    """A contract's ``drift`` metadata: thresholds per column (or for every column) and what
    a drifted column does to the upload."""

    action: str = "warn"
    default: Mapping[str, float] | None = None
    columns: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def thresholds(self, column: str, kind: str) -> tuple[dict[str, float], str]:
        """The thresholds that apply to ``column`` and the action its drift takes."""
        own = dict(self.columns.get(column) or {})
        action = str(own.pop("action", self.action))
        if own:
            return {k: float(v) for k, v in own.items()}, action
        if self.default is not None:
            return dict(self.default), action
        return dict(NUMERIC_DEFAULTS if kind == "numeric" else CATEGORICAL_DEFAULTS), action


def drift_policy(declared: Any, columns: Sequence[str]) -> DriftPolicy:
    """Read a contract's ``drift`` metadata.

    Raises:
        ValueError: anything Datagate cannot apply (the contract does not load).
    """
    if declared is None:
        return DriftPolicy()
    if not isinstance(declared, Mapping) or not set(declared) <= {"action", "default", "columns"}:
        raise ValueError("drift must be a dict with action, default and/or columns")
    action = declared.get("action", "warn")
    if action not in ACTIONS:
        raise ValueError(f"drift action must be one of {', '.join(ACTIONS)}")

    def thresholds(value: Any, where: str, allow_action: bool) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ValueError(f"drift {where} must be a dict of statistic: threshold")
        read: dict[str, Any] = {}
        for name, limit in value.items():
            if allow_action and name == "action":
                if limit not in ACTIONS:
                    raise ValueError(f"drift {where} action must be one of {', '.join(ACTIONS)}")
                read[name] = limit
                continue
            if name not in STATISTICS:
                raise ValueError(
                    f"drift {where}: {name!r} is not a statistic ({', '.join(STATISTICS)})"
                )
            if isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0:
                raise ValueError(f"drift {where} {name} must be a number, 0 or more")
            read[name] = float(limit)
        return read

    default = declared.get("default")
    per_column = declared.get("columns") or {}
    if not isinstance(per_column, Mapping):
        raise ValueError("drift columns must map column names to thresholds")
    unknown = [c for c in per_column if c not in columns]
    if unknown:
        raise ValueError(f"drift names columns the contract does not declare: {unknown[:3]}")
    return DriftPolicy(
        action=str(action),
        default=None if default is None else thresholds(default, "default", False),
        columns={c: thresholds(v, f"columns.{c}", True) for c, v in per_column.items()},
    )


# -- profiles ---------------------------------------------------------------------------------


class Sampler:
    """An evenly spaced sample of the rows of a version as its parts go by (every ``step``-th
    row, the step doubling whenever the sample passes ``limit``), so the profile needs no
    second read of what was just written."""

    def __init__(self, limit: int = SAMPLE_ROWS) -> None:
        self.limit = limit
        self.step = 1
        self.seen = 0
        self.frames: list[pl.DataFrame] = []
        self.rows = 0

    def add(self, frame: pl.DataFrame) -> None:
        """Keep the rows of ``frame`` (the next part) whose place is a multiple of the step."""
        first = (-self.seen) % self.step
        self.seen += frame.height
        if first < frame.height:
            picked = frame.slice(first).gather_every(self.step)
            self.frames.append(picked)
            self.rows += picked.height
        while self.rows > self.limit:
            whole = pl.concat(self.frames, how="vertical_relaxed").gather_every(2)
            self.frames, self.rows, self.step = [whole], whole.height, self.step * 2

    def sample(self) -> pl.DataFrame | None:
        """The rows kept (None: none went by)."""
        return pl.concat(self.frames, how="vertical_relaxed") if self.frames else None


def _kind(dtype: pl.DataType) -> str:
    if dtype.is_numeric() and not isinstance(dtype, pl.Decimal):
        return "numeric"
    if isinstance(dtype, pl.Decimal | pl.Date | pl.Datetime | pl.Duration | pl.Time):
        return "numeric"
    if isinstance(dtype, pl.List | pl.Struct | pl.Array | pl.Object | pl.Null):
        return "skipped"
    return "categorical"


def _as_number(name: str, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Decimal):
        return pl.col(name).cast(pl.Float64)
    if isinstance(dtype, pl.Date | pl.Datetime | pl.Duration | pl.Time):
        return pl.col(name).to_physical().cast(pl.Float64)
    return pl.col(name).cast(pl.Float64)


def profile(files: Sequence[Path], rows: int, secret: RedactionKey) -> dict[str, Any]:
    """The drift profile of a version's stored Parquet ``files`` (``rows`` rows)."""
    return measure(files, rows, secret)[0]


def measure(
    files: Sequence[Path],
    rows: int,
    secret: RedactionKey,
    known: Mapping[str, tuple[int, int]] | None = None,
    sampled: pl.DataFrame | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """The drift profile of a version's stored Parquet ``files`` (``rows`` rows), and the
    sample's count of every value of each categorical column (by pseudonym): a baseline's
    most common values are looked up there, so both sides count the same values. ``known``:
    each column's null and distinct counts, when the ingest counted them already (then the
    stored data is not read once more for them); ``sampled``: a sample the ingest kept
    (``Sampler``) as it wrote the parts."""
    scan = pl.scan_parquet(list(files))
    schema = scan.collect_schema()
    kinds = {name: _kind(dtype) for name, dtype in schema.items()}
    counted = [n for n, k in kinds.items() if k != "skipped"]
    columns: dict[str, Any] = {}
    everything: dict[str, dict[str, int]] = {}
    if not counted or rows == 0:
        return {"format": PROFILE_FORMAT, "rows": rows, "columns": columns}, everything
    known = known or {}
    unknown = [n for n in counted if n not in known]
    counts_of = dict(known)
    if unknown:
        totals = scan.select(
            *(pl.col(n).null_count().alias(f"n:{n}") for n in unknown),
            *(pl.col(n).approx_n_unique().alias(f"d:{n}") for n in unknown),
        ).collect(engine="streaming")
        for n in unknown:
            counts_of[n] = (
                int(totals.get_column(f"n:{n}")[0]),
                int(totals.get_column(f"d:{n}")[0]),
            )
    if sampled is not None and set(counted) <= set(sampled.columns):
        sample = sampled.select(counted)
    else:
        step = max(1, math.ceil(rows / SAMPLE_ROWS))
        spaced = scan.gather_every(step) if step > 1 else scan
        sample = spaced.select(counted).collect(engine="streaming")
    numeric = [n for n in counted if kinds[n] == "numeric"]
    numbers = sample.select(_as_number(n, schema[n]).alias(n) for n in numeric)
    # Each categorical column's frequent values, pseudonymised in one pass for all columns.
    tallies: list[pl.DataFrame] = []
    sampled_of: dict[str, int] = {}
    for index, name in enumerate(n for n in counted if kinds[n] != "numeric"):
        text = sample.get_column(name).cast(pl.String).drop_nulls().rename("value")
        sampled_of[name] = text.len()
        tallied = text.value_counts(sort=True, name="count").head(COUNTED_VALUES)
        frequent = tallied.filter((pl.col("count") > 1) | (pl.int_range(pl.len()) < TOP_VALUES))
        tallies.append(frequent.with_columns(pl.lit(index).alias("column")))
    named = (
        pl.concat(tallies).with_columns(
            keyed_pseudonym(pl.col("value"), secret).str.slice(0, 16).alias("value")
        )
        if tallies
        else None
    )
    for index, name in enumerate(n for n in counted if kinds[n] != "numeric"):
        assert named is not None
        mine = named.filter(pl.col("column") == index)
        every = dict(zip(mine["value"].to_list(), mine["count"].to_list(), strict=True))
        everything[name] = every
    for name in counted:
        entry: dict[str, Any] = {
            "kind": kinds[name],
            "nulls": counts_of[name][0],
            "distinct": counts_of[name][1],
        }
        if kinds[name] == "numeric":
            values = numbers.get_column(name).drop_nulls()
            values = values.filter(values.is_finite())
            if values.len():
                # Values near the float limits overflow in between: such figures are left out
                # (JSON, and PostgreSQL, know no infinity), never an error of the ingest.
                with np.errstate(all="ignore"):
                    array = np.sort(values.to_numpy())
                    quantiles = np.quantile(array, np.linspace(0, 1, QUANTILES))
                    mean, std = float(array.mean()), float(array.std())
                if np.isfinite(quantiles).all():
                    entry["quantiles"] = quantiles.tolist()
                if math.isfinite(mean) and math.isfinite(std):
                    entry["mean"], entry["std"] = mean, std
        else:
            entry["sampled"] = int(sampled_of[name])
            entry["top"] = dict(list(everything[name].items())[:TOP_VALUES])
        columns[name] = entry
    return {"format": PROFILE_FORMAT, "rows": rows, "columns": columns}, everything


# -- statistics -------------------------------------------------------------------------------


def _cdf(quantiles: np.ndarray[Any, Any], x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    # The share of values at or below x, read off evenly spaced quantiles.
    return np.searchsorted(quantiles, x, side="right") / len(quantiles)


def _psi(expected: np.ndarray[Any, Any], actual: np.ndarray[Any, Any]) -> float:
    e = np.clip(expected, _EPS, None)
    a = np.clip(actual, _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _jensen_shannon(p: np.ndarray[Any, Any], q: np.ndarray[Any, Any]) -> float:
    p = p / p.sum() if p.sum() else p
    q = q / q.sum() if q.sum() else q
    m = (p + q) / 2

    def kl(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / b[mask])))

    return math.sqrt(max(0.0, (kl(p, m) + kl(q, m)) / 2))


def _numeric(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, float | None]:
    if "quantiles" not in base or "quantiles" not in new:
        return {"psi": None, "ks": None, "wasserstein": None}
    qb, qn = np.asarray(base["quantiles"]), np.asarray(new["quantiles"])
    edges = np.unique(qb[10:100:10])
    cut_b = np.concatenate([[0.0], _cdf(qb, edges), [1.0]])
    cut_n = np.concatenate([[0.0], _cdf(qn, edges), [1.0]])
    points = np.union1d(qb, qn)
    ks = float(np.max(np.abs(_cdf(qb, points) - _cdf(qn, points))))
    with np.errstate(all="ignore"):
        distance = float(np.trapezoid(np.abs(qb - qn), np.linspace(0, 1, len(qb))))
        scale = float(base.get("std") or 0.0)
        if scale == 0.0:
            scale = abs(float(base.get("mean") or 0.0)) or 1.0
        wasserstein = distance / scale
    return {
        "psi": _psi(np.diff(cut_b), np.diff(cut_n)),
        "ks": ks,
        "wasserstein": wasserstein if math.isfinite(wasserstein) else None,
    }


def _categorical(
    base: Mapping[str, Any], new: Mapping[str, Any], counts: Mapping[str, int] | None
) -> dict[str, float | None]:
    """PSI and Jensen-Shannon over the baseline's most common values and all others. The new
    side's counts of those values come from every value it sampled (``counts``) when known,
    so a value just outside one side's top list is not counted as missing there."""
    seen = counts if counts is not None else (new.get("top") or {})
    total_b, total_n = base.get("sampled") or 0, new.get("sampled") or 0
    if not total_b or not total_n:
        return {"psi": None, "jensen_shannon": None}
    # Values rarer than MIN_SHARE of the baseline (or seen fewer than MIN_COUNT times) are
    # one bucket with every other value: a long tail of ids or pseudonyms differs between any
    # two samples, and a value picked for being frequent in a small sample is less so in the
    # next; neither is drift.
    floor = max(MIN_SHARE * total_b, MIN_COUNT)
    top_b = {k: n for k, n in (base.get("top") or {}).items() if n >= floor}
    keys = sorted(top_b) if counts is not None else sorted(set(top_b) | set(seen))
    pb = np.asarray([top_b.get(k, 0) for k in keys], dtype=float) / total_b
    pn = np.asarray([seen.get(k, 0) for k in keys], dtype=float) / total_n
    pb = np.append(pb, max(0.0, 1 - pb.sum()))  # every value outside both top lists
    pn = np.append(pn, max(0.0, 1 - pn.sum()))
    return {"psi": _psi(pb, pn), "jensen_shannon": _jensen_shannon(pb, pn)}


def _rate(entry: Mapping[str, Any], rows: int) -> float:
    return float(entry.get("nulls", 0)) / rows if rows else 0.0


def compare(
    base: Mapping[str, Any],
    new: Mapping[str, Any],
    policy: DriftPolicy,
    counts: Mapping[str, Mapping[str, int]] | None = None,
) -> list[dict[str, Any]]:
    """Every column of ``new`` also in ``base``, measured and judged (``counts``: the new
    version's sampled value counts, from ``measure``)."""
    results = []
    for name, entry in new.get("columns", {}).items():
        before = base.get("columns", {}).get(name)
        if before is None or before.get("kind") != entry.get("kind"):
            continue
        kind = entry["kind"]
        stats: dict[str, float | None] = (
            _numeric(before, entry)
            if kind == "numeric"
            else _categorical(before, entry, None if counts is None else counts.get(name))
        )
        stats["null_rate"] = abs(_rate(entry, new["rows"]) - _rate(before, base["rows"]))
        stats["distinct"] = (entry["distinct"] - before["distinct"]) / max(before["distinct"], 1)
        limits, action = policy.thresholds(name, kind)
        exceeded = [
            s
            for s, limit in limits.items()
            if stats.get(s) is not None and abs(float(stats[s] or 0.0)) > limit
        ]
        results.append(
            {
                "column": name,
                "kind": kind,
                **{s: None if v is None else round(float(v), 6) for s, v in stats.items()},
                "thresholds": limits,
                "drifted": bool(exceeded),
                "exceeded": exceeded,
                "action": action if exceeded else None,
            }
        )
    return results


def report(
    new: Mapping[str, Any],
    baselines: Sequence[tuple[str, int, Mapping[str, Any]]],
    policy: DriftPolicy,
    counts: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, Any]:
    """The drift report of a new version against each baseline (``previous``,
    ``reference``): per column, the statistics and whether it drifted; the status is
    ``reject`` if a drifted column's action is reject, ``warn`` if any column drifted,
    ``ok`` otherwise (``none``: nothing to compare with)."""
    comparisons: list[dict[str, Any]] = []
    for label, number, base in baselines:
        columns = compare(base, new, policy, counts)
        comparisons.append(
            {
                "baseline": label,
                "version": number,
                "columns": columns,
                "drifted": [c["column"] for c in columns if c["drifted"]],
            }
        )
    actions = {c["action"] for comp in comparisons for c in comp["columns"] if c["drifted"]}
    status = (
        "none"
        if not comparisons
        else "reject"
        if "reject" in actions
        else "warn"
        if actions
        else "ok"
    )
    return {"status": status, "comparisons": comparisons}
