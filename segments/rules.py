"""Declarative segment rules over customer features (`segments.customer_features`), from TOML.

A segment file (`config/segments.toml`) names segments; each has a title, a description and a rule:

    [segments.vip]
    title = "VIP"
    description = "Spent 50,000 RUB or more"
    rule = { field = "total_spend", gte = 50000 }

    [segments.young_women.rule]
    all = [ { field = "gender", eq = "f" }, { field = "age", between = [18, 25] } ]

A rule is one of
- a condition `{ field = "<feature>", <op> = <value> }` with exactly one operator:
  `eq`, `ne`, `in`, `not_in` (a list), `gt`, `gte`, `lt`, `lte`, `between` ([low, high], both
  included), `is_null` (true: the value is missing; false: it is present); on set fields (`brands`,
  `categories`) `contains_any` / `contains_all` (a list) and `is_null` (true: bought none);
- `{ all = [rule, ...] }` (and), `{ any = [rule, ...] }` (or), `{ not = rule }`;
- `{ segment = "<name>" }`: the members of another named segment (cycles are an error).

Which operators a field takes depends on its kind: numbers all but contains_*; text eq / ne / in /
not_in / is_null, compared ignoring case and surrounding spaces; booleans eq / ne / is_null; dates
(`first_order_at`, `last_order_at`) gt / gte / lt / lte / between / is_null against dates
("2026-01-01" or a TOML date), compared by shop-local calendar day. A missing value (unknown gender, no
birth date, no orders) fails every condition except `ne` and `not_in`, the negations of `eq` and `in`
(a missing value is different from everything), and `is_null = true`.

Every file is checked when loaded: unknown fields or operators, values of the wrong type, unknown
segment references and reference cycles raise `SegmentError` naming the segment and the path inside
its rule (`segment 'vip': rule.all[1]: unknown field 'total_spent'; known: ...`).
Evaluation is vectorised: a rule gives a boolean numpy mask over `CustomerFeatures.table`.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segments.customer_features import FIELDS, CustomerFeatures, missing_datasets

SEGMENTS_FILE = Path(__file__).resolve().parent.parent / "config" / "segments.toml"
ALL = "all"  # reserved name: no segment, the campaign's whole audience
NAME = re.compile(r"^[a-z][a-z0-9_]{1,40}$")

OPERATORS = (
    "eq",
    "ne",
    "in",
    "not_in",
    "gt",
    "gte",
    "lt",
    "lte",
    "between",
    "is_null",
    "contains_any",
    "contains_all",
)
COMBINATORS = ("all", "any", "not", "segment")
OPS_BY_KIND = {
    "number": ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between", "is_null"),
    "text": ("eq", "ne", "in", "not_in", "is_null"),
    "bool": ("eq", "ne", "is_null"),
    "datetime": ("gt", "gte", "lt", "lte", "between", "is_null"),
    "set": ("contains_any", "contains_all", "is_null"),
}
SYMBOLS = {
    "eq": "=",
    "ne": "≠",
    "in": "in",
    "not_in": "not in",
    "gt": ">",
    "gte": "≥",
    "lt": "<",
    "lte": "≤",
    "between": "between",
    "contains_any": "contains any of",
    "contains_all": "contains all of",
}


class SegmentError(ValueError):
    """A segment file, rule or name is invalid, or a campaign cannot use a segment."""


@dataclass(frozen=True)
class Segment:
    name: str
    title: str
    description: str
    rule: dict[str, Any]


# --- checking -------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _as_day(value: Any) -> date | None:
    """A date rule value (TOML date or 'YYYY-MM-DD'), or None if it is not one."""
    if isinstance(value, datetime):
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _check_scalar(kind: str, field: str, value: Any, allowed: tuple[str, ...]) -> str | None:
    """An error message if `value` cannot be compared with a field of `kind`."""
    if kind == "number" and not _is_number(value):
        return f"'{field}' is a number; got {value!r}"
    if kind == "text":
        if not isinstance(value, str):
            return f"'{field}' is text; got {value!r}"
        if allowed and value.strip().casefold() not in allowed:
            return f"'{field}' is one of {list(allowed)}; got {value!r}"
    if kind == "bool" and not isinstance(value, bool):
        return f"'{field}' is true or false; got {value!r}"
    if kind == "datetime" and _as_day(value) is None:
        return f"'{field}' is compared with a date (2026-01-31); got {value!r}"
    return None


def _check_leaf(node: dict[str, Any], path: str) -> str | None:
    field = node["field"]
    if not isinstance(field, str) or field not in FIELDS:
        return f"{path}: unknown field {field!r}; known: {', '.join(FIELDS)}"
    ops = [k for k in node if k != "field"]
    unknown = [k for k in ops if k not in OPERATORS]
    if unknown:
        return f"{path}: unknown operator {unknown[0]!r} for '{field}'; known: {', '.join(OPERATORS)}"
    if len(ops) != 1:
        return f"{path}: a condition on '{field}' needs exactly one operator, got {ops or 'none'}"
    op, value = ops[0], node[ops[0]]
    spec = FIELDS[field]
    if op not in OPS_BY_KIND[spec.kind]:
        usable = ", ".join(OPS_BY_KIND[spec.kind])
        return f"{path}: operator '{op}' does not apply to '{field}' ({spec.kind}); use one of {usable}"
    if op == "is_null":
        return None if isinstance(value, bool) else f"{path}: is_null takes true or false, got {value!r}"
    kind = "text" if spec.kind == "set" else spec.kind
    allowed = tuple(v.casefold() for v in spec.values)
    if op in ("in", "not_in", "contains_any", "contains_all", "between"):
        if not isinstance(value, list) or not value:
            return f"{path}: '{op}' takes a non-empty list, got {value!r}"
        if op == "between" and len(value) != 2:
            return f"{path}: 'between' takes [low, high], got {value!r}"
        for item in value:
            problem = _check_scalar(kind, field, item, allowed)
            if problem:
                return f"{path}: {problem}"
        if op == "between":
            low, high = (_as_day(v) for v in value) if kind == "datetime" else value
            if low > high:
                return f"{path}: 'between' needs low <= high, got {value!r}"
        return None
    problem = _check_scalar(kind, field, value, allowed)
    return f"{path}: {problem}" if problem else None


def _check(node: Any, path: str, known: set[str]) -> str | None:
    """The first problem of a rule tree, as 'path: message', or None."""
    if not isinstance(node, dict) or not node:
        return f'{path}: a rule is a table like {{ field = "age", gte = 18 }}, got {node!r}'
    if "field" in node:
        return _check_leaf(node, path)
    keys = list(node)
    if len(keys) != 1 or keys[0] not in COMBINATORS:
        return (
            f"{path}: expected a condition ({{ field = ..., <operator> = ... }}) or one of "
            f"{', '.join(COMBINATORS)}; got keys {keys}"
        )
    key = keys[0]
    value = node[key]
    if key in ("all", "any"):
        if not isinstance(value, list) or not value:
            return f"{path}.{key}: takes a non-empty list of rules"
        for i, child in enumerate(value):
            problem = _check(child, f"{path}.{key}[{i}]", known)
            if problem:
                return problem
        return None
    if key == "not":
        return _check(value, f"{path}.not", known)
    if not isinstance(value, str) or value not in known:
        return f"{path}.segment: unknown segment {value!r}; known: {', '.join(sorted(known))}"
    return None


def check_rule(rule: Any, segment: str = "<rule>", known: set[str] | None = None) -> None:
    """Raise `SegmentError` naming `segment` and the path of the first problem in `rule`."""
    problem = _check(rule, "rule", known or set())
    if problem:
        raise SegmentError(f"segment '{segment}': {problem}")


def _walk(node: dict[str, Any], path: str = "rule") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every node of a (checked) rule with its path, depth first."""
    yield path, node
    if "field" in node:
        return
    key, value = next(iter(node.items()))
    if key in ("all", "any"):
        for i, child in enumerate(value):
            yield from _walk(child, f"{path}.{key}[{i}]")
    elif key == "not":
        yield from _walk(value, f"{path}.not")


# --- the catalogue --------------------------------------------------------------------------------


class SegmentCatalogue:
    """Named segments, all checked (fields, operators, values, references, no cycles)."""

    def __init__(
        self,
        segments: dict[str, Segment],
        source: str = "segments",
        broken: dict[str, str] | None = None,
        strict: bool = True,
    ) -> None:
        """`strict`: raise on the first bad segment; else keep the good ones and list the bad ones (and
        those referring to them) in `broken` (name -> reason): a bad segment disables only itself."""
        self.source = source
        self.segments = dict(segments)
        self.broken: dict[str, str] = dict(broken or {})
        problems = self._problems(known=set(self.segments) | set(self.broken))
        if strict and (problems or self.broken):
            raise SegmentError(next(iter({**self.broken, **problems}.values())))
        self.broken.update(problems)
        for name in self.broken:
            self.segments.pop(name, None)

    def _problems(self, known: set[str]) -> dict[str, str]:
        """Each bad segment's first problem: name, rule, reference cycle, reference to a bad segment."""
        problems: dict[str, str] = {}
        for name, segment in self.segments.items():
            try:
                if not NAME.match(name) or name == ALL:
                    raise SegmentError(
                        f"{self.source}: segment name {name!r} must be lowercase letters, digits and _ "
                        f"(2-41 characters), and not '{ALL}'"
                    )
                check_rule(segment.rule, name, known)
            except SegmentError as exc:
                problems[name] = str(exc)
        bad = set(problems) | set(self.broken)
        for name in self.segments:
            if name not in bad:
                try:
                    self._no_cycle(name, [name], bad)
                except SegmentError as exc:
                    problems[name] = str(exc)
        changed = True
        while changed:  # a segment built on a bad one is bad too
            changed = False
            for name in self.segments:
                bad = set(problems) | set(self.broken)
                if name in bad:
                    continue
                refs = [(path, ref) for path, ref in self._refs(name) if ref in bad]
                if refs:
                    path, ref = refs[0]
                    problems[name] = f"segment '{name}': {path}: refers to segment '{ref}', which is broken"
                    changed = True
        return problems

    def _refs(self, name: str) -> list[tuple[str, str]]:
        return [(f"{p}.segment", n["segment"]) for p, n in _walk(self.segments[name].rule) if "segment" in n]

    def _no_cycle(self, name: str, stack: list[str], bad: set[str] = frozenset()) -> None:
        for path, ref in self._refs(name):
            if ref in stack:
                chain = " -> ".join([*stack[stack.index(ref) :], ref])
                raise SegmentError(f"segment '{name}': {path}: segment reference cycle {chain}")
            if ref not in bad:
                self._no_cycle(ref, [*stack, ref], bad)

    def names(self) -> list[str]:
        return list(self.segments)

    def __contains__(self, name: object) -> bool:
        return name in self.segments

    def get(self, name: str) -> Segment:
        if name in self.broken:
            raise SegmentError(
                f"segment '{name}' is disabled, {self.source} has a problem with it: {self.broken[name]}"
            )
        if name not in self.segments:
            raise SegmentError(f"unknown segment '{name}'; known: {', '.join(self.segments) or 'none'}")
        return self.segments[name]

    def references(self, name: str) -> list[str]:
        """`name` and every segment it refers to, directly or not (each once, in order met)."""
        seen = [self.get(name).name]
        for current in seen:
            for _, ref in self._refs(current):
                if ref not in seen:
                    seen.append(ref)
        return seen

    def conditions(self, name: str) -> list[dict[str, Any]]:
        """The conditions (leaves) of the segment and of those it refers to."""
        return [n for s in self.references(name) for _, n in _walk(self.segments[s].rule) if "field" in n]

    def fields(self, name: str) -> list[str]:
        """Features the segment's rule reads (through references too), in first-use order."""
        return list(dict.fromkeys(n["field"] for n in self.conditions(name)))

    def datasets(self, name: str) -> list[str]:
        """Datasets the segment's features are computed from."""
        return missing_datasets(set(self.fields(name)), set())

    def definitions(self, name: str) -> dict[str, dict[str, Any]]:
        """Title, description and rule of the segment and of those it refers to (JSON-ready)."""
        return {
            s: {
                "title": self.segments[s].title,
                "description": self.segments[s].description,
                "rule": _jsonable(self.segments[s].rule),
            }
            for s in self.references(name)
        }

    def mask(self, name: str, features: CustomerFeatures) -> np.ndarray:
        """Boolean mask of the segment's members over `features.table`."""
        return evaluate({"segment": self.get(name).name}, features, self)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


def parse_segments(data: dict[str, Any], source: str = "segments", strict: bool = True) -> SegmentCatalogue:
    """A catalogue from the parsed TOML (`[segments.<name>]` tables with title, description, rule);
    `strict=False` keeps the good segments when some are bad (see `SegmentCatalogue`)."""
    extra = set(data) - {"segments"}
    if extra:
        raise SegmentError(f"{source}: unexpected top-level keys {sorted(extra)}; use [segments.<name>]")
    tables = data.get("segments", {})
    if not isinstance(tables, dict):
        raise SegmentError(f"{source}: 'segments' must be a table of [segments.<name>] tables")
    segments: dict[str, Segment] = {}
    broken: dict[str, str] = {}
    for name, table in tables.items():
        problem = _table_problem(name, table)
        if problem and strict:
            raise SegmentError(problem)
        if problem:
            broken[name] = problem
            continue
        segments[name] = Segment(
            name, str(table.get("title", name)), str(table.get("description", "")), table["rule"]
        )
    return SegmentCatalogue(segments, source, broken, strict)


def _table_problem(name: str, table: Any) -> str | None:
    if not isinstance(table, dict):
        return f"segment '{name}': expected a table with title, description, rule"
    unknown = set(table) - {"title", "description", "rule"}
    if unknown:
        return f"segment '{name}': unknown keys {sorted(unknown)}; use title, description, rule"
    if "rule" not in table:
        return f"segment '{name}': missing 'rule'"
    return None


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, strict: bool = True) -> SegmentCatalogue:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SegmentError(f"{Path(path).name}: {exc}") from exc
    return parse_segments(data, Path(path).name, strict)


def load_segments(path: Path | str | None = None, strict: bool = True) -> SegmentCatalogue:
    """The checked segment catalogue of a TOML file (default `SEGMENTS_FILE`; re-read when the file
    changes). `strict=False` (runs, listings): bad segments are disabled one by one (`.broken`), the
    others usable; a file that does not parse still raises."""
    file = Path(path or SEGMENTS_FILE)
    if not file.is_file():
        raise SegmentError(f"segment file not found: {file}")
    return _load(str(file.resolve()), file.stat().st_mtime_ns, strict)


def segment_names(path: Path | str | None = None) -> list[str]:
    """Names of the usable segments of the segment file (e.g. for a flow parameter's dropdown); none
    when the file cannot be read (runs that need a segment then stop with the reason)."""
    try:
        return load_segments(path, strict=False).names()
    except SegmentError:
        return []


# --- evaluation -----------------------------------------------------------------------------------


def _text_codes(categories: pd.Index, values: list[str]) -> np.ndarray:
    """Positions of the categories equal to any of `values`, ignoring case and outer spaces."""
    wanted = {str(v).strip().casefold() for v in values}
    normal = [str(c).strip().casefold() for c in categories]
    return np.array([i for i, c in enumerate(normal) if c in wanted], dtype=np.int64)


def set_members(features: CustomerFeatures, field: str, values: list[str]) -> np.ndarray:
    """Mask of customers whose set field `field` holds any of `values` (case-insensitive)."""
    long = features.sets[field]
    mask = np.zeros(len(features), dtype=bool)
    codes = _text_codes(long["value"].cat.categories, values)
    if codes.size:
        hit = np.isin(long["value"].cat.codes.to_numpy(), codes)
        mask[long["pos"].to_numpy()[hit]] = True
    return mask


def _local_day(column: pd.Series, features: CustomerFeatures) -> np.ndarray:
    stamps = pd.to_datetime(column)
    local = stamps.dt.tz_localize("UTC").dt.tz_convert(features.tz).dt.tz_localize(None)
    return local.dt.normalize().to_numpy(dtype="datetime64[D]")


def _compare(op: str, values: np.ndarray, target: Any) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        if op == "gt":
            return values > target
        if op == "gte":
            return values >= target
        if op == "lt":
            return values < target
        if op == "lte":
            return values <= target
        if op == "between":
            return (values >= target[0]) & (values <= target[1])
        if op == "in":
            return np.isin(values, target)
        return values == target  # eq


def evaluate_condition(node: dict[str, Any], features: CustomerFeatures) -> np.ndarray:
    """Mask of one (checked) condition."""
    field = node["field"]
    op, value = next((k, v) for k, v in node.items() if k != "field")
    if field not in features.fields:
        raise SegmentError(
            f"feature '{field}' was not computed: it needs datasets {list(FIELDS[field].datasets)}"
        )
    kind = FIELDS[field].kind
    if kind == "set":
        if op == "is_null":
            bought = np.zeros(len(features), dtype=bool)
            bought[features.sets[field]["pos"].to_numpy()] = True
            return ~bought if value else bought
        if op == "contains_any":
            return set_members(features, field, value)
        mask = np.ones(len(features), dtype=bool)
        for item in value:
            mask &= set_members(features, field, [item])
        return mask
    column = features.table[field]
    if op == "is_null":
        missing = column.isna().to_numpy(dtype=bool)
        return missing if value else ~missing
    negate = op in ("ne", "not_in")
    base = {"ne": "eq", "not_in": "in"}.get(op, op)
    if kind == "text":
        categorical = column if isinstance(column.dtype, pd.CategoricalDtype) else column.astype("category")
        targets = value if isinstance(value, list) else [value]
        hit = np.isin(categorical.cat.codes.to_numpy(), _text_codes(categorical.cat.categories, targets))
    elif kind == "bool":
        hit = column.to_numpy(dtype=bool, na_value=False) == value
        hit &= column.notna().to_numpy(dtype=bool)
    elif kind == "datetime":
        days = _local_day(column, features)
        target = (
            [np.datetime64(_as_day(v), "D") for v in value]
            if isinstance(value, list)
            else np.datetime64(_as_day(value), "D")
        )
        hit = _compare(base, days, target) & ~np.isnat(days)
    else:
        numbers = column.to_numpy(dtype="float64", na_value=np.nan)
        hit = _compare(base, numbers, value) & ~np.isnan(numbers)
    return ~hit if negate else hit


def evaluate(
    rule: dict[str, Any],
    features: CustomerFeatures,
    catalogue: SegmentCatalogue | None = None,
    _memo: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Boolean mask of the customers of `features` matching a checked rule (segment references
    resolved in `catalogue`, each evaluated once)."""
    memo = {} if _memo is None else _memo
    if "field" in rule:
        return evaluate_condition(rule, features)
    key, value = next(iter(rule.items()))
    if key == "all":
        mask = np.ones(len(features), dtype=bool)
        for child in value:
            mask &= evaluate(child, features, catalogue, memo)
        return mask
    if key == "any":
        mask = np.zeros(len(features), dtype=bool)
        for child in value:
            mask |= evaluate(child, features, catalogue, memo)
        return mask
    if key == "not":
        return ~evaluate(value, features, catalogue, memo)
    if catalogue is None:
        raise SegmentError(f"rule refers to segment '{value}' but no segment catalogue was given")
    if value not in memo:
        memo[value] = evaluate(catalogue.get(value).rule, features, catalogue, memo)
    return memo[value]


# --- describing -----------------------------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return f"{value:,}" if isinstance(value, int) else str(value)


def describe_condition(node: dict[str, Any]) -> str:
    """A condition as text, e.g. `total_spend ≥ 50,000`."""
    field = node["field"]
    op, value = next((k, v) for k, v in node.items() if k != "field")
    if op == "is_null":
        return f"{field} is {'missing' if value else 'present'}"
    if FIELDS[field].kind == "datetime":  # dates read back from JSON are strings: show them as dates
        value = [_as_day(v) for v in value] if isinstance(value, list) else _as_day(value)
    if op == "between":
        return f"{field} between {_show(value[0])} and {_show(value[1])}"
    return f"{field} {SYMBOLS[op]} {_show(value)}"


def describe(rule: dict[str, Any], indent: int = 0) -> list[str]:
    """A rule as indented lines of text."""
    pad = "  " * indent
    if "field" in rule:
        return [pad + describe_condition(rule)]
    key, value = next(iter(rule.items()))
    if key in ("all", "any"):
        head = "all of:" if key == "all" else "any of:"
        return [pad + head] + [line for child in value for line in describe(child, indent + 1)]
    if key == "not":
        return [pad + "not:"] + describe(value, indent + 1)
    return [pad + f"segment {value}"]


def trace(
    rule: dict[str, Any],
    features: CustomerFeatures,
    catalogue: SegmentCatalogue | None = None,
    row: int = 0,
    indent: int = 0,
) -> list[str]:
    """Each node of `rule` for one customer (row `row` of `features`): ✓ / ✗, the condition and the
    customer's value (references expanded)."""
    pad = "  " * indent
    passed = bool(evaluate(rule, features, catalogue)[row])
    mark = "✓" if passed else "✗"
    if "field" in rule:
        field = rule["field"]
        return [f"{pad}{mark} {describe_condition(rule)}   ({field}: {feature_value(features, field, row)})"]
    key, value = next(iter(rule.items()))
    if key in ("all", "any"):
        head = f"{pad}{mark} {'all of' if key == 'all' else 'any of'}:"
        return [head] + [
            line for child in value for line in trace(child, features, catalogue, row, indent + 1)
        ]
    if key == "not":
        return [f"{pad}{mark} not:"] + trace(value, features, catalogue, row, indent + 1)
    if catalogue is None or value not in catalogue:
        return [f"{pad}{mark} segment {value}"]
    return [f"{pad}{mark} segment {value}:"] + trace(
        catalogue.get(value).rule, features, catalogue, row, indent + 1
    )


def feature_value(features: CustomerFeatures, field: str, row: int) -> str:
    """One customer's value of a feature, as text ('—' when missing)."""
    if FIELDS[field].kind == "set":
        long = features.sets.get(field)
        values = sorted(map(str, long.loc[long["pos"] == row, "value"])) if long is not None else []
        return ", ".join(values) if values else "—"
    value = features.table[field].iloc[row]
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "—"
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):,}"
    if isinstance(value, pd.Timestamp):
        return f"{value:%Y-%m-%d %H:%M} UTC"
    return str(value)
