"""The docs' console sessions, read from the Markdown: which daemon each runs against, and
its (command, expected output) pairs.

A ```console block is preceded by an HTML comment the tests read:
`<!-- session: orders -->` names the daemon it runs against (see SETUPS in
test_sessions.py), `<!-- not run: why -->` says why it cannot be run. A block with
neither fails the tests, so a new session is run or its reason is written down.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]

BLOCK = re.compile(
    r"(?:<!--\s*(?P<mark>[^>]*?)\s*-->\s*\n)?```console\n(?P<body>.*?)```", re.DOTALL
)


@dataclass(frozen=True)
class Session:
    page: Path
    line: int
    setup: str  # a key of SETUPS, or "" when not run
    reason: str  # why it is not run
    pairs: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def pairs_of(block: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs: `$ ` starts a command (continued by `\\`), the next
    line is its answer; a trailing `# comment` on a command is prose."""
    pairs: list[tuple[str, str]] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        command = lines[i][2:]
        while command.rstrip().endswith("\\"):
            i += 1
            command = command.rstrip()[:-1] + " " + lines[i].strip()
        command = re.sub(r"\s+#.*$", "", command)
        i += 1
        pairs.append((command, lines[i] if i < len(lines) else ""))
        i += 1
    return pairs


def sessions(page: Path) -> list[Session]:
    text = page.read_text()
    found = []
    for match in BLOCK.finditer(text):
        mark = (match["mark"] or "").strip()
        line = text.count("\n", 0, match.start("body"))
        setup = reason = ""
        if mark.startswith("session:"):
            setup = mark.removeprefix("session:").strip()
        elif mark.startswith("not run:"):
            reason = mark.removeprefix("not run:").strip()
        found.append(Session(page, line, setup, reason, tuple(pairs_of(match["body"]))))
    return found


def all_sessions() -> list[Session]:
    return [s for page in PAGES for s in sessions(page)]


def as_pattern(expected: str) -> re.Pattern[str]:
    """`…` in the docs stands for run-specific text (ids, times, elided events)."""
    return re.compile(".*?".join(re.escape(part) for part in expected.split("…")), re.DOTALL)
