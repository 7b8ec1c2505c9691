"""CEL expressions: compiled once at load, evaluated by the Rust runtime, analysed statically.

`common-expression-language` (Rust) runs the expressions; cel-python's Lark
parser gives the syntax tree that the linter needs to find the fields an
expression reads (`data.amout` → unknown field 'amout').
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import cel

# Functions catgad adds to standard CEL; usable as f(x) or x.f().
EXTRA_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sum": lambda items: sum(items),
}

_MACROS = frozenset({"map", "filter", "all", "exists", "exists_one"})

# Most rules are a field path (`data.customer`) or a literal (`'paid'`); those are read
# directly, which is faster than a CEL call and keeps JSON objects in their given order.
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_STRING = re.compile(r"'([^'\\]*)'|\"([^\"\\]*)\"")
_INT = re.compile(r"-?[0-9]+")
_KEYWORDS = frozenset(
    {
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    }
)
_MISSING = object()


class CelCompileError(ValueError):
    """The expression does not parse; the message says where in the expression."""


class CelEvalError(RuntimeError):
    """The expression failed at run time (type mismatch, missing field...)."""


@dataclass(frozen=True, slots=True)
class FieldRef:
    """A field path read from a root variable, e.g. ('data', 'items') for data.items."""

    root: str
    path: tuple[str, ...]

    def __str__(self) -> str:
        return ".".join((self.root, *self.path))


class CelExpr:
    """A compiled CEL expression with what it reads."""

    __slots__ = (
        "_constant",
        "_functions",
        "_path",
        "_program",
        "_prune",
        "bound",
        "fields",
        "roots",
        "source",
    )

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._program = cel.compile(source)
        except (ValueError, RuntimeError, TypeError) as exc:
            raise CelCompileError(_short(str(exc))) from None
        refs, bound, prune = _analyse(source)
        self.bound = bound
        self.roots = frozenset(v for v in self._program.variables() if v not in bound)
        self.fields = refs
        # The runtime converts every value handed to it; handing it only the fields an
        # expression reads (not a whole state with its item lists) is what keeps it fast.
        self._prune = {root: prune[root] for root in self.roots if root in prune}
        used = set(self._program.functions())
        self._functions = {k: f for k, f in EXTRA_FUNCTIONS.items() if k in used}
        self._path: tuple[str, ...] | None = None
        self._constant: Any = _MISSING
        text = source.strip()
        if _PATH.fullmatch(text) and not (set(text.split(".")) & _KEYWORDS):
            self._path = tuple(text.split("."))
        elif (literal := _STRING.fullmatch(text)) is not None:
            self._constant = literal.group(1) if literal.group(1) is not None else literal.group(2)
        elif _INT.fullmatch(text):
            self._constant = int(text)
        elif text in ("true", "false"):
            self._constant = text == "true"

    def evaluate(self, activation: dict[str, Any]) -> Any:
        if self._constant is not _MISSING:
            return self._constant
        if self._path is not None:
            value: Any = activation
            for name in self._path:
                if not isinstance(value, dict) or name not in value:
                    break
                value = value[name]
            else:
                return value
        context: dict[str, Any] = dict(self._functions)
        for root in self.roots:
            if root not in activation:
                continue
            value = activation[root]
            keep = self._prune.get(root)
            if keep is not None and isinstance(value, dict):
                value = {k: value[k] for k in keep if k in value}
            context[root] = value
        try:
            return self._program.execute(context)
        except KeyError as exc:
            raise CelEvalError(f"{self.source}: no such field {exc}") from None
        except IndexError as exc:
            raise CelEvalError(f"{self.source}: index out of range ({exc})") from None
        except (ValueError, RuntimeError, TypeError, ArithmeticError) as exc:
            raise CelEvalError(f"{self.source}: {_short(str(exc))}") from None

    def __repr__(self) -> str:
        return f"CelExpr({self.source!r})"


def _short(message: str) -> str:
    first = message.strip().splitlines()
    return first[0] if first else message


@cache
def _parser() -> Any:
    from celpy.celparser import CELParser

    return CELParser()


def _analyse(
    source: str,
) -> tuple[frozenset[FieldRef], frozenset[str], dict[str, frozenset[str]]]:
    """Field paths read from root identifiers, names bound by comprehension macros, and
    for each root only ever used as `root.field`, the fields used (safe to prune to)."""
    try:
        tree = _parser().parse(source)
    except Exception:  # the Rust compiler accepted it; analysis is best effort
        return frozenset(), frozenset(), {}
    bound: set[str] = set()
    refs: set[FieldRef] = set()
    for node in _walk(tree):
        if node.data == "member_dot_arg" and len(node.children) >= 2:
            method = str(node.children[1])
            args = node.children[2] if len(node.children) > 2 else None
            if method in _MACROS and args is not None and getattr(args, "children", None):
                name = _ident_of(args.children[0])
                if name:
                    bound.add(name)
    for node in _walk(tree):
        if node.data in ("member_dot", "member_dot_arg"):
            chain = _dot_chain(node)
            if chain and len(chain) >= 2 and chain[0] not in bound:
                refs.add(FieldRef(chain[0], tuple(chain[1:])))
    occurrences: dict[str, int] = {}
    dotted: dict[str, set[str]] = {}
    dotted_count: dict[str, int] = {}
    for node in _walk(tree):
        if node.data == "ident":
            name = str(node.children[0])
            occurrences[name] = occurrences.get(name, 0) + 1
        elif node.data == "member_dot":
            root = _ident_of(node.children[0])
            if root is not None:
                dotted.setdefault(root, set()).add(str(node.children[1]))
                dotted_count[root] = dotted_count.get(root, 0) + 1
    prune = {
        root: frozenset(fields)
        for root, fields in dotted.items()
        if root not in bound and dotted_count[root] == occurrences.get(root, 0)
    }
    return frozenset(refs), frozenset(bound), prune


def _walk(tree: Any) -> Iterator[Any]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if hasattr(node, "data"):
            yield node
            stack.extend(reversed(node.children))


def _ident_of(node: Any) -> str | None:
    """The identifier an expression node is, if it is just an identifier."""
    while hasattr(node, "data"):
        if node.data == "ident":
            return str(node.children[0])
        if len(node.children) != 1:
            return None
        node = node.children[0]
    return None


def _dot_chain(node: Any) -> list[str] | None:
    """For `a.b.c` (member_dot nodes) return ['a','b','c']; None if not rooted at an ident."""
    names: list[str] = []
    while hasattr(node, "data"):
        if node.data == "member_dot":
            names.append(str(node.children[1]))
            node = node.children[0]
        elif node.data == "member_dot_arg":
            # a method call: the receiver's chain is what is read; drop the method name
            names = []
            node = node.children[0]
        elif node.data in ("member", "primary") and len(node.children) == 1:
            node = node.children[0]
        elif node.data == "ident":
            names.append(str(node.children[0]))
            return list(reversed(names))
        else:
            return None
    return None


_CEL_ERROR = re.compile(r"^Failed to parse expression .*?: ERROR: <input>:(\d+):(\d+): (.*)$", re.S)
_EXPECTING = re.compile(r"expecting \{[^}]*IDENTIFIER\}")


def cel_source(value: Any) -> str:
    """The CEL text of a YAML scalar: `total: 0` was typed as int by YAML, but means CEL `0`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cel_message(error: CelCompileError) -> str:
    """The compiler's message without its noise: where in the expression, and what."""
    text = str(error)
    match = _CEL_ERROR.match(text)
    if match is None:
        return f"invalid CEL: {text}"
    line, column, what = match.groups()
    what = _EXPECTING.sub("expecting an expression", what.removeprefix("Syntax error: "))
    where = f"column {column}" if line == "1" else f"line {line}, column {column}"
    return f"invalid CEL at {where} of the expression: {what}"
