"""`catgad schema`: print the JSON Schema of a config, as shipped in the package.

For editors and tools without a network: `catgad schema > catgad.schema.json`,
then point `# yaml-language-server: $schema=` at that file.
"""

from __future__ import annotations

import argparse
import sys

from catgad import schema


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    subparsers.add_parser(
        "schema",
        help="print the JSON Schema of a config file",
        description="Print the JSON Schema (draft 2020-12) that a config is checked against, "
        f"the same document as published at {schema.URL}. Editors with yaml-language-server "
        "use it through a config's first line: `# yaml-language-server: $schema=URL-OR-FILE`.",
    )


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(schema.text())
    return 0
