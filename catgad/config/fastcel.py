"""CEL, fast: the common subset compiled to Python closures, CEL itself for everything else.

A projection evaluates a few expressions per event, millions of times in a
rebuild; the Rust CEL runtime costs ~15 µs a call, most of it converting the
activation. Expressions built from field paths, literals, arithmetic,
comparisons, `&&` `||` `!` `?:`, `has()`, `size()`, `int()`, `double()`,
`string()`, `sum()` and the `map`/`filter` macros are compiled here into
closures. A closure gives a result only when it is sure to be CEL's: at
anything CEL would treat differently or reject (mixed int and double, int64
overflow, division by zero, a missing field, a double turned to a string) it
raises Fallback, and the caller runs the real CEL program, which answers or
raises its own error. So the results are CEL's, only faster; a property test
(tests/projections/test_fastcel.py) compares the two on generated inputs.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from catgad.config.cel import CelExpr, _parser
from catgad.config.fastcel_values import FUNCTIONS, INT64, Fallback, arith, checked

__all__ = ["Fallback", "Fn", "compile_fast", "evaluate", "literal_of"]

Fn = Callable[[dict[str, Any]], Any]


class _Unsupported(Exception):
    """The expression uses something this compiler does not handle."""


def compile_fast(expr: CelExpr) -> Fn | None:
    """A closure computing `expr` as CEL would (raising Fallback when unsure), or None."""
    try:
        tree = _parser().parse(expr.source)
        return _node(tree)
    except _Unsupported:
        return None
    except Exception:  # a parse the Rust compiler accepted but lark did not: leave it to CEL
        return None


_NO_VALUE: Any = object()
_WRAPPERS = frozenset(
    "expr conditionalor conditionaland relation addition multiplication unary member primary"
    " paren_expr".split()
)


def literal_of(expr: CelExpr) -> tuple[bool, Any]:
    """(True, value) when `expr` is a literal alone (`'paid'`, `0`), whose value is the same
    for every event; (False, None) otherwise."""
    try:
        node = _parser().parse(expr.source)
        while getattr(node, "data", None) in _WRAPPERS and len(node.children) == 1:
            node = node.children[0]
        if getattr(node, "data", None) != "literal":
            return False, None
        return True, _literal(node.children)({})
    except Exception:  # _Unsupported, or anything lark does not parse: not a known literal
        return False, None


def evaluate(expr: CelExpr, fast: Fn | None, activation: dict[str, Any]) -> Any:
    """`expr` on `activation`: by the closure when it is sure, else by CEL."""
    if fast is not None:
        try:
            return fast(activation)
        except Exception:  # Fallback, or a case this module did not foresee: CEL decides
            pass
    return expr.evaluate(activation)


def _node(node: Any) -> Fn:
    kind = getattr(node, "data", None)
    if kind is None:
        raise _Unsupported
    handler = _HANDLERS.get(str(kind))
    if handler is None:
        raise _Unsupported
    return handler(node.children)


def _single(children: list[Any]) -> Fn:
    if len(children) != 1:
        raise _Unsupported
    return _node(children[0])


def _expr(children: list[Any]) -> Fn:
    if len(children) == 1:
        return _node(children[0])
    if len(children) != 3:
        raise _Unsupported
    test, yes, no = (_node(c) for c in children)

    def ternary(a: dict[str, Any]) -> Any:
        verdict = test(a)
        if type(verdict) is not bool:
            raise Fallback
        return yes(a) if verdict else no(a)

    return ternary


def _logic(is_and: bool) -> Callable[[list[Any]], Fn]:
    def build(children: list[Any]) -> Fn:
        if len(children) == 1:
            return _node(children[0])
        left, right = (_node(c) for c in children)

        def combine(a: dict[str, Any]) -> Any:
            first = left(a)
            if type(first) is not bool:
                raise Fallback
            if first is not is_and:  # false && x, true || x: decided, whatever x is
                return first
            second = right(a)
            if type(second) is not bool:
                raise Fallback
            return second

        return combine

    return build


def _comparable(x: Any, y: Any) -> bool:
    return (type(x) is type(y) and type(x) in (int, float, str)) or (x is None and y is None)


_RELATIONS: dict[str, Callable[[Any, Any], bool]] = {
    "relation_lt": lambda x, y: bool(x < y),
    "relation_le": lambda x, y: bool(x <= y),
    "relation_gt": lambda x, y: bool(x > y),
    "relation_ge": lambda x, y: bool(x >= y),
}


def _relation(children: list[Any]) -> Fn:
    if len(children) == 1:
        return _node(children[0])
    op_node, right_node = children
    op = str(op_node.data)
    left, right = _single(op_node.children), _node(right_node)
    if op in ("relation_eq", "relation_ne"):
        negate = op == "relation_ne"

        def equal(a: dict[str, Any]) -> bool:
            x, y = left(a), right(a)
            if not (_comparable(x, y) or (type(x) is type(y) and type(x) is bool)):
                raise Fallback  # lists, maps, mixed numbers: CEL's rules
            return (x == y) is not negate

        return equal
    compare = _RELATIONS.get(op)
    if compare is None:
        raise _Unsupported

    def relation(a: dict[str, Any]) -> bool:
        x, y = left(a), right(a)
        if not _comparable(x, y) or x is None:
            raise Fallback
        return compare(x, y)

    return relation


_INT_OPS: dict[str, Callable[[int, int], int]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}


def _binary(ops: dict[str, str]) -> Callable[[list[Any]], Fn]:
    def build(children: list[Any]) -> Fn:
        if len(children) == 1:
            return _node(children[0])
        op_node, right_node = children
        op = ops.get(str(op_node.data))
        if op is None:
            raise _Unsupported
        left, right = _single(op_node.children), _node(right_node)
        exact = _INT_OPS.get(op)
        if exact is None:
            return lambda a: arith(op, left(a), right(a))
        low, high = INT64

        def integers(a: dict[str, Any]) -> Any:
            # ints, the common case, without arith's dispatch; the rest as arith decides
            x, y = left(a), right(a)
            if type(x) is int and type(y) is int:
                value = exact(x, y)
                if low <= value <= high:
                    return value
                raise Fallback
            return arith(op, x, y)

        return integers

    return build


def _unary(children: list[Any]) -> Fn:
    *ops, operand_node = children
    operand = _node(operand_node)
    if not ops:
        return operand
    kinds = [str(getattr(o, "data", "")) for o in ops]
    if any(k not in ("unary_neg", "unary_not") for k in kinds):
        raise _Unsupported

    def unary(a: dict[str, Any]) -> Any:
        value = operand(a)
        for kind in reversed(kinds):
            if kind == "unary_not":
                if type(value) is not bool:
                    raise Fallback
                value = not value
            elif type(value) is int:
                value = checked(-value)
            elif type(value) is float:
                value = -value
            else:
                raise Fallback
        return value

    return unary


def _literal(children: list[Any]) -> Fn:
    token = children[0]
    kind, text = token.type, str(token)
    value: Any
    if kind == "INT_LIT":
        value = checked(int(text, 0) if text.lower().startswith(("0x", "-0x")) else int(text))
    elif kind == "FLOAT_LIT":
        value = float(text)
    elif kind == "BOOL_LIT":
        value = text == "true"
    elif kind == "NULL_LIT":
        value = None
    elif kind == "STRING_LIT" and len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        body = text[1:-1]
        if "\\" in body or text[:3] in ('"""', "'''"):
            raise _Unsupported  # escapes and raw strings: CEL's own rules
        value = body
    else:
        raise _Unsupported
    return lambda a: value


def _ident(children: list[Any]) -> Fn:
    name = str(children[0])

    def ident(a: dict[str, Any]) -> Any:
        if name not in a:
            raise Fallback
        return a[name]

    return ident


def _ident_name(node: Any) -> str | None:
    """The identifier `node` is, through single-child wrappers; None when it is not one."""
    while getattr(node, "data", None) in ("member", "primary") and len(node.children) == 1:
        node = node.children[0]
    if getattr(node, "data", None) == "ident" and len(node.children) == 1:
        return str(node.children[0])
    return None


def _member_dot(children: list[Any]) -> Fn:
    root, name = _ident_name(children[0]), str(children[1])
    if root is not None:  # `data.customer`, `i.qty`: the most frequent node, in one call

        def field(a: dict[str, Any]) -> Any:
            value = a.get(root)  # a missing root is None here, so Fallback below
            if type(value) is not dict or name not in value:
                raise Fallback
            return value[name]

        return field
    target = _node(children[0])

    def member(a: dict[str, Any]) -> Any:
        value = target(a)
        if type(value) is not dict or name not in value:
            raise Fallback
        return value[name]

    return member


def _member_index(children: list[Any]) -> Fn:
    target, index = _node(children[0]), _node(children[1])

    def item(a: dict[str, Any]) -> Any:
        value, key = target(a), index(a)
        if type(value) is list and type(key) is int and 0 <= key < len(value):
            return value[key]
        if type(value) is dict and type(key) is str and key in value:
            return value[key]
        raise Fallback

    return item


def _args(node: Any) -> list[Any]:
    return list(node.children) if node is not None else []


def _call(name: str, args: list[Fn]) -> Fn:
    fn = FUNCTIONS.get(name)
    if fn is None or len(args) != 1:
        raise _Unsupported
    (arg,) = args
    return lambda a: fn(arg(a))


def _ident_arg(children: list[Any]) -> Fn:
    name = str(children[0])
    args = _args(children[1] if len(children) > 1 else None)
    if name == "has":
        if len(args) != 1:
            raise _Unsupported
        return _has(args[0])
    return _call(name, [_node(x) for x in args])


def _has(node: Any) -> Fn:
    """has(x.f): the field test, found by walking down to the member_dot inside."""
    while getattr(node, "data", None) != "member_dot":
        if not hasattr(node, "children") or len(node.children) != 1:
            raise _Unsupported
        node = node.children[0]
    target, name = _node(node.children[0]), str(node.children[1])

    def has(a: dict[str, Any]) -> bool:
        value = target(a)
        if type(value) is not dict:
            raise Fallback
        return name in value

    return has


def _member_dot_arg(children: list[Any]) -> Fn:
    receiver, name = _node(children[0]), str(children[1])
    args = _args(children[2] if len(children) > 2 else None)
    if name in ("map", "filter") and len(args) == 2:
        return _macro(receiver, name, args)
    if args:
        raise _Unsupported
    return _call(name, [receiver])


def _macro(receiver: Fn, name: str, args: list[Any]) -> Fn:
    variable = _bound_name(args[0])
    body = _node(args[1])

    def mapped(a: dict[str, Any]) -> Any:
        items = receiver(a)
        if type(items) is not list:
            raise Fallback
        scope = dict(a)
        out = []
        for item in items:
            scope[variable] = item
            out.append(body(scope))
        return out

    def filtered(a: dict[str, Any]) -> Any:
        items = receiver(a)
        if type(items) is not list:
            raise Fallback
        scope = dict(a)
        out = []
        for item in items:
            scope[variable] = item
            value = body(scope)
            if type(value) is not bool:
                raise Fallback
            if value:
                out.append(item)
        return out

    return mapped if name == "map" else filtered


def _bound_name(node: Any) -> str:
    while hasattr(node, "children") and len(node.children) == 1:
        if getattr(node, "data", None) == "ident":
            return str(node.children[0])
        node = node.children[0]
    raise _Unsupported


def _list(children: list[Any]) -> Fn:
    items = [_node(c) for c in _args(children[0] if children else None)]
    return lambda a: [item(a) for item in items]


def _map(children: list[Any]) -> Fn:
    parts = [_node(c) for c in _args(children[0] if children else None)]
    pairs = list(zip(parts[0::2], parts[1::2], strict=True))

    def build(a: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_fn, value_fn in pairs:
            key = key_fn(a)
            if type(key) is not str or key in out:
                raise Fallback
            out[key] = value_fn(a)
        return out

    return build


_HANDLERS: dict[str, Callable[[list[Any]], Fn]] = {
    "expr": _expr,
    "conditionalor": _logic(is_and=False),
    "conditionaland": _logic(is_and=True),
    "relation": _relation,
    "addition": _binary({"addition_add": "+", "addition_sub": "-"}),
    "multiplication": _binary(
        {"multiplication_mul": "*", "multiplication_div": "/", "multiplication_mod": "%"}
    ),
    "unary": _unary,
    "member": _single,
    "primary": _single,
    "paren_expr": _single,
    "literal": _literal,
    "ident": _ident,
    "ident_arg": _ident_arg,
    "member_dot": _member_dot,
    "member_dot_arg": _member_dot_arg,
    "member_index": _member_index,
    "list_lit": _list,
    "map_lit": _map,
}
