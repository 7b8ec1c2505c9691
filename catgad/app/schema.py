"""The JSON Schema of a catgad config, gathered from every section's fragment.

`python -m catgad.app.schema` writes it to catgad/schema/catgad.schema.json (package
data: `catgad schema` prints it; published at its $id), which editors load through
yaml-language-server (`# yaml-language-server: $schema=...`).
Besides standard keywords it carries `errorMessage` / `patternErrorMessage`,
which that editor shows and catgad uses for its own messages.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from catgad.app.registry import SECTIONS
from catgad.config.fragments import META_SCHEMA, SHARED_DEFS, Schema, closed

SCHEMA_ID = "https://catgad.dev/schemas/catgad.schema.json"


def _assemble() -> Schema:
    properties: Schema = {
        "catgad": {
            "const": 1,
            "description": "Config format version; must be 1.",
            "errorMessage": "expected 1, the config format version",
        },
        "include": {
            "type": "array",
            "description": "Files merged into this one, relative to it.",
            "items": {"type": "string", "minLength": 1},
        },
    }
    runtime: Schema = {}
    defs: Schema = dict(SHARED_DEFS)
    for section in SECTIONS:
        properties[section.key] = section.schema
        if section.runtime is not None:
            runtime[section.key] = section.runtime
        defs.update(section.defs)
    properties["runtime"] = closed("How the daemon runs its background work.", runtime)
    return {
        "$schema": META_SCHEMA,
        "$id": SCHEMA_ID,
        "title": "catgad config",
        "description": "A catgad service: CQRS / event sourcing configured by one YAML file.",
        "type": "object",
        "required": ["catgad"],
        "properties": properties,
        "patternProperties": {
            "^x-": {"description": "Free space, e.g. for YAML anchors; ignored."}
        },
        "additionalProperties": False,
        "$defs": defs,
    }


SCHEMA: Schema = _assemble()


def render() -> str:
    """The schema file's exact text."""
    return json.dumps(SCHEMA, indent=2, ensure_ascii=False) + "\n"


def default_path() -> Path:
    return Path(__file__).resolve().parents[1] / "schema" / "catgad.schema.json"


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else default_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
