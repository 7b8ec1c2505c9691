"""A config section: the piece of the YAML one feature or backend owns, beside its code.

Each section brings its JSON Schema fragment (and the shared definitions it
adds), how it is built into model objects, and the checks the schema cannot
express. catgad.app gathers the sections into one schema and one loader; the
core here knows none of them.

    SAGAS = Section("sagas", SCHEMA, build=build_sagas, empty=Sagas, lint=lint_sagas)
    sagas = SAGAS.of(config)          # what it built, typed
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, cast

from catgad.config.cel import CelCompileError, CelExpr, cel_message, cel_source
from catgad.config.fragments import Schema
from catgad.config.loader import Path, Reporter, did_you_mean, format_path
from catgad.errors import ConfigError, ConfigIssue

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Where:
    """Where a piece of config came from, for error messages."""

    file: str
    line: int
    column: int
    path: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.path}"


@dataclass
class Broken:
    """Definitions the schema rejected: references to them are not reported again."""

    sections: set[str] = field(default_factory=set)  # whole sections of the wrong shape
    names: dict[str, set[str]] = field(default_factory=dict)  # section -> rejected names


class Building:
    """What a section's build gets: the (pruned) document, and how to compile CEL, locate a
    path and resolve a file there; every problem goes to the reporter."""

    def __init__(self, data: dict[str, Any], reporter: Reporter, path: str) -> None:
        self.data = data
        self.reporter = reporter
        self.path = path  # the root config file
        self.exprs: dict[Path, CelExpr] = {}  # every compiled expression, for the lints
        self.values: dict[str, Any] = {}  # what the sections built so far, by key

    @property
    def sections(self) -> Mapping[str, Any]:
        """What the sections built so far (so `SECTION.of(building)` reads one)."""
        return self.values

    def runtime(self, key: str) -> dict[str, Any]:
        """The section's part of `runtime:` (empty when not written)."""
        part = (self.data.get("runtime") or {}).get(key)
        return part if isinstance(part, dict) else {}

    def where(self, path: Path) -> Where:
        mark = self.reporter.positions.key(path)
        return Where(mark.file, mark.line, mark.column, format_path(path))

    def cel(self, value: Any, path: Path) -> CelExpr | None:
        """The expression compiled, or None after reporting why it does not compile."""
        try:
            expr = CelExpr(cel_source(value))
        except CelCompileError as exc:
            self.reporter.error(path, cel_message(exc))
            return None
        self.exprs[path] = expr
        return expr

    def cel_map(self, raw: Mapping[str, Any] | None, path: Path) -> dict[str, CelExpr]:
        """field -> compiled CEL; a field whose CEL does not compile is reported, left out."""
        out: dict[str, CelExpr] = {}
        for name, value in (raw or {}).items():
            expr = self.cel(value, (*path, name))
            if expr is not None:
                out[name] = expr
        return out

    def file(self, value: str, path: Path) -> str:
        """A path relative to the file it was written in (the root config for defaults)."""
        if value == ":memory:" or os.path.isabs(value):
            return value
        written = self.reporter.positions.values.get(path)
        base = os.path.dirname(written.file if written else self.path)
        return os.path.normpath(os.path.join(os.path.abspath(base), value))

    def unused(self, spec: Mapping[str, Any], keys: tuple[str, ...], section: str, by: str) -> None:
        """Keys written for a kind that does not read them."""
        for key in keys:
            if key in spec:
                at: Path = (section, key)
                self.reporter.error(at, f"{key!r} is only used by {by}", at=at)


class Linting:
    """What a section's checks get: the document, the built values and compiled CEL, and
    how to check a reference to another section's definition."""

    def __init__(self, building: Building, broken: Broken) -> None:
        self.data = building.data
        self.exprs = building.exprs
        self.values = building.values
        self.reporter = building.reporter
        self.error = building.reporter.error
        self.broken = broken

    @property
    def sections(self) -> Mapping[str, Any]:
        """What the sections built (so `SECTION.of(linting)` reads one)."""
        return self.values

    def raw(self, section: str) -> dict[str, Any]:
        """A section of named definitions as written (empty when absent or not a mapping)."""
        value = self.data.get(section)
        return value if isinstance(value, dict) else {}

    def resolves(self, path: Path, section: str, name: str, what: str) -> bool:
        """Whether `name` is declared in `section`; reports it when not."""
        declared = self.raw(section)
        if name in declared or section in self.broken.sections:
            return True
        if name in self.broken.names.get(section, ()):
            return True
        self.error(path, f"unknown {what} {name!r}{did_you_mean(name, declared)}")
        return False

    def schema_of(self, section: str, name: str) -> dict[str, Any] | None:
        """The payload schema of a command or event as written."""
        raw = self.raw(section).get(name)
        return raw.get("schema") if isinstance(raw, dict) else None


class HasSections(Protocol):
    @property
    def sections(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Section(Generic[T]):
    """One top-level key of the config.

    `build(raw, building)` gets the key's value (None when not written) and returns what
    the rest of catgad runs from; `empty()` is that value for a config without the key.
    `lint(raw, value, linting)` reports what the schema cannot see. `runtime` is the
    section's part of `runtime:` (`runtime.<key>`), read by build through
    `building.runtime(key)`. `named`: the value is a mapping of named definitions, so one
    the schema rejects is left out alone (its name still counts as declared).
    """

    key: str
    schema: Schema
    build: Callable[[Any, Building], T]
    empty: Callable[[], T]
    lint: Callable[[Any, T, Linting], None] | None = None
    runtime: Schema | None = None
    defs: Mapping[str, Schema] = field(default_factory=dict)
    named: bool = True
    payloads: bool = False  # its definitions carry payload schemas (checked on their own)

    def of(self, config: HasSections) -> T:
        """The section's value in a built config (`empty()` when it was not built)."""
        value = config.sections.get(self.key)
        return self.empty() if value is None else cast(T, value)


def prune(
    data: dict[str, Any], bad: list[Path], named: frozenset[str]
) -> tuple[dict[str, Any], Broken]:
    """Leave out the definitions the schema rejected; remember their names as declared."""
    data = dict(data)
    broken = Broken()
    for path in bad:
        if not path:
            continue
        section = str(path[0])
        if len(path) == 1 or section not in named:
            data.pop(section, None)
            broken.sections.add(section)
        elif isinstance(data.get(section), list):
            items = list(data[section])
            items[int(path[1])] = None  # keep the indexes, they name positions
            data[section] = items
        elif isinstance(data.get(section), dict):
            data[section] = {k: v for k, v in data[section].items() if k != path[1]}
            broken.names.setdefault(section, set()).add(str(path[1]))
    return data, broken


def config_error(where: Where | None, path: str, message: str) -> ConfigError:
    """A config mistake found after loading (by a backend as it opens), at the position of
    the section it belongs to when known."""
    if where is None:
        return ConfigError([ConfigIssue("<config>", 0, 0, path, message)])
    return ConfigError([ConfigIssue(where.file, where.line, where.column, path, message)])


def checked_options(
    at: str,
    what: str,
    options: Mapping[str, Any],
    known: Mapping[str, Schema],
    where: Where | None,
    skip: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """A backend's options (written at `at`, e.g. `store.options`) for its constructor
    (`skip`: read by others). A config file's were checked against the schema at load; this
    catches a config made in code, reported at `where`."""
    given: dict[str, Any] = {}
    for key, value in options.items():
        if key in skip:
            continue
        path = f"{at}.{key}"
        if key not in known:
            names = ", ".join(sorted({*known, *skip})) or "none"
            raise config_error(where, path, f"not an option of {what} ({names})")
        want = _json_type(known[key])
        if want == "number" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # `timeout: 5` means 5.0
        elif not _fits(value, want):
            raise config_error(where, path, f"expected {want}, got {value!r}")
        given[key] = value
    return given


_PYTHON: dict[str, type | tuple[type, ...]] = {
    "integer": int,
    "number": (int, float),
    "string": str,
    "boolean": bool,
    "object": dict,
}


def _json_type(schema: Schema) -> Any:
    """The JSON type a value schema asks for, past the `${VAR}` alternative (None: any)."""
    if "anyOf" in schema:
        return _json_type(schema["anyOf"][0])
    return schema.get("type")


def _fits(value: Any, want: Any) -> bool:
    """A value of the JSON type `want` (None: any); a bool is not a number here."""
    if want is None:
        return True
    if isinstance(value, bool):
        return bool(want == "boolean")
    kinds: type | tuple[type, ...] = _PYTHON.get(str(want), object)
    return isinstance(value, kinds)
