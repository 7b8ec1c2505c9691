"""What every Mermaid diagram shares (a process's in catgad.processes.diagram, a saga's in
catgad.sagas.diagram): labels made safe, and an instance's place highlighted, its way there
marked."""

from __future__ import annotations

import re
from collections.abc import Iterable

_UNSAFE = re.compile(r'[";#<>{}|`]')  # what would end or confuse a label: written as entities
CURRENT = "fill:#ffe08a,stroke:#b8860b,stroke-width:3px"
VISITED = "fill:#e3f2e1,stroke:#5b8c5a"
FAILED = "fill:#f8d7da,stroke:#a94442"


def label(text: str) -> str:
    """Text safe inside a Mermaid label: quotes, semicolons, #, <, >, braces, pipes and
    backticks as `#NN;` entities, line breaks as spaces."""
    flat = " ".join(text.split())
    return _UNSAFE.sub(lambda m: f"#{ord(m.group(0))};", flat)


def highlight(current: str | None, visited: Iterable[str], failed: str | None = None) -> list[str]:
    lines: list[str] = []
    seen = [v for v in dict.fromkeys(visited) if v != current and v != failed]
    if seen:
        lines.append(f"    classDef visited {VISITED}")
        lines.append(f"    class {','.join(seen)} visited")
    if current is not None:
        lines.append(f"    classDef current {CURRENT}")
        lines.append(f"    class {current} current")
    if failed is not None:
        lines.append(f"    classDef failed {FAILED}")
        lines.append(f"    class {failed} failed")
    return lines
