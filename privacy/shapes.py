"""The text inside a column of any shape: plain strings, categoricals, and strings nested in
structs, lists and arrays, each addressed as a *leaf* that can be read flat and rewritten in
place with polars expressions (no per-row Python)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import polars as pl
from polars.datatypes import DataTypeClass

DType = pl.DataType | DataTypeClass
ITEM = "[]"  # a path step into the elements of a list or array
LeafRewrite = Callable[[pl.Expr], pl.Expr]
"""Rewrites the text of one leaf (given as a String expression)."""


def is_text(dtype: DType) -> bool:
    """Text Datagate reads for PII: strings, categoricals and enums."""
    return dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum)


def is_nested(dtype: DType) -> bool:
    """A struct, list or array column."""
    return isinstance(dtype, pl.Struct | pl.List | pl.Array)


@dataclass(frozen=True)
class TextLeaf:
    """One place text lives inside a column: the column and the path down to it."""

    column: str
    path: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``column``, ``column.field``, ``column[]`` or ``column[].field`` as reports show it."""
        return self.column + "".join(ITEM if step == ITEM else f".{step}" for step in self.path)


def text_leaves(column: str, dtype: DType) -> list[TextLeaf]:
    """Every text leaf of a column, depth first."""
    leaves: list[TextLeaf] = []
    stack: list[tuple[DType, tuple[str, ...]]] = [(dtype, ())]
    while stack:
        current, path = stack.pop()
        if is_text(current):
            leaves.append(TextLeaf(column, path))
        elif isinstance(current, pl.Struct):
            stack.extend((f.dtype, (*path, f.name)) for f in reversed(current.fields))
        elif isinstance(current, pl.List | pl.Array):
            stack.append((current.inner, (*path, ITEM)))
    return leaves


def leaf_values(frame: pl.DataFrame, leaf: TextLeaf) -> pl.Series:
    """The leaf's values as one flat String series (every list element, every struct field)."""
    expr = pl.col(leaf.column)
    dtype: DType = frame.schema[leaf.column]
    for step in leaf.path:
        if step == ITEM:
            expr = expr.arr.explode() if isinstance(dtype, pl.Array) else expr.list.explode()
            assert isinstance(dtype, pl.List | pl.Array)
            dtype = dtype.inner
        else:
            expr = expr.struct.field(step)
            assert isinstance(dtype, pl.Struct)
            dtype = next(f.dtype for f in dtype.fields if f.name == step)
    return frame.select(expr.cast(pl.String).alias(leaf.label)).to_series()


def rewrite_column(
    column: str, dtype: DType, rewrites: Mapping[tuple[str, ...], LeafRewrite]
) -> pl.Expr:
    """An expression for ``column`` with each leaf in ``rewrites`` rewritten; nulls (of the
    column, its structs and its lists) stay null. Arrays come back as lists."""
    return _rewrite(pl.col(column), dtype, (), rewrites).alias(column)


def _rewrite(
    expr: pl.Expr,
    dtype: DType,
    path: tuple[str, ...],
    rewrites: Mapping[tuple[str, ...], LeafRewrite],
) -> pl.Expr:
    if path in rewrites:
        return rewrites[path](expr.cast(pl.String))
    if not any(p[: len(path)] == path for p in rewrites):
        return expr
    if isinstance(dtype, pl.Struct):
        return expr.struct.with_fields(
            _rewrite(pl.field(f.name), f.dtype, (*path, f.name), rewrites).alias(f.name)
            for f in dtype.fields
        )
    if isinstance(dtype, pl.List | pl.Array):
        as_list = expr if isinstance(dtype, pl.List) else expr.cast(pl.List(dtype.inner))
        return as_list.list.eval(_rewrite(pl.element(), dtype.inner, (*path, ITEM), rewrites))
    return expr


def field_names(dtype: DType) -> set[str]:
    """Every struct field name anywhere inside ``dtype``."""
    names: set[str] = set()
    stack: list[DType] = [dtype]
    while stack:
        current = stack.pop()
        if isinstance(current, pl.Struct):
            names.update(f.name for f in current.fields)
            stack.extend(f.dtype for f in current.fields)
        elif isinstance(current, pl.List | pl.Array):
            stack.append(current.inner)
    return names


def rename_fields(column: str, dtype: DType, renamed: Mapping[str, str]) -> pl.Expr | None:
    """``column`` with every struct field named in ``renamed`` renamed, at any depth (None when
    nothing changes). Names made equal by renaming get a ``_2``, ``_3`` … suffix."""
    if not field_names(dtype) & set(renamed):
        return None
    return _rename(pl.col(column), dtype, renamed).alias(column)


def _rename(expr: pl.Expr, dtype: DType, renamed: Mapping[str, str]) -> pl.Expr:
    if isinstance(dtype, pl.Struct):
        inner = [
            _rename(pl.field(f.name), f.dtype, renamed).alias(f.name)
            for f in dtype.fields
            if field_names(f.dtype) & set(renamed)
        ]
        rebuilt = expr.struct.with_fields(inner) if inner else expr
        names = unique_names([renamed.get(f.name, f.name) for f in dtype.fields])
        return rebuilt.struct.rename_fields(names)
    if isinstance(dtype, pl.List | pl.Array):
        as_list = expr if isinstance(dtype, pl.List) else expr.cast(pl.List(dtype.inner))
        return as_list.list.eval(_rename(pl.element(), dtype.inner, renamed))
    return expr


def unique_names(names: list[str]) -> list[str]:
    """``names`` with repeats made unique by a ``_2``, ``_3`` … suffix, order kept."""
    seen: set[str] = set()
    out: list[str] = []
    for name in names:
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate)
        out.append(candidate)
    return out
