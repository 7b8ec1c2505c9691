"""The YAML loader: positions, ${VAR} substitution, YAML 1.2 scalars, includes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from catgad.app.load import load_config
from catgad.config import loader
from catgad.config.loader import Document, format_path, load_document
from catgad.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "examples" / "orders.yaml"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def load(directory: Path, text: str, env: dict[str, str] | None = None) -> Document:
    return load_document(write(directory, "c.yaml", text), env or {})


def messages(document: Document) -> list[str]:
    return [str(issue) for issue in document.reporter.issues]


class TestEnvironment:
    def test_set_unset_default_and_escape(self, tmp_path: Path) -> None:
        document = load(
            tmp_path,
            """
            a: ${NAME}
            b: ${MISSING:-fallback}
            c: ${EMPTY:-used when empty}
            d: pre-${NAME}-post
            e: $${NAME} stays literal
            f: ${EMPTY}
            """,
            {"NAME": "orders", "EMPTY": ""},
        )
        assert messages(document) == []
        assert document.data == {
            "a": "orders",
            "b": "fallback",
            "c": "used when empty",
            "d": "pre-orders-post",
            "e": "${NAME} stays literal",
            "f": None,  # typed after substitution, like an empty plain scalar
        }

    def test_a_plain_scalar_is_typed_after_substitution(self, tmp_path: Path) -> None:
        document = load(
            tmp_path,
            """
            port: ${PORT}
            on: ${FLAG:-true}
            quoted: "${PORT}"
            mixed: ${PORT}${PORT}
            """,
            {"PORT": "8080"},
        )
        assert document.data == {"port": 8080, "on": True, "quoted": "8080", "mixed": 80808080}

    def test_unset_variable_names_variable_and_position(self, tmp_path: Path) -> None:
        document = load(tmp_path, "a: 1\nb:\n  c: x ${NOPE} y\n")
        assert messages(document) == [
            f"{tmp_path / 'c.yaml'}:3:6: b.c: environment variable NOPE is not set"
        ]

    def test_os_environ_is_the_default(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CATGAD_TEST_LISTEN", "0.0.0.0:9999")
        config = load_config(EXAMPLE.parent / "orders.yaml")
        monkeypatch.delenv("CATGAD_TEST_LISTEN")
        assert config.service.port == 8080  # the example reads CATGAD_LISTEN, not ours
        path = write(tmp_path, "c.yaml", "catgad: 1\nservice: {listen: '${CATGAD_TEST_L}'}\n")
        monkeypatch.setenv("CATGAD_TEST_L", "0.0.0.0:9999")
        assert load_config(path).service.port == 9999


class TestScalars:
    def test_yaml_1_2_core_schema(self, tmp_path: Path) -> None:
        document = load(
            tmp_path,
            """
            on: yes
            no: off
            date: 2024-01-01
            octal: 0o17
            hex: 0x1F
            leading_zero: 017
            float: 1.5e3
            inf: -.inf
            nothing: ~
            empty:
            bool: false
            1: number key
            """,
        )
        assert document.data == {
            "on": "yes",
            "no": "off",
            "date": "2024-01-01",
            "octal": 15,
            "hex": 31,
            "leading_zero": 17,
            "float": 1500.0,
            "inf": float("-inf"),
            "nothing": None,
            "empty": None,
            "bool": False,
            "1": "number key",
        }

    def test_merge_keys(self, tmp_path: Path) -> None:
        document = load(
            tmp_path,
            """
            x-base: &base {kind: webhook, timeout: 5}
            a:
              <<: *base
              timeout: 9
            """,
        )
        assert document.data["a"] == {"kind": "webhook", "timeout": 9}
        assert messages(document) == []

    def test_duplicate_keys_are_errors(self, tmp_path: Path) -> None:
        document = load(tmp_path, "a: 1\nb: 2\na: 3\n")
        assert document.data["a"] == 1
        assert messages(document) == [
            f"{tmp_path / 'c.yaml'}:3:1: a: duplicate key 'a' (first defined at line 1)"
        ]

    def test_syntax_error_has_a_position(self, tmp_path: Path) -> None:
        document = load(tmp_path, "a: [1, 2\nb: 3\n")
        assert not document.complete
        (issue,) = document.reporter.issues
        assert (issue.line, issue.column) == (2, 2)
        assert issue.message.startswith("invalid YAML: ")

    def test_missing_file(self, tmp_path: Path) -> None:
        document = load_document(tmp_path / "nope.yaml", {})
        assert not document.complete
        assert messages(document) == [
            f"{tmp_path / 'nope.yaml'}: <root>: cannot read config: file not found"
        ]


class TestIncludes:
    def test_sections_merge_and_lists_concatenate(self, tmp_path: Path) -> None:
        write(
            tmp_path,
            "parts/more.yaml",
            """
            include: [deeper.yaml]
            events:
              B: {}
            tests:
              - name: second
            """,
        )
        write(tmp_path, "parts/deeper.yaml", "events:\n  C: {}\ntests:\n  - name: third\n")
        document = load(
            tmp_path,
            """
            catgad: 1
            include: [parts/more.yaml]
            events:
              A: {}
            tests:
              - name: first
            """,
        )
        assert messages(document) == []
        assert list(document.data["events"]) == ["A", "B", "C"]
        assert [t["name"] for t in document.data["tests"]] == ["first", "second", "third"]
        assert "include" not in document.data
        assert document.files == [
            str(tmp_path / "c.yaml"),
            str(tmp_path / "parts/more.yaml"),
            str(tmp_path / "parts/deeper.yaml"),
        ]
        where = document.positions.value(("tests", 2, "name"))
        assert (where.file, where.line, where.column) == (
            str(tmp_path / "parts/deeper.yaml"),
            4,
            11,
        )
        assert document.positions.key(("events", "B")).file == str(tmp_path / "parts/more.yaml")

    def test_a_fragment_may_repeat_the_format_version(self, tmp_path: Path) -> None:
        write(tmp_path, "more.yaml", "catgad: 1\nevents: {B: {}}\n")
        document = load(tmp_path, "catgad: 1\ninclude: [more.yaml]\n")
        assert messages(document) == []

    def test_include_must_be_a_list(self, tmp_path: Path) -> None:
        document = load(tmp_path, "catgad: 1\ninclude: more.yaml\n")
        assert messages(document) == [
            f"{tmp_path / 'c.yaml'}:2:10: include: expected a list of file paths"
        ]


def test_format_path() -> None:
    assert format_path(()) == ""
    assert format_path(("commands", "PayOrder", "require", 0, "rule")) == (
        "commands.PayOrder.require[0].rule"
    )
    assert format_path(("events", "com.example.Paid")) == "events['com.example.Paid']"


def test_fast_and_pure_python_parsers_give_the_same_positions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast = load_document(EXAMPLE, {})
    monkeypatch.setattr(loader, "_FastLoader", loader._PyLoader)
    slow = load_document(EXAMPLE, {})
    assert fast.data == slow.data
    assert fast.positions.values == slow.positions.values
    assert fast.positions.keys == slow.positions.keys


def test_load_config_reports_loader_and_later_issues_together(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.yaml",
        """
        catgad: 1
        service:
          name: ${NAME}
          name: twice
        store: mysql
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert [f"{i.line}:{i.column}: {i.path}: {i.message}" for i in caught.value.issues] == [
        "3:9: service.name: environment variable NAME is not set",
        "4:3: service.name: duplicate key 'name' (first defined at line 3)",
        "5:8: store: expected one of memory, sqlite, postgres, redis, nats, got 'mysql'",
    ]


def test_issues_in_an_included_list_name_the_merged_path(tmp_path: Path) -> None:
    write(tmp_path, "more.yaml", "tests:\n  - name: two\n    when:\n      command: ${CMD}\n")
    path = write(tmp_path, "c.yaml", "catgad: 1\ninclude: [more.yaml]\ntests:\n  - name: one\n")
    document = load_document(path, {})
    assert messages(document) == [
        f"{tmp_path / 'more.yaml'}:4:16: tests[1].when.command: environment variable CMD is not set"
    ]
