"""Every relative link in README.md and docs/ points at a file that exists (the README's
reference moved to docs/; a moved page must not leave a dead link behind)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.docs.sessions import PAGES, REPO

LINK = re.compile(r"\]\(([^)\s]+)\)")


def dead_links(page: Path) -> list[str]:
    text = re.sub(r"(?s)```.*?```", "", page.read_text())  # code is not a link
    dead = []
    for target in LINK.findall(text):
        if re.match(r"(https?:|mailto:|#)", target):
            continue
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            dead.append(target)
    return dead


def test_no_dead_relative_links() -> None:
    found = {str(p.relative_to(REPO)): dead_links(p) for p in PAGES}
    assert not {page: dead for page, dead in found.items() if dead}


def test_the_link_check_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("[gone](nowhere.md) [here](page.md#top) [web](https://catgad.dev)\n")
    assert dead_links(page) == ["nowhere.md"]
