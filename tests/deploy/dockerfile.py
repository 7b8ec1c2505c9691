"""Reads the Dockerfile's instructions, so the tests run what the image would: its ENV, its
ENTRYPOINT and CMD, its health check, not a copy of them."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def tool(name: str) -> str | None:
    """A linter of the `deploy` extra: on PATH, or beside this Python (venv not activated)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.exists() else None)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.base}"
        return found[-1]

    def exec_form(self, keyword: str) -> list[str]:
        """A JSON-array (exec form) argument, as Docker runs it without a shell."""
        text = self.last(keyword)
        if keyword == "HEALTHCHECK":
            text = text.split(" CMD ", 1)[1]
        value = json.loads(text)
        assert isinstance(value, list), f"{keyword} is not in exec form: {text}"
        return [str(v) for v in value]

    def env(self) -> dict[str, str]:
        """ENV key=value pairs in order, `$VAR` expanded from those before (as Docker does)."""
        out: dict[str, str] = {}
        for text in self.all("ENV"):
            for pair in shlex.split(text):
                key, _, value = pair.partition("=")
                for name, known in sorted(out.items(), key=lambda kv: -len(kv[0])):
                    value = value.replace(f"${name}", known).replace(f"${{{name}}}", known)
                out[key] = value
        return out


def stages(path: Path = DOCKERFILE) -> list[Stage]:
    """The build stages in order, each with its instructions (comments and continuations
    resolved)."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    result: list[Stage] = []
    for line in lines:
        keyword, _, arg = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = arg.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(base=words[0], name=name))
        else:
            assert result, f"{keyword} before any FROM"
            result[-1].instructions.append((keyword, arg.strip()))
    return result
