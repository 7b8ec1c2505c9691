"""The suite's own rules: one import style, one way to wait, one rule for a missing server.

tests/support has what the suites share; these checks keep copies from coming
back: no relative or short (`from helpers...`) imports of test modules, no
second `free_port` or `CI` check, and no skip outside the allowed ones: a
missing server goes through tests.support.ci.needed, which fails under CI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.ci import in_ci, needed
from tests.support.waiting import eventually, eventually_async

TESTS = Path(__file__).resolve().parents[1]
PACKAGES = {p.name for p in TESTS.iterdir() if (p / "__init__.py").exists()}
NOT_OURS = {"http", "bench"}  # the stdlib's http and the repository's bench share a name
# skips that are not about a missing server: a capability a backend lacks, a platform
ALLOWED_SKIPS = {
    "contracts/bus.py": "a bus lacking a Capability",
    "contracts/store.py": "a store that cannot rewrite events",
    "evolution/test_migrate_backends.py": "a store that cannot rewrite events",
    "handlers/test_webhook_faults.py": "uvloop does not run on Windows",
    "support/ci.py": "the one rule itself",
    "deploy/conftest.py": "the deploy tools (a pip extra) are installed by CI's deploy block,"
    " which runs tests/deploy with CATGAD_DEPLOY_CHECKS=1 and fails when one is missing",
    "structure/test_test_support.py": "the checks of the rule",
}


def modules() -> list[tuple[str, ast.Module]]:
    return [
        (path.relative_to(TESTS).as_posix(), ast.parse(path.read_text(), str(path)))
        for path in sorted(TESTS.rglob("*.py"))
    ]


def test_test_modules_are_imported_one_way() -> None:
    bad = []
    for name, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                bad.append(f"{name}:{node.lineno} relative import")
            elif isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [
                    a.name for a in node.names
                ]  # fmt: skip
                bad += [
                    f"{name}:{node.lineno} {n} (write tests.{n})"
                    for n in names
                    if n.split(".")[0] in PACKAGES - NOT_OURS
                ]
    assert not bad, "import test modules as `from tests.x import y`:\n" + "\n".join(bad)


def test_no_helper_is_written_twice_and_nothing_skips_for_a_missing_server() -> None:
    bad = []
    for name, tree in modules():
        if name.startswith("support/") or name == "structure/test_test_support.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in ("free_port", "port_open"):
                bad.append(f"{name}:{node.lineno} def {node.name} (tests.support.ports has it)")
            if isinstance(node, ast.Constant) and node.value == "CI":
                bad.append(f"{name}:{node.lineno} reads CI (tests.support.ci.in_ci)")
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("skip", "importorskip", "skipif")
                and isinstance(node.value, ast.Name | ast.Attribute)
                and name not in ALLOWED_SKIPS
            ):
                bad.append(f"{name}:{node.lineno} {node.attr} (tests.support.ci.needed)")
    assert not bad, "\n".join(bad)


def test_needed_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, ci in (("true", True), ("TRUE", True), ("1", True), ("", False), ("false", False)):
        monkeypatch.setenv("CI", value)
        assert in_ci() is ci
        outcome = pytest.fail.Exception if ci else pytest.skip.Exception
        with pytest.raises(outcome, match="Redis server needed: none at 6379"):
            needed("Redis server", "none at 6379")


def test_eventually_returns_the_value_or_says_what_it_waited_for() -> None:
    calls = iter([0, None, "", "done"])
    assert eventually(lambda: next(calls), 5, "a value", interval=0) == "done"
    with pytest.raises(AssertionError, match=r"waiting for the moon \(last seen: 0\)"):
        eventually(lambda: 0, 0.05, "the moon", interval=0.01)


async def test_eventually_async_awaits_and_retries_the_given_errors() -> None:
    tries = []

    async def flaky() -> int:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError("not yet")
        return len(tries)

    assert await eventually_async(flaky, 5, "3 tries", interval=0, retry_on=(ConnectionError,)) == 3

    async def never() -> int:
        raise ConnectionError("not yet")

    with pytest.raises(AssertionError, match=r"waiting for nothing.*not yet"):
        await eventually_async(never, 0.05, "nothing", interval=0.01, retry_on=(ConnectionError,))
