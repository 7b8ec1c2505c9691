"""Pure: what an event does to a read model, as upsert/update/delete operations on keyed rows.

    mapper = Mapper(projection)
    planned = mapper.prepare(event)            # which rows it touches (keys evaluated)
    ops = mapper.evaluate(event, planned, rows) # the operations, given those rows

`rows` is an overlay of the read model (key -> current row, None when absent)
that `evaluate` keeps up to date, so a later event of the same batch sees what
an earlier one did. A projection whose expressions never read `row` may pass
None: its operations do not depend on the current rows, and the target's own
semantics (an update of a missing row changes nothing) give the same result.

Everything a target would judge differently (SQLite takes any value in any
column, PostgreSQL does not) is judged here instead, so every target holds the
same rows for the same events: values are checked against their column types,
and keys must be non-empty strings or integers. An event that fails is a
MappingError, which the runner treats as poison.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from catgad.config.cel import CelEvalError, CelExpr
from catgad.config.fastcel import compile_fast, literal_of
from catgad.envelope import Envelope
from catgad.projections.mapgen import Appender, FieldPlan, OpPlan, generate
from catgad.projections.model import ColumnDef, ColumnType, OpDef, OpKind, ProjectionDef
from catgad.store.codec import StoredEvent

INT64 = (-(2**63), 2**63 - 1)
Rows = MutableMapping[str, dict[str, Any] | None]


@dataclass(slots=True)  # not frozen: built per event, and a frozen __init__ costs 3x
class Op:
    """A change to one row; `fields` holds only the columns the operation sets. Treated as
    immutable once built."""

    kind: OpKind
    key: str
    fields: dict[str, Any]


class MappingError(Exception):
    """An event this projection cannot apply (poison): an expression failed or gave a value
    its column cannot hold. Says which operation and why."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where
        self.why = why


def event_variables(event: Envelope) -> dict[str, Any]:
    """What `event.<x>` reads: the envelope's attributes that are set, and its position."""
    out: dict[str, Any] = {
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "time": event.time,
        "specversion": "1.0",
        "datacontenttype": event.datacontenttype,
    }
    for name in ("subject", "correlationid", "causationid", "streamversion", "dataschemaversion"):
        value = getattr(event, name)
        if value is not None:
            out[name] = value
    if event.position is not None:
        out["position"] = event.position
    return out


def check_key(value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"a key must be a non-empty string or an integer, got {value!r}")


def _int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if not INT64[0] <= value <= INT64[1]:
        raise ValueError(f"{value} does not fit in 64 bits")
    return value


def _number(value: Any) -> Any:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    return float(value)  # every target then holds the same value: 3 is 3.0


def _typed(kind: type, name: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"expected {name}, got {value!r}")
        return value

    return check


_COERCE: dict[ColumnType, Callable[[Any], Any]] = {
    "string": _typed(str, "a string"),
    "integer": _int,
    "number": _number,
    "boolean": _typed(bool, "true or false"),
    "json": lambda value: value,
}


def coerce(column: ColumnDef, value: Any) -> Any:
    """The value as its column holds it; null fits every column. ValueError when it does not."""
    return None if value is None else _COERCE[column.type](value)


@dataclass(frozen=True, slots=True)
class Planned:
    """An operation of an event, with the key of the row it acts on."""

    op: OpDef
    key: str
    checked: bool = False  # `when` (not reading `row`) already held


class Mapper:
    """A projection's mappings, ready to run; holds no state between calls."""

    def __init__(self, projection: ProjectionDef) -> None:
        self.projection = projection
        self.name = projection.name
        self.columns = projection.columns
        self.defaults = projection.defaults()
        self.reads_rows = projection.reads_rows
        self._reading = {  # operations with an expression reading `row`
            id(op)
            for ops in projection.on.values()
            for op in ops
            if any(
                "row" in e.roots for e in (*op.fields.values(), *((op.when,) if op.when else ()))
            )
        }
        self._on = projection.on
        self._fast = {
            id(expr): compile_fast(expr)
            for ops in projection.on.values()
            for op in ops
            for expr in _exprs(op, projection.key)
        }
        self._needs_event = {
            event: any("event" in e.roots for op in ops for e in _exprs(op, projection.key))
            for event, ops in projection.on.items()
        }

        self._direct = {
            event: [self._spec(op) for op in ops]
            for event, ops in projection.on.items()
            if not any(id(op) in self._reading for op in ops)
        }
        self.appenders: dict[str, Appender] = {
            event: self._appender(event, specs) for event, specs in self._direct.items()
        }
        """Per event type mapped in one pass: fn(event, out) appends its operations to `out`,
        or raises MappingError (appending nothing)."""

    def _spec(self, op: OpDef) -> _Spec:
        key = op.key or self.projection.key
        if key is None:  # config lint forbids it
            raise MappingError(self._where(op, "key"), "no key expression")
        fields = []
        for column, expr in op.fields.items():
            coerce_value = _coercer(self.columns.get(column))
            constant: Any = _MISSING
            is_literal, value = literal_of(expr)
            if is_literal:
                try:  # a literal is coerced once here; one that does not fit fails per event
                    constant = coerce_value(value)
                except ValueError:
                    constant = _MISSING
            fields.append((column, self._fast.get(id(expr)), expr, coerce_value, constant))
        return _Spec(op, key, self._fast.get(id(key)), fields)

    def _appender(self, event_type: str, specs: list[_Spec]) -> Appender:
        def general(event: Envelope | StoredEvent) -> list[Op]:
            return self._direct_general(event) or []

        def appender(event: Envelope | StoredEvent, out: list[Op]) -> None:
            out.extend(general(event))

        plans = [
            OpPlan(
                spec.op.kind,
                spec.key,
                spec.key_fast,
                spec.op.when,
                self._fast.get(id(spec.op.when)),
                [
                    FieldPlan(c, expr, fast, getattr(self.columns.get(c), "type", None), constant)
                    for c, fast, expr, _, constant in spec.fields
                ],
            )
            for spec in specs
        ]
        generated = generate(
            plans,
            op_class=Op,
            variables=self._variables,
            general=general,
            missing=_MISSING,
            name=f"{self.name}.{event_type}",
        )
        return appender if generated is None else generated

    def handles(self, event_type: str) -> bool:
        return event_type in self._on

    def direct(self, event: Envelope | StoredEvent) -> list[Op] | None:
        """The event's operations in one pass, when none of them reads `row` (what a batch
        mapped ahead needs); None otherwise: then prepare + evaluate with the rows."""
        appender = self.appenders.get(event.type)
        if appender is None:
            return [] if event.type not in self._on else None
        out: list[Op] = []
        appender(event, out)
        return out

    def _direct_general(self, event: Envelope | StoredEvent) -> list[Op] | None:
        """`direct` through the general code: what the generated appenders give up to."""
        specs = self._direct.get(event.type)
        if specs is None:
            return [] if event.type not in self._on else None
        variables: dict[str, Any] = {"data": event.data}
        if self._needs_event.get(event.type, True):
            whole = event if isinstance(event, Envelope) else event.envelope()
            variables["event"] = event_variables(whole)
        out: list[Op] = []
        for spec in specs:
            op = spec.op
            if op.when is not None and not self._holds(op, variables):
                continue
            fast = spec.key_fast
            key: Any = _MISSING
            if fast is not None:
                try:
                    key = fast(variables)
                except Exception:
                    key = _MISSING
            if type(key) is not str or not key:
                key = self._key(spec.key, variables, op)
            fields: dict[str, Any] = {}
            for column, fast_value, expr, coerce_value, constant in spec.fields:
                if constant is not _MISSING:
                    fields[column] = constant
                    continue
                value: Any = _MISSING
                if fast_value is not None:
                    try:
                        value = fast_value(variables)
                    except Exception:
                        value = _MISSING
                if value is _MISSING:
                    value = self._eval(expr, variables, op, column)
                try:
                    fields[column] = coerce_value(value)
                except ValueError as exc:
                    raise MappingError(self._where(op, column), str(exc)) from None
            out.append(Op(op.kind, key, fields))
        return out

    def prepare(self, event: Envelope) -> list[Planned]:
        """The operations the event causes, each with its row's key. MappingError if a key
        cannot be computed."""
        ops = self._on.get(event.type)
        if not ops:
            return []
        planned = []
        variables = self._variables(event)
        for op in ops:
            key_expr = op.key or self.projection.key
            if key_expr is None:  # config lint forbids it
                raise MappingError(self._where(op, "key"), "no key expression")
            checked = op.when is not None and "row" not in op.when.roots
            if checked and not self._holds(op, variables):
                continue  # its key may well not exist: `when: has(data.group)`
            planned.append(Planned(op, self._key(key_expr, variables, op), checked))
        return planned

    def row_keys(self, planned: Iterable[Planned]) -> set[str]:
        """The keys whose rows must be in the overlay: those of operations reading `row`."""
        return {item.key for item in planned if id(item.op) in self._reading}

    def evaluate(self, event: Envelope, planned: list[Planned], rows: Rows | None) -> list[Op]:
        """The row operations, in order. A key in `rows` (the overlay) is known: `row` reads
        it, an update of a missing row is dropped, and the overlay follows each operation.
        Other keys are left to the target's semantics; `row` is then the column defaults."""
        out: list[Op] = []
        variables = self._variables(event)
        for item in planned:
            op = item.op
            known = rows is not None and item.key in rows
            current = rows.get(item.key) if rows is not None else None
            if known and op.kind == "update" and current is None:
                continue  # updating a row that does not exist changes nothing
            if id(op) in self._reading:
                variables["row"] = {"key": item.key, **(current or self.defaults)}
            if op.when is not None and not item.checked and not self._holds(op, variables):
                continue
            fields: dict[str, Any] = {}
            for column, expr in op.fields.items():
                value = self._eval(expr, variables, op, column)
                try:
                    fields[column] = coerce(self.columns[column], value)
                except (KeyError, ValueError) as exc:
                    why = f"unknown column {column!r}" if isinstance(exc, KeyError) else str(exc)
                    raise MappingError(self._where(op, column), why) from None
            out.append(Op(op.kind, item.key, fields))
            if known and rows is not None:
                rows[item.key] = (
                    None if op.kind == "delete" else {**(current or self.defaults), **fields}
                )
        return out

    def ops(self, event: Envelope, rows: Rows | None = None) -> list[Op]:
        """prepare + evaluate in one call."""
        return self.evaluate(event, self.prepare(event), rows)

    def _variables(self, event: Envelope | StoredEvent) -> dict[str, Any]:
        variables: dict[str, Any] = {"data": event.data}
        if self._needs_event.get(event.type, True):
            whole = event if isinstance(event, Envelope) else event.envelope()
            variables["event"] = event_variables(whole)
        return variables

    def _holds(self, op: OpDef, variables: dict[str, Any]) -> bool:
        assert op.when is not None
        verdict = self._eval(op.when, variables, op, "when")
        if not isinstance(verdict, bool):
            raise MappingError(self._where(op, "when"), f"expected true or false, got {verdict!r}")
        return verdict

    def _key(self, expr: CelExpr, variables: dict[str, Any], op: OpDef) -> str:
        value = self._eval(expr, variables, op, "key")
        if type(value) is str and value:
            return value
        try:
            return check_key(value)
        except ValueError as exc:
            raise MappingError(self._where(op, "key"), str(exc)) from None

    def _eval(self, expr: CelExpr, variables: dict[str, Any], op: OpDef, part: str) -> Any:
        fast = self._fast.get(id(expr))
        if fast is not None:
            try:
                return fast(variables)
            except Exception:  # Fallback, or anything unforeseen: CEL decides (fastcel)
                pass
        try:
            return expr.evaluate(variables)
        except CelEvalError as exc:
            raise MappingError(self._where(op, part), str(exc)) from None
        except Exception as exc:  # the runtime let its own error through (an index past the end)
            raise MappingError(self._where(op, part), f"{expr.source}: {exc}") from None

    def _where(self, op: OpDef, part: str) -> str:
        return f"projections.{self.name}.on.{op.event}[{op.index}].{part}"


_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class _Spec:
    """An operation ready to run: its key and field expressions with their fast forms."""

    op: OpDef
    key: CelExpr
    key_fast: Callable[[dict[str, Any]], Any] | None
    # column, fast form, CEL, coercion, and the coerced value of a literal (else _MISSING)
    fields: list[
        tuple[str, Callable[[dict[str, Any]], Any] | None, CelExpr, Callable[[Any], Any], Any]
    ]


def _coercer(column: ColumnDef | None) -> Callable[[Any], Any]:
    if column is None:

        def unknown(value: Any) -> Any:
            raise ValueError("unknown column")

        return unknown
    check = _COERCE[column.type]
    return lambda value: None if value is None else check(value)


def _exprs(op: OpDef, key: CelExpr | None) -> list[CelExpr]:
    found = [*op.fields.values()]
    for expr in (op.key or key, op.when):
        if expr is not None:
            found.append(expr)
    return found
