"""The JSON Schema of a catgad config as the package ships it: what `catgad schema` prints.

catgad.app.schema gathers it from the config sections and `python -m
catgad.app.schema` writes it here; tests/config/test_config_schema.py fails
while this file and the assembled schema differ. Editors load the published
copy at URL (the schema's `$id`), named in each config's first line:
`# yaml-language-server: $schema=<URL>`.
"""

from __future__ import annotations

from importlib import resources

FILE_NAME = "catgad.schema.json"
URL = "https://catgad.dev/schemas/catgad.schema.json"


def text() -> str:
    """The shipped schema file's exact text (read from the installed package, not a checkout)."""
    return resources.files(__name__).joinpath(FILE_NAME).read_text(encoding="utf-8")
