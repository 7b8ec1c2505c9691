"""One error tree: every error a user can meet is a class in catgad/errors.py, drawn in its
docstring with its status and type, and listed in docs/problems.md; the three stay equal."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import catgad
from catgad import errors

ROOT = Path(__file__).resolve().parents[2]
# a drawn line: the tree's branches, the class (and its data), then `NNN  slug` when shown
_LINE = re.compile(r"^    (?P<branches>[│├└─ ]*)(?P<name>[A-Z]\w+)(?:\([^)]*\))?(?P<rest>.*)$")


def _drawing() -> dict[str, tuple[str, str]]:
    """Each drawn class: (its parent in the drawing, the rest of its line)."""
    drawn: dict[str, tuple[str, str]] = {}
    parents: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        depth = len(match["branches"]) // 4
        parents = [*parents[:depth], match["name"]]
        drawn[match["name"]] = (parents[-2] if depth else "", match["rest"])
    return drawn


def test_every_error_class_lives_in_catgad_errors() -> None:
    for module in pkgutil.walk_packages(catgad.__path__, "catgad."):
        importlib.import_module(module.name)
    every: list[type[errors.CatgadError]] = []
    stack: list[type[errors.CatgadError]] = [errors.CatgadError]
    while stack:
        cls = stack.pop()
        every.append(cls)
        stack += cls.__subclasses__()
    # a routed problem keeps the kind it had where it ran: catgad.engine.routing makes a
    # RoutedProblem subclass per kind as they arrive
    made = [
        c for c in every if c.__name__.startswith("Routed_") and c.__module__.endswith("routing")
    ]
    elsewhere = [f"{c.__module__}.{c.__name__}" for c in every if c.__module__ != "catgad.errors"]
    assert sorted(elsewhere) == sorted(f"{c.__module__}.{c.__name__}" for c in made)


def test_the_drawing_is_the_tree() -> None:
    drawn = _drawing()
    classes = {cls.__name__: cls for cls in errors.subclasses()}
    assert set(drawn) == set(classes)
    for name, (parent, rest) in drawn.items():
        cls = classes[name]
        assert parent == ("" if cls is errors.CatgadError else cls.__mro__[1].__name__), name
        shown = re.search(r"\b(\d{3})  ([a-z-]+)", rest)
        if shown:
            assert (int(shown[1]), shown[2]) == (cls.status, cls.slug), name
        if "exit" in rest:
            assert f"exit {cls.exit_code}" in rest, name
        if "retryable" in rest:
            assert cls.retryable, name


def test_the_catalogue_is_generated_from_the_classes() -> None:
    published = (ROOT / "docs" / "problems.md").read_text(encoding="utf-8")
    assert published == errors.catalogue_markdown(), (
        'docs/problems.md is stale: python -c "from catgad.errors import catalogue_markdown; '
        "print(catalogue_markdown(), end='')\" > docs/problems.md"
    )
    rows = errors.catalogue()
    assert {row.name for row in rows} == {cls.__name__ for cls in errors.subclasses()}
    assert all(row.when for row in rows), [row.name for row in rows if not row.when]
    types = [row.type for row in rows]
    shared = {row.name for row in rows if types.count(row.type) > 1}
    # a webhook's failure is shown as its parent's; a routed problem carries the body it had
    assert shared == {"HandlerUnavailable", "WebhookFailed", "BusError", "RoutedProblem"}


def test_unavailable_is_a_dependency_error_and_the_bus_has_a_branch() -> None:
    assert issubclass(errors.Unavailable, errors.DependencyError)
    assert not issubclass(errors.Unavailable, errors.StoreError)
    assert issubclass(errors.BadBusReply, errors.BusError)
