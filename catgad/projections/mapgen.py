"""The one-pass mapping of an event type as one generated Python function.

`Mapper.direct` is what a catch-up runs per event, a million times in a
rebuild: through general code it pays for a dict of variables, a loop over
the operations, a tuple unpack, a try/except and a coercer call per field,
and a closure call per node of each expression. Here, once per event type
when the projection loads, the same work is written out as straight-line
Python and compiled: field paths, literals, arithmetic, `map`/`filter` and
the one-argument functions inline, other fast expressions (fastcel) called as
locals, column checks inline.

The generated code is only ever stricter than the general path: at anything
unusual (a missing field, a value of another type, a key that is not a
non-empty string, any exception at all) it gives up on the event and the
general path maps it, so results and errors (MappingError naming projection,
operation and column) are exactly the general path's.
tests/projections/test_mapgen.py compares the two on generated events.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from catgad.config.cel import CelExpr, _parser

# _Unsupported here means "not inlined: the expression's closure is called instead"
from catgad.config.fastcel import Fn, _args, _bound_name, _literal, _Unsupported
from catgad.config.fastcel_values import FUNCTIONS, INT64, Fallback, arith
from catgad.projections.model import ColumnType, OpKind

Appender = Callable[[Any, list[Any]], None]  # (event, out): appends the event's operations


@dataclass(frozen=True, slots=True)
class FieldPlan:
    column: str
    expr: CelExpr
    fast: Fn | None
    type: ColumnType | None  # None: not a column of the projection
    constant: Any  # the coerced literal, or `missing`


@dataclass(frozen=True, slots=True)
class OpPlan:
    kind: OpKind
    key: CelExpr
    key_fast: Fn | None
    when: CelExpr | None
    when_fast: Fn | None
    fields: list[FieldPlan]


def generate(
    ops: list[OpPlan],
    *,
    op_class: type,
    variables: Callable[[Any], dict[str, Any]],
    general: Callable[[Any], list[Any] | None],
    missing: Any,
    name: str = "direct",
) -> Appender | None:
    """The appender for an event type mapped by `ops`, or None when something in them has
    no fast form (the general path then does it all)."""
    gen = _Gen(missing)
    try:
        body = gen.function(ops)
    except _Unsupported:
        return None
    names = gen.names
    names.update(Op=op_class, _variables=variables, _general=general)
    lines = [
        "def direct(event, out):",
        "    try:",
        *("        " + line for line in body),
        "    except Exception:",
        "        pass",  # the general path decides, outside this handler (clean tracebacks)
        "    else:",
    ]
    for i, op in enumerate(ops):
        if op.when is None:
            lines.append(f"        out.append(o{i})")
        else:
            lines += [f"        if o{i} is not None:", f"            out.append(o{i})"]
    lines += ["        return", "    out.extend(_general(event))"]
    source = "\n".join(lines) + "\n"
    code = compile(source, f"<catgad.projections.mapgen {name}>", "exec")
    exec(code, names)  # the source is ours: parsed CEL, every name in it repr-quoted
    fn: Appender = names["direct"]
    fn.source = source  # type: ignore[attr-defined]  # for tests and debugging
    return fn


_WRAPPERS = frozenset(
    "expr conditionalor conditionaland relation addition multiplication unary member primary"
    " paren_expr".split()
)
_ARITH = {
    "addition_add": "+",
    "addition_sub": "-",
    "multiplication_mul": "*",
    "multiplication_div": "/",
    "multiplication_mod": "%",
}


class _Gen:
    def __init__(self, missing: Any) -> None:
        self.names: dict[str, Any] = {
            "_F": Fallback,
            "_arith": arith,
            "_isfinite": math.isfinite,
            "_LO": INT64[0],
            "_HI": INT64[1],
        }
        self.missing = missing
        self.count = 0
        self.uses_activation = False
        self.dicts = {"data"}  # locals already checked to be dicts in the block being written

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def constant(self, value: Any) -> str:
        name = self.fresh("c")
        self.names[name] = value
        return name

    def function(self, ops: list[OpPlan]) -> list[str]:
        lines: list[str] = []
        for i, op in enumerate(ops):
            lines += self.op(i, op)
        head = ["data = event.data", "if type(data) is not dict:", "    raise _F"]
        if self.uses_activation:  # some expression runs as its closure, on the variables
            head.append("a = _variables(event)")
        return head + lines

    def op(self, i: int, op: OpPlan) -> list[str]:
        lines: list[str] = []
        indent = ""
        if op.when is not None:
            verdict = self.value(op.when, op.when_fast, lines)
            lines += [f"if type({verdict}) is not bool:", "    raise _F", f"o{i} = None"]
            lines.append(f"if {verdict}:")
            indent = "    "
        block: list[str] = []
        key = self.value(op.key, op.key_fast, block)
        block += [
            f"if type({key}) is not str or not {key}:",
            f"    if type({key}) is not int:",  # check_key: an integer key is its digits
            "        raise _F",
            f"    {key} = str({key})",
        ]
        entries = []
        for field in op.fields:
            if field.type is None:
                raise _Unsupported  # the general path says "unknown column"
            if field.constant is not self.missing:
                entries.append(f"{field.column!r}: {self.constant(field.constant)}")
                continue
            value = self.value(field.expr, field.fast, block)
            block += _check(value, field.type)
            entries.append(f"{field.column!r}: {value}")
        block.append(f"o{i} = Op({op.kind!r}, {key}, {{{', '.join(entries)}}})")
        lines += [indent + line for line in block]
        return lines

    def value(self, expr: CelExpr, fast: Fn | None, lines: list[str]) -> str:
        """A local holding `expr`'s value, computed by lines appended to `lines`."""
        try:
            emitted: list[str] = []
            name = self.node(_parser().parse(expr.source), {"data": "data"}, emitted)
            if not name.startswith("v"):  # a constant or `data`: never assigned to below
                emitted.append(f"{self.fresh('v')} = {name}")
                name = f"v{self.count}"
        except _Unsupported:
            if fast is None:
                raise
            self.uses_activation = True
            name = self.fresh("v")
            lines.append(f"{name} = {self.constant(fast)}(a)")
            return name
        except Exception:  # a parse the Rust compiler accepted but lark did not
            raise _Unsupported from None
        lines += emitted
        return name

    def node(self, node: Any, env: dict[str, str], out: list[str]) -> str:
        while getattr(node, "data", None) in _WRAPPERS and len(node.children) == 1:
            node = node.children[0]
        kind = str(getattr(node, "data", ""))
        children = getattr(node, "children", [])
        if kind in ("addition", "multiplication") and len(children) == 2:
            return self.arith(children, env, out)
        if kind == "literal":
            try:
                return self.constant(_literal(children)({}))
            except Exception:
                raise _Unsupported from None
        if kind == "ident" and len(children) == 1:
            local = env.get(str(children[0]))
            if local is None:
                raise _Unsupported  # `event`, `row`, anything unbound: the closure
            return local
        if kind == "member_dot":
            target = self.node(children[0], env, out)
            name = self.fresh("v")
            if target not in self.dicts:
                out += [f"if type({target}) is not dict:", "    raise _F"]
                self.dicts.add(target)
            out.append(f"{name} = {target}[{str(children[1])!r}]")  # KeyError: missing
            return name
        if kind == "ident_arg":
            args = _args(children[1] if len(children) > 1 else None)
            return self.call(str(children[0]), [self.node(a, env, out) for a in args], out)
        if kind == "member_dot_arg":
            receiver = self.node(children[0], env, out)
            method = str(children[1])
            args = _args(children[2] if len(children) > 2 else None)
            if method in ("map", "filter") and len(args) == 2:
                return self.macro(receiver, method, args, env, out)
            if args:
                raise _Unsupported
            return self.call(method, [receiver], out)
        raise _Unsupported

    def arith(self, children: list[Any], env: dict[str, str], out: list[str]) -> str:
        op_node, right_node = children
        op = _ARITH.get(str(getattr(op_node, "data", "")))
        if op is None or len(op_node.children) != 1:
            raise _Unsupported
        x = self.node(op_node.children[0], env, out)
        y = self.node(right_node, env, out)
        name = self.fresh("v")
        if op in "+-*":  # ints, the common case, inline; the rest as arith decides
            out += [
                f"if type({x}) is int and type({y}) is int:",
                f"    {name} = {x} {op} {y}",
                f"    if not _LO <= {name} <= _HI:",
                "        raise _F",
                "else:",
                f"    {name} = _arith({op!r}, {x}, {y})",
            ]
        else:
            out.append(f"{name} = _arith({op!r}, {x}, {y})")
        return name

    def call(self, function: str, args: list[str], out: list[str]) -> str:
        fn = FUNCTIONS.get(function)
        if fn is None or len(args) != 1 or function == "has":
            raise _Unsupported
        name = self.fresh("v")
        out.append(f"{name} = {self.constant(fn)}({args[0]})")
        return name

    def macro(
        self, receiver: str, method: str, args: list[Any], env: dict[str, str], out: list[str]
    ) -> str:
        variable = _bound_name(args[0])
        item, result = self.fresh("i"), self.fresh("v")
        body: list[str] = []
        outside = set(self.dicts)  # what a loop body checks may not have run (no items)
        value = self.node(args[1], {**env, variable: item}, body)
        self.dicts = outside
        out += [
            f"if type({receiver}) is not list:",
            "    raise _F",
            f"{result} = []",
            f"for {item} in {receiver}:",
            *("    " + line for line in body),
        ]
        if method == "map":
            out.append(f"    {result}.append({value})")
        else:
            out += [
                f"    if type({value}) is not bool:",
                "        raise _F",
                f"    if {value}:",
                f"        {result}.append({item})",
            ]
        return result


def _check(value: str, kind: ColumnType) -> list[str]:
    """Lines passing `value` as the column holds it; anything unusual raises (general path)."""
    if kind == "json":
        return []
    if kind == "integer":  # floats holding integers: the general path converts them
        return [
            f"if type({value}) is int:",
            f"    if not _LO <= {value} <= _HI:",
            "        raise _F",
            f"elif {value} is not None:",
            "    raise _F",
        ]
    if kind == "number":
        return [
            f"if type({value}) is float:",
            f"    if not _isfinite({value}):",
            "        raise _F",
            f"elif type({value}) is int:",
            f"    {value} = float({value})",
            f"elif {value} is not None:",
            "    raise _F",
        ]
    python = {"string": "str", "boolean": "bool"}[kind]
    return [f"if type({value}) is not {python} and {value} is not None:", "    raise _F"]
