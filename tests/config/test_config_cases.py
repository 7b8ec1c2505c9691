"""The broken-config corpus: each cases/NN-name.yaml must produce exactly its .expected lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from catgad.app.load import load_config
from catgad.errors import ConfigError

CASES = Path(__file__).parent / "cases"
CASE_FILES = sorted(p for p in CASES.glob("[0-9][0-9]-*.yaml"))


def test_the_corpus_is_complete() -> None:
    assert len(CASE_FILES) >= 30
    missing = [p.name for p in CASE_FILES if not p.with_suffix(".expected").exists()]
    assert not missing, f"cases without an .expected file: {missing}"
    orphans = [p.name for p in CASES.glob("*.expected") if not p.with_suffix(".yaml").exists()]
    assert not orphans


@pytest.mark.parametrize("case", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_broken_config_reports_exactly(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Run from the cases directory so messages name files as the .expected files do.
    monkeypatch.chdir(CASES)
    with pytest.raises(ConfigError) as caught:
        load_config(case.name, env={})
    got = [str(issue) for issue in caught.value.issues]
    assert got == case.with_suffix(".expected").read_text(encoding="utf-8").splitlines()


def test_several_errors_are_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CASES)
    with pytest.raises(ConfigError) as caught:
        load_config("22-several-errors.yaml", env={})
    assert len(caught.value.issues) >= 3
    assert len({issue.line for issue in caught.value.issues}) == len(caught.value.issues)


def test_issues_are_machine_readable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CASES)
    with pytest.raises(ConfigError) as caught:
        load_config("12-unknown-data-field.yaml", env={})
    (issue,) = caught.value.problem()["errors"]
    assert issue == {
        "file": "12-unknown-data-field.yaml",
        "line": 26,
        "column": 15,
        "path": "commands.PayOrder.require[0].rule",
        "message": "unknown field 'amout' (did you mean 'amount'?)",
    }
