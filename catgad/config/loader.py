"""Reads config YAML into plain Python, remembering the file, line and column of every value.

PyYAML's composed nodes keep their marks; we build the Python values ourselves
from those nodes so each value's position can be recorded by document path.
Along the way: `${VAR}` / `${VAR:-default}` substitution, duplicate-key
detection (PyYAML accepts duplicates silently), and `include:` with merging.

Scalars follow the YAML 1.2 core schema, not PyYAML's YAML 1.1 defaults:
`on`, `yes` and `no` stay strings (an aggregate's `on:` key would otherwise
become `True`), and dates stay strings, since the document must be JSON.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from catgad.errors import ConfigIssue

try:  # libyaml composes ~10x faster; errors are re-read with the Python parser for messages
    from yaml import CSafeLoader as _FastBase
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _FastBase  # type: ignore[assignment]

_TAG = "tag:yaml.org,2002:"
_FLOAT = r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
_IMPLICIT = [  # YAML 1.2 core schema, in resolution order
    (name, re.compile(f"^(?:{pattern})$"))
    for name, pattern in (
        ("null", r"~|null|Null|NULL|"),
        ("bool", r"true|True|TRUE|false|False|FALSE"),
        ("int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"),
        ("float", _FLOAT + r"|\.(?:nan|NaN|NAN)"),
        ("merge", r"<<"),
    )
]
_VAR = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_VAR_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)


def implicit_tag(value: str) -> str:
    """The tag a plain (unquoted) scalar gets under the YAML 1.2 core schema."""
    for name, pattern in _IMPLICIT:
        if pattern.match(value):
            return _TAG + name
    return _TAG + "str"


def _resolve(self: Any, kind: Any, value: Any, implicit: Any) -> str:
    if kind is ScalarNode:
        return implicit_tag(value) if implicit[0] else _TAG + "str"
    return _TAG + ("seq" if kind is SequenceNode else "map")


class _FastLoader(_FastBase):
    resolve = _resolve


class _PyLoader(yaml.SafeLoader):
    resolve = _resolve


Path = tuple[str | int, ...]
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_path(path: Path) -> str:
    """`("commands", "PayOrder", "require", 0)` → `commands.PayOrder.require[0]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'amount'?)` when a candidate is close to `word`, else ``."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True, slots=True)
class Mark:
    file: str
    line: int  # 1-based; 0 when unknown
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class Positions:
    """Where each value (and each mapping key) of a document was written."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.values: dict[Path, Mark] = {}
        self.keys: dict[Path, Mark] = {}
        self.replaced: set[Path] = set()  # values replaced after an issue (muted once loaded)
        # The builder's issues wait until includes are merged: their paths may still move.
        self.pending: list[tuple[Path, Mark, str]] = []

    def value(self, path: Path) -> Mark:
        """The value's mark, or its nearest written ancestor's (defaults are not written)."""
        for end in range(len(path), -1, -1):
            mark = self.values.get(path[:end])
            if mark is not None:
                return mark
        return Mark(self.file, 0, 0)

    def key(self, path: Path) -> Mark:
        """The mark of the key that introduces `path`, else of its value."""
        return self.keys.get(path) or self.value(path)

    def absorb(self, other: Positions, rejected: set[Path], offsets: dict[str, int]) -> None:
        """Take an included file's marks, shifting list indexes by `offsets`."""

        def moved(path: Path) -> Path | None:
            if not path or path[0] == "include" or path[:1] in rejected or path[:2] in rejected:
                return None
            offset = offsets.get(str(path[0]))
            if offset and len(path) > 1 and isinstance(path[1], int):
                return (path[0], path[1] + offset, *path[2:])
            return path

        for mine, theirs in ((self.values, other.values), (self.keys, other.keys)):
            for path, mark in theirs.items():
                new = moved(path)
                if new is not None:
                    mine.setdefault(new, mark)
        self.replaced.update(p for p in map(moved, other.replaced) if p is not None)
        self.pending.extend((moved(p) or p, mark, m) for p, mark, m in other.pending)

    def flush(self, reporter: Reporter) -> None:
        """Hand the waiting issues to `reporter`, and mute the values they replaced."""
        for path, mark, message in self.pending:
            reporter.issue_at(mark.file, mark.line, mark.column, path, message)
        self.pending.clear()
        for path in self.replaced:
            reporter.mute(path)


class Reporter:
    """Collects issues, positioned by document path; later stages stay quiet where an
    earlier one already reported, so one mistake is not reported three times."""

    def __init__(self, positions: Positions) -> None:
        self.positions = positions
        self.issues: list[ConfigIssue] = []
        self._muted: set[Path] = set()

    def issue_at(self, file: str, line: int, column: int, path: Path, message: str) -> None:
        if any(path[:end] in self._muted for end in range(len(path) + 1)):
            return
        issue = ConfigIssue(file, line, column, format_path(path), message)
        if issue not in self.issues:
            self.issues.append(issue)

    def error(self, path: Path, message: str, at: Path | None = None) -> None:
        """Report at `path`'s value, or at the key that introduces `at` when given."""
        mark = self.positions.value(path) if at is None else self.positions.key(at)
        self.issue_at(mark.file, mark.line, mark.column, path, message)

    def mute(self, path: Path) -> None:
        """Ignore later issues at or under `path`: its value is already known to be wrong."""
        self._muted.add(path)


@dataclass
class Document:
    """A merged config document: plain data, where each value came from, what went wrong."""

    data: dict[str, Any]
    reporter: Reporter
    complete: bool = True  # False when some file could not be read or parsed
    files: list[str] = field(default_factory=list)

    @property
    def positions(self) -> Positions:
        return self.reporter.positions


def load_document(path: str | os.PathLike[str], env: Mapping[str, str]) -> Document:
    """Read `path` and its includes into one document; problems go to its reporter."""
    display = os.fspath(path)
    doc = Document({}, Reporter(Positions(display)))
    loaded = _Load(env, doc).file(display, None)
    if loaded is None:
        doc.complete = False
    else:
        doc.data, doc.reporter.positions = loaded
        doc.positions.flush(doc.reporter)
    return doc


class _Load:
    """One load run: the environment, the document being filled, and the files being read."""

    def __init__(self, env: Mapping[str, str], doc: Document) -> None:
        self.env = env
        self.doc = doc
        self.reporter = doc.reporter
        self.stack: list[str] = []  # real paths of the files being read, for cycle detection

    def file(
        self, display: str, via: tuple[Positions, Path] | None
    ) -> tuple[dict[str, Any], Positions] | None:
        """Load one file and its includes; `via` is the include entry that named it."""
        text = self._read(display, via)
        if text is None:
            return None
        self.doc.files.append(display)
        ok, node = self._compose(text, display)
        if not ok:
            return None
        positions = Positions(display)
        builder = _Builder(display, self.env, positions)
        data = {} if node is None else builder.value(node, ())
        if not isinstance(data, dict):
            positions.flush(self.reporter)
            self._issue(positions, (), "expected a mapping at the top of the file")
            return None
        includes = self._include_list(data.pop("include", None), positions)
        self.stack.append(os.path.realpath(display))
        for index, entry in enumerate(includes):
            if entry is None:
                continue
            child_path = os.path.normpath(os.path.join(os.path.dirname(display), entry))
            where: Path = ("include", index)
            if os.path.realpath(child_path) in self.stack:
                chain = [os.path.basename(p) for p in (*self.stack, child_path)]
                self._issue(positions, where, "include cycle: " + " -> ".join(chain))
                self.doc.complete = False
                continue
            child = self.file(child_path, (positions, where))
            if child is None:
                self.doc.complete = False  # the child flushed its own issues
            else:
                self._merge(data, positions, *child)
        self.stack.pop()
        return data, positions

    def _read(self, display: str, via: tuple[Positions, Path] | None) -> str | None:
        try:
            with open(display, encoding="utf-8") as fh:
                return fh.read()
        except FileNotFoundError:
            why = "file not found"
        except IsADirectoryError:
            why = "is a directory, not a file"
        except UnicodeDecodeError as exc:
            why = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        except OSError as exc:
            why = exc.strerror or str(exc)
        if via is None:
            self.reporter.issue_at(display, 0, 0, (), f"cannot read config: {why}")
        else:
            self._issue(via[0], via[1], f"cannot include {display}: {why}")
        return None

    def _compose(self, text: str, display: str) -> tuple[bool, Node | None]:
        """Whether the file parses, and its root node (None when the file is empty)."""
        loader = _FastLoader(text)
        try:
            return True, loader.get_single_node()
        except yaml.YAMLError:
            pass
        finally:
            loader.dispose()
        # Re-read with the pure-Python parser: its messages and marks are clearer.
        slow = _PyLoader(text)
        try:
            return True, slow.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
            what = exc.problem or exc.context or "cannot parse"
            if exc.problem and exc.context:
                what += f" ({exc.context}"
                if exc.context_mark and exc.context_mark.line + 1 != line:
                    what += f" that starts at line {exc.context_mark.line + 1}"
                what += ")"
            self.reporter.issue_at(display, line, column, (), f"invalid YAML: {what}")
        except yaml.YAMLError as exc:
            self.reporter.issue_at(display, 0, 0, (), f"invalid YAML: {exc}")
        finally:
            slow.dispose()
        return False, None

    def _include_list(self, includes: Any, positions: Positions) -> list[str | None]:
        if includes is None:
            return []
        if not isinstance(includes, list):
            self._issue(positions, ("include",), "expected a list of file paths")
            return []
        entries: list[str | None] = []
        for index, entry in enumerate(includes):
            if isinstance(entry, str) and entry:
                entries.append(entry)
            else:
                self._issue(positions, ("include", index), "expected a file path")
                entries.append(None)
        return entries

    def _issue(self, positions: Positions, path: Path, message: str) -> None:
        mark = positions.value(path)
        self.reporter.issue_at(mark.file, mark.line, mark.column, path, message)

    def _merge(
        self, into: dict[str, Any], into_pos: Positions, src: dict[str, Any], src_pos: Positions
    ) -> None:
        """Merge an included file: sections merge name by name, lists concatenate."""
        rejected: set[Path] = set()
        offsets: dict[str, int] = {}
        for key, value in src.items():
            if key not in into:
                into[key] = value
                continue
            old = into[key]
            if isinstance(old, dict) and isinstance(value, dict):
                for name, item in value.items():
                    if name in old:
                        rejected.add((key, name))
                        self._clash(into_pos, src_pos, (key, name))
                    else:
                        old[name] = item
            elif isinstance(old, list) and isinstance(value, list):
                offsets[key] = len(old)
                old.extend(value)
            elif key == "catgad" and old == value:
                rejected.add((key,))  # each file may name the format version
            else:
                rejected.add((key,))
                self._clash(into_pos, src_pos, (key,))
        into_pos.absorb(src_pos, rejected, offsets)

    def _clash(self, first: Positions, second: Positions, path: Path) -> None:
        mark = second.key(path)
        message = f"{path[-1]!r} is already defined at {first.key(path)}"
        self.reporter.issue_at(mark.file, mark.line, mark.column, path, message)


class _Builder:
    """Turns one file's node tree into Python values, recording positions as it goes."""

    def __init__(self, file: str, env: Mapping[str, str], positions: Positions) -> None:
        self.file = file
        self.env = env
        self.positions = positions
        self.active: set[int] = set()  # nodes being built, to refuse recursive aliases

    def _issue(self, node: Node, path: Path, message: str, replaced: bool = True) -> None:
        """Report a bad node. A replaced value is muted once loaded: later checks of it
        would only echo this issue."""
        self.positions.pending.append((path, self._mark(node), message))
        if replaced:
            self.positions.replaced.add(path)

    def _mark(self, node: Node) -> Mark:
        return Mark(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def value(self, node: Node, path: Path) -> Any:
        self.positions.values.setdefault(path, self._mark(node))
        if id(node) in self.active:
            self._issue(node, path, "recursive YAML alias")
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, ScalarNode):
                return self._scalar(node, path)
            return None
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self._issue(key_node, path, "a mapping key must be a plain string", False)
                continue
            if key_node.tag == _TAG + "merge":
                merges.append(value_node)
                continue
            key = str(key_node.value)
            if key in first_line:
                self._issue(
                    key_node,
                    (*path, key),
                    f"duplicate key {key!r} (first defined at line {first_line[key]})",
                    False,
                )
                continue
            first_line[key] = key_node.start_mark.line + 1
            self.positions.keys.setdefault((*path, key), self._mark(key_node))
            result[key] = self.value(value_node, (*path, key))
        for merge in merges:  # `<<: *defaults`: explicit keys win over merged ones
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, MappingNode):
                    self._issue(source, path, "'<<' merges a mapping or a list of mappings", False)
                    continue
                for key, item in self._mapping(source, path).items():
                    result.setdefault(key, item)
        return result

    def _scalar(self, node: ScalarNode, path: Path) -> Any:
        text = str(node.value)
        tag = str(node.tag)
        if "$" in text:
            text = self._substitute(text, node, path)
            if node.style in (None, "") and tag.startswith(_TAG):
                tag = implicit_tag(text)  # `${PORT}` may become a number once substituted
        kind = tag[len(_TAG) :] if tag.startswith(_TAG) else tag
        try:
            if kind == "str":
                return text
            if kind == "null":
                return None
            if kind == "bool":
                return text.lower() == "true"
            if kind == "int":  # base 0 reads 0x/0o, base 10 reads 017 as 17 (YAML 1.2)
                return int(text, 0 if text[:2] in ("0x", "0o") else 10)
            if kind == "float":  # .inf / -.inf / .nan → inf / -inf / nan
                return float(text.replace(".", "") if text[-3:].lower() in ("inf", "nan") else text)
        except ValueError:
            self._issue(node, path, f"{text!r} is not a valid {kind}")
            return text
        self._issue(node, path, f"unsupported YAML tag {tag!r}")
        return text

    def _substitute(self, text: str, node: Node, path: Path) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"  # `$${` escapes a literal `${`
            inner = match.group(1)
            parsed = _VAR_NAME.match(inner)
            if parsed is None:
                self._issue(node, path, f"invalid variable reference '${{{inner}}}'")
                return ""
            name, default = parsed.group(1), parsed.group(2)
            value = self.env.get(name)
            if default is not None and not value:
                return default
            if value is None:
                self._issue(node, path, f"environment variable {name} is not set")
                return ""
            return value

        return _VAR.sub(replace, text)
