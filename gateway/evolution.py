"""How a contract changed between two versions, and whether each change is compatible.

Two canonical definitions (``Contract.definition``, as recorded in the contract history) are
compared column by column. Every change is labelled for **backward** compatibility (data valid
under the old contract stays valid under the new) and **forward** compatibility (readers of the
old shape can read data stored under the new). Where that cannot be decided (two different
regular expressions, a custom check whose parameters changed) the label is unknown (None), and
an unknown label counts as incompatible. A weaker PII handling is flagged whatever the mode.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

MODES = ("backward", "forward", "full", "none")
DEFAULT_MODE = "backward"
# How much of a value an action lets through, least to most protective.
_ACTION_STRENGTH = {
    "keep": 0,
    "mask": 1,
    "encrypt": 2,
    "hash": 3,
    "replace": 4,
    "scan": 4,
    "drop": 5,
}
_UNDECLARED_STRENGTH = {"warn": 0, "redact": 1, "reject": 2}
_SIGNED = ("Int8", "Int16", "Int32", "Int64", "Int128")
_UNSIGNED = ("UInt8", "UInt16", "UInt32", "UInt64")
_FLOATS = ("Float32", "Float64")
_DECIMAL = re.compile(r"Decimal\(precision=(\d+|None), scale=(\d+)\)")
_LOWER_BOUNDS = ("greater_than_or_equal_to", "greater_than")
_UPPER_BOUNDS = ("less_than_or_equal_to", "less_than")
_PATTERNS = ("str_matches", "str_contains", "str_startswith", "str_endswith")


@dataclass(frozen=True)
class Change:
    """One difference between two contract versions and what it breaks."""

    kind: str
    column: str | None
    detail: str
    backward: bool | None  # None: not decidable
    forward: bool | None
    privacy: bool = False  # personal data is handled more weakly

    def breaks(self, mode: str) -> bool:
        """Whether the change is incompatible under ``mode`` (a privacy weakening always is)."""
        if self.privacy:
            return True
        directions = {
            "backward": ("backward",),
            "forward": ("forward",),
            "full": ("backward", "forward"),
        }
        return any(getattr(self, d) is not True for d in directions.get(mode, ()))

    def as_dict(self) -> dict[str, Any]:
        """The change as JSON."""
        return asdict(self)


def _major(version: str) -> int | None:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def major_bump(old_version: str, new_version: str) -> bool:
    """Whether ``new_version`` raises the major number of ``old_version`` (semantic versions)."""
    old, new = _major(old_version), _major(new_version)
    return old is not None and new is not None and new > old


def mode_of(definition: dict[str, Any]) -> str:
    """The compatibility mode a contract declares (``compatibility`` in its metadata)."""
    mode = (definition.get("metadata") or {}).get("compatibility", DEFAULT_MODE)
    return mode if mode in MODES else DEFAULT_MODE


def _widening(old: str, new: str) -> bool | None:
    """True when every value of dtype ``old`` is a value of ``new`` (a widening), False when
    the reverse holds (a narrowing), None when neither (another type)."""
    for family in (_SIGNED, _UNSIGNED, _FLOATS):
        if old in family and new in family:
            return family.index(new) > family.index(old)
    if old in _UNSIGNED and new in _SIGNED:
        return _SIGNED.index(new) > _UNSIGNED.index(old)
    if old in _SIGNED and new in _UNSIGNED:
        return False if _UNSIGNED.index(new) >= _SIGNED.index(old) else None
    if (old in _SIGNED or old in _UNSIGNED) and new in _FLOATS:
        return True  # as Avro promotes int and long to float and double
    if old in _FLOATS and (new in _SIGNED or new in _UNSIGNED):
        return False
    a, b = _DECIMAL.fullmatch(old), _DECIMAL.fullmatch(new)
    if a and b:
        op, os_ = int(a.group(1)) if a.group(1) != "None" else 38, int(a.group(2))
        np_, ns = int(b.group(1)) if b.group(1) != "None" else 38, int(b.group(2))
        if ns >= os_ and np_ - ns >= op - os_:
            return True
        if ns <= os_ and np_ - ns <= op - os_:
            return False
    return None


def _bounded(column: str | None, name: str, old: Any, new: Any, lower: bool) -> Change:
    try:
        tighter = new > old if lower else new < old
        looser = new < old if lower else new > old
    except TypeError:
        return Change("check_changed", column, f"{name}: {old!r} → {new!r}", None, None)
    if tighter:
        return Change("check_tightened", column, f"{name}: {old!r} → {new!r}", False, True)
    if looser:
        return Change("check_loosened", column, f"{name}: {old!r} → {new!r}", True, False)
    return Change("check_changed", column, f"{name}: {old!r} → {new!r}", None, None)


def _compare_check(column: str | None, old: dict[str, Any], new: dict[str, Any]) -> Change | None:
    """How one check of the same name changed (None: not at all)."""
    name = new["name"]
    before, after = old.get("statistics") or {}, new.get("statistics") or {}
    if before == after and old.get("id") == new.get("id"):
        return None
    if name in _LOWER_BOUNDS:
        return _bounded(column, name, before.get("min_value"), after.get("min_value"), True)
    if name in _UPPER_BOUNDS:
        return _bounded(column, name, before.get("max_value"), after.get("max_value"), False)
    if name in ("in_range", "str_length"):
        lower = _bounded(column, name, before.get("min_value"), after.get("min_value"), True)
        upper = _bounded(column, name, before.get("max_value"), after.get("max_value"), False)
        same_lower = before.get("min_value") == after.get("min_value")
        same_upper = before.get("max_value") == after.get("max_value")
        kinds = {c.kind for c, same in ((lower, same_lower), (upper, same_upper)) if not same}
        detail = f"{name}: {before} → {after}"
        if kinds == {"check_tightened"}:
            return Change("check_tightened", column, detail, False, True)
        if kinds == {"check_loosened"}:
            return Change("check_loosened", column, detail, True, False)
        if kinds and "check_changed" not in kinds:
            return Change("check_changed", column, detail, False, False)
        return Change("check_changed", column, detail, None, None)
    if name in ("isin", "notin"):
        key = "allowed_values" if name == "isin" else "forbidden_values"
        try:
            a, b = set(before.get(key) or ()), set(after.get(key) or ())
        except TypeError:
            return Change("check_changed", column, f"{name} changed", None, None)
        grown, shrunk = sorted(map(str, b - a)), sorted(map(str, a - b))
        detail = f"{name}: {'+' + ', +'.join(grown) if grown else ''}" + (
            f"{' ' if grown else ''}-{', -'.join(shrunk)}" if shrunk else ""
        )
        if not grown and not shrunk:
            return None
        allows_more = (name == "isin") == bool(grown)
        if grown and shrunk:
            return Change("check_changed", column, detail, False, False)
        if allows_more:
            return Change("check_loosened", column, detail, True, False)
        return Change("check_tightened", column, detail, False, True)
    if name in _PATTERNS:
        detail = f"{name}: {before.get('pattern')!r} → {after.get('pattern')!r}"
        return Change("check_changed", column, f"{detail} (not decidable)", None, None)
    if name in ("equal_to", "not_equal_to"):
        return Change("check_changed", column, f"{name}: {before} → {after}", False, False)
    return Change("check_changed", column, f"{name} changed (not decidable)", None, None)


def _diff_checks(
    column: str | None, old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]
) -> list[Change]:
    changes: list[Change] = []
    remaining = list(old)
    for check in new:
        match = next((c for c in remaining if c["name"] == check["name"]), None)
        if match is None:
            changes.append(Change("check_added", column, check["id"], False, True))
            continue
        remaining.remove(match)
        changed = _compare_check(column, match, check)
        if changed is not None:
            changes.append(changed)
    changes += [Change("check_removed", column, c["id"], True, False) for c in remaining]
    return changes


def _pii_strength(policy: dict[str, Any] | None) -> int:
    if policy is None:
        return -1
    return _ACTION_STRENGTH.get(str(policy.get("action")), 0)


def _describe_pii(policy: dict[str, Any] | None) -> str:
    return "none" if policy is None else f"{policy.get('entity')}:{policy.get('action')}"


def _diff_pii(column: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[Change]:
    if old == new:
        return []
    detail = f"{_describe_pii(old)} → {_describe_pii(new)}"
    weaker = _pii_strength(new) < _pii_strength(old)
    stronger = _pii_strength(new) > _pii_strength(old)
    kind = "pii_weakened" if weaker else "pii_strengthened" if stronger else "pii_changed"
    # Stored values change form: old readers of the column see other values.
    return [Change(kind, column, detail, True, False, privacy=weaker)]


def _diff_column(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    name = new["name"]
    changes: list[Change] = []
    if old["dtype"] != new["dtype"]:
        widening = _widening(old["dtype"], new["dtype"])
        detail = f"{old['dtype']} → {new['dtype']}"
        if widening is True:
            changes.append(Change("dtype_widened", name, detail, True, False))
        elif widening is False:
            changes.append(Change("dtype_narrowed", name, detail, False, True))
        else:
            changes.append(Change("dtype_changed", name, detail, False, False))
    if old["nullable"] != new["nullable"]:
        if new["nullable"]:
            changes.append(Change("nullability_loosened", name, "nulls allowed", True, False))
        else:
            changes.append(Change("nullability_tightened", name, "nulls refused", False, True))
    if old["required"] != new["required"]:
        if new["required"]:
            changes.append(Change("required_added", name, "column now required", False, True))
        else:
            changes.append(Change("required_removed", name, "column now optional", True, False))
    if old["unique"] != new["unique"]:
        if new["unique"]:
            changes.append(Change("unique_added", name, "values must be unique", False, True))
        else:
            changes.append(Change("unique_removed", name, "values may repeat", True, False))
    changes += _diff_checks(name, old.get("checks") or [], new.get("checks") or [])
    changes += _diff_pii(name, old.get("pii"), new.get("pii"))
    return changes


def diff_definitions(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Every change from contract definition ``old`` to ``new``, labelled."""
    changes: list[Change] = []
    before = {c["name"]: c for c in old.get("columns") or []}
    after = {c["name"]: c for c in new.get("columns") or []}
    renamed = {
        c["name"]: (c.get("metadata") or {}).get("renamed_from")
        for c in after.values()
        if (c.get("metadata") or {}).get("renamed_from") in before
        and (c.get("metadata") or {}).get("renamed_from") not in after
    }
    strict = new.get("strict")
    for name, column in after.items():
        if name in renamed:
            source = before[renamed[name]]
            changes.append(Change("column_renamed", name, f"from {renamed[name]}", False, False))
            changes += _diff_column(source, column)
        elif name not in before:
            optional = not column["required"]
            detail = "optional" if optional else "required"
            detail += ", nullable" if column["nullable"] else ""
            changes.append(Change("column_added", name, detail, optional, True))
        else:
            changes += _diff_column(before[name], column)
    for name in before:
        if name not in after and name not in renamed.values():
            kept = strict is not True  # an extra column under strict=True is a failure
            changes.append(Change("column_removed", name, "column dropped", kept, False))
    if old.get("strict") != new.get("strict"):
        tighter = new.get("strict") is True or (old.get("strict") is False and new.get("strict"))
        detail = f"strict {old.get('strict')!r} → {new.get('strict')!r}"
        changes.append(
            Change("strict_tightened", None, detail, False, True)
            if tighter
            else Change("strict_loosened", None, detail, True, False)
        )
    if old.get("unique") != new.get("unique"):
        detail = f"unique {old.get('unique')!r} → {new.get('unique')!r}"
        changes.append(Change("unique_changed", None, detail, new.get("unique") is None, None))
    changes += _diff_checks(
        None, old.get("dataframe_checks") or [], new.get("dataframe_checks") or []
    )
    changes += _diff_metadata(old.get("metadata") or {}, new.get("metadata") or {})
    return changes


def _diff_metadata(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    changes: list[Change] = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        detail = f"{key}: {old.get(key)!r} → {new.get(key)!r}"
        if key == "undeclared_pii":
            before = _UNDECLARED_STRENGTH.get(str(old.get(key, "redact")), 1)
            after = _UNDECLARED_STRENGTH.get(str(new.get(key, "redact")), 1)
            weaker = after < before
            changes.append(
                Change(
                    "pii_weakened" if weaker else "pii_changed", None, detail, True, True, weaker
                )
            )
        else:
            changes.append(Change("metadata_changed", None, detail, True, True))
    return changes


@dataclass(frozen=True)
class Verdict:
    """A diff judged under the new contract's compatibility mode and version rule."""

    changes: list[Change]
    mode: str
    old_version: str
    new_version: str
    major_bump: bool

    @property
    def breaking(self) -> list[Change]:
        """Changes incompatible under the mode (and every privacy weakening)."""
        return [c for c in self.changes if c.breaks(self.mode)]

    @property
    def refused(self) -> bool:
        """An incompatible change without a major version bump."""
        return bool(self.breaking) and not self.major_bump

    def as_dict(self) -> dict[str, Any]:
        """The verdict as JSON."""
        return {
            "mode": self.mode,
            "from": self.old_version,
            "to": self.new_version,
            "major_bump": self.major_bump,
            "compatible": not self.breaking,
            "refused": self.refused,
            "changes": [{**c.as_dict(), "breaking": c.breaks(self.mode)} for c in self.changes],
        }


def judge(old: dict[str, Any], new: dict[str, Any]) -> Verdict:
    """The changes from ``old`` to ``new`` under the new contract's declared mode."""
    old_version = str((old.get("metadata") or {}).get("version", "0.0.0"))
    new_version = str((new.get("metadata") or {}).get("version", "0.0.0"))
    return Verdict(
        changes=diff_definitions(old, new),
        mode=mode_of(new),
        old_version=old_version,
        new_version=new_version,
        major_bump=major_bump(old_version, new_version),
    )


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def _mark(value: bool | None) -> str:
    return "yes" if value is True else "no" if value is False else "unknown"


def markdown(verdict: Verdict, name: str) -> str:
    """The verdict as Markdown, for a pull-request comment."""
    state = (
        "compatible"
        if not verdict.breaking
        else "incompatible, allowed by a major version bump"
        if verdict.major_bump
        else "**incompatible**: bump the major version or revert"
    )
    lines = [
        f"### Contract {_cell(name)}: {verdict.old_version} → {verdict.new_version}",
        "",
        f"Mode `{verdict.mode}`: {state}.",
        "",
    ]
    if not verdict.changes:
        return "\n".join([*lines, "No changes.", ""])
    lines += [
        "| change | column | detail | backward | forward | breaking |",
        "|---|---|---|---|---|---|",
    ]
    for change in verdict.changes:
        flag = "**yes**" if change.breaks(verdict.mode) else "no"
        if change.privacy:
            flag += " (weaker PII handling)"
        lines.append(
            f"| {change.kind} | {_cell(change.column) or '—'} | {_cell(change.detail)} "
            f"| {_mark(change.backward)} | {_mark(change.forward)} | {flag} |"
        )
    return "\n".join([*lines, ""])
