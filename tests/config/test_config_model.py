"""What load_config builds: the example's model, defaults, short forms, compiled rules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from catgad.app.load import load_config
from catgad.config.cel import CelExpr
from catgad.errors import ConfigError
from catgad.processes.section import PROCESSES
from catgad.projections.section import PROJECTIONS
from catgad.sagas.section import SAGAS
from catgad.testing.section import TESTS

EXAMPLES = Path(__file__).resolve().parents[2] / "config" / "examples"
ORDERS = EXAMPLES / "orders.yaml"

MINIMAL = """
catgad: 1
aggregates:
  Counter:
    id: counter_id
    stream_prefix: counter
    initial: {count: 0, open: true}
    on:
      Incremented:
        set: {count: state.count + data.by}
      Closed:
        set: {open: false}
        unset: [count]
commands:
  Increment:
    aggregate: Counter
    schema:
      type: object
      required: [counter_id, by]
      properties: {counter_id: {type: string}, by: {type: integer, minimum: 1}}
    require:
      - rule: state.open
    emit:
      - event: Incremented
        when: data.by > 0
        data: {counter_id: data.counter_id, by: data.by}
  Close:
    aggregate: Counter
    handler: closer
    schema:
      type: object
      required: [counter_id]
      properties: {counter_id: {type: string, format: email}}
events:
  Incremented:
    version: 2
    schema: {type: object, properties: {counter_id: {type: string}, by: {type: integer}}}
  Closed: {}
handlers:
  closer:
    kind: webhook
    url: https://example.com/close
    secret: ${SECRET:-s3cret}
    timeout: 2.5
    retries: 3
    circuit_breaker: {failures: 5, reset_after: 30}
  planner:
    kind: plugin
    entry_point: planner
projections:
  by_count:
    key: data.counter_id
    columns: {total: {type: integer, default: 0}}
    on: {Incremented: {upsert: {total: row.total + data.by}}}
"""


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


class TestOrdersExample:
    def test_shape(self) -> None:
        config = load_config(ORDERS, env={})
        assert config.path == str(ORDERS)
        assert (config.service.name, config.service.host, config.service.port) == (
            "orders",
            "127.0.0.1",
            8080,
        )
        assert config.store.kind == "sqlite"
        assert config.store.path == str(EXAMPLES / "orders.db")  # beside the config file
        assert config.store.synchronous == "full"
        assert config.bus.kind == "memory"
        order = config.aggregates["Order"]
        assert (order.id_field, order.stream_prefix, order.snapshot_every) == (
            "order_id",
            "Order",
            50,
        )
        assert order.initial == {"status": "none", "total": 0}
        assert order.stream_id("o1") == "Order-o1"
        assert list(config.commands) == [
            "CreateOrder",
            "PayOrder",
            "ShipOrder",
            "CancelOrder",
            "ApplyDiscount",
            "AddGiftNote",
        ]
        assert list(config.events) == [
            "OrderCreated",
            "OrderPaid",
            "OrderShipped",
            "OrderCancelled",
            "DiscountApplied",
            "GiftNoteAdded",
        ]
        assert len(TESTS.of(config)) == 19
        assert SAGAS.of(config) == {} and PROCESSES.of(config) == {}
        assert order.where is not None and (order.where.line, order.where.path) == (
            19,
            "aggregates.Order",
        )

    def test_environment_overrides(self, tmp_path: Path) -> None:
        env = {"CATGAD_LISTEN": "0.0.0.0:9090", "CATGAD_SQLITE_PATH": str(tmp_path / "x.db")}
        config = load_config(ORDERS, env=env)
        assert (config.service.host, config.service.port) == ("0.0.0.0", 9090)
        assert config.store.path == str(tmp_path / "x.db")

    def test_rules_are_compiled_and_evaluate(self) -> None:
        config = load_config(ORDERS, env={})
        pay = config.commands["PayOrder"]
        assert [r.index for r in pay.require] == [0, 1, 2]
        assert pay.require[2].message == "amount must equal the order total"
        rule = pay.require[2].rule
        assert isinstance(rule, CelExpr)
        data = {"order_id": "o1", "amount": 2500}
        activation = {"data": data, "state": {"total": 2500}, "version": 1}
        assert rule.evaluate(activation) is True
        assert rule.evaluate({**activation, "data": {**data, "amount": 1}}) is False
        (emit,) = pay.emit
        assert emit.event == "OrderPaid" and emit.when is None
        assert {k: v.evaluate(activation) for k, v in emit.data.items()} == data
        total = config.aggregates["Order"].on["OrderCreated"].set["total"]
        items = [{"sku": "a", "qty": 2, "price": 1250}, {"sku": "b", "qty": 1, "price": 5}]
        assert total.evaluate({"data": {"items": items}, "state": {}, "event": {}}) == 2505

    def test_payload_validators(self) -> None:
        config = load_config(ORDERS, env={})
        create = config.commands["CreateOrder"].validator
        assert create.is_valid(
            {"order_id": "o1", "customer": "a", "items": [{"sku": "x", "qty": 1, "price": 0}]}
        )
        assert not create.is_valid({"order_id": "o1", "customer": "a", "items": []})
        assert config.events["OrderPaid"].version == 1
        assert config.events["OrderPaid"].validator.is_valid({"order_id": "o1", "amount": 3})

    def test_scenarios(self) -> None:
        tests = TESTS.of(load_config(ORDERS, env={}))
        first, second = tests[0], tests[1]
        assert first.command == "CreateOrder" and first.given == []
        assert first.expect_events is not None and first.expect_events[0].type == "OrderCreated"
        assert first.expect_state == {"status": "created", "total": 2500}
        assert second.expect_rejection is not None
        assert (second.expect_rejection.status, second.expect_rejection.message) == (
            422,
            "order already exists",
        )
        assert second.given[0].data["customer"] == "alice"
        assert second.where is not None and second.where.file.endswith("orders.tests.yaml")
        refused = tests[13]  # a payload that breaks the schema
        assert refused.expect_rejection is not None and refused.expect_rejection.message is None
        read = tests[14]  # the first read-model scenario: no command, a whole row
        assert read.command is None and [g.type for g in read.given][-1] == "OrderShipped"
        assert read.expect_rows is not None
        (row,) = read.expect_rows
        assert (row.projection, row.key, row.exact, row.absent) == ("orders", "o1", True, False)
        assert row.fields == {"customer": "alice", "status": "shipped", "total": 2500,
                              "tracking": "TRK1"}  # fmt: skip
        assert tests[17].given[1].stream == "Order-o2"


class TestMinimal:
    def test_model(self, tmp_path: Path) -> None:
        config = load_config(write(tmp_path, MINIMAL), env={})
        counter = config.aggregates["Counter"]
        assert counter.stream_id("c1") == "counter-c1"
        assert counter.snapshot_every is None
        assert counter.on["Closed"].unset == ["count"]
        # YAML typed `false` as a boolean; it is the CEL literal false
        assert counter.on["Closed"].set["open"].source == "false"
        increment = config.commands["Increment"]
        assert increment.require[0].message == "requirement failed: state.open"
        assert increment.emit[0].when is not None and increment.emit[0].when.source == "data.by > 0"
        close = config.commands["Close"]
        assert close.handler == "closer" and close.emit == [] and close.require == []
        assert not close.validator.is_valid({"counter_id": "not an email"})  # formats checked
        assert config.events["Incremented"].version == 2
        assert config.events["Closed"].schema == {"type": "object"}
        closer = config.handlers["closer"]
        assert (closer.kind, closer.url) == ("webhook", "https://example.com/close")
        assert closer.options == {
            "secret": "s3cret",
            "timeout": 2.5,
            "retries": 3,
            "circuit_breaker": {"failures": 5, "reset_after": 30},
        }
        assert config.handlers["planner"].entry_point == "planner"
        assert SAGAS.of(config) == {} and PROCESSES.of(config) == {}
        by_count = PROJECTIONS.of(config)["by_count"]
        assert (by_count.target.kind, by_count.target.table) == ("sqlite", "by_count")
        assert by_count.events == ["Incremented"] and by_count.reads_rows

    def test_defaults(self, tmp_path: Path) -> None:
        config = load_config(write(tmp_path, "catgad: 1\n"), env={})
        assert (config.service.name, config.service.host, config.service.port) == (
            "catgad",
            "127.0.0.1",
            8080,
        )
        assert config.store.kind == "sqlite"
        assert config.store.path == str(tmp_path / "catgad.db")
        assert config.bus.kind == "memory" and config.bus.url is None

    @pytest.mark.parametrize(
        ("store", "kind", "url"),
        [
            ("memory", "memory", None),
            ("redis", "redis", "redis://127.0.0.1:6379/0"),
            ("nats", "nats", "nats://127.0.0.1:4222"),
            ("postgres", "postgres", "postgresql://127.0.0.1:5432/postgres"),
            ("{kind: redis, url: 'redis://cache:6380/1'}", "redis", "redis://cache:6380/1"),
        ],
    )
    def test_store_forms(self, tmp_path: Path, store: str, kind: str, url: str | None) -> None:
        config = load_config(write(tmp_path, f"catgad: 1\nstore: {store}\n"), env={})
        assert (config.store.kind, config.store.url, config.store.path) == (kind, url, None)

    def test_sqlite_long_form(self, tmp_path: Path) -> None:
        text = "catgad: 1\nstore: {path: data/ev.db, synchronous: normal, options: {readers: 2}}\n"
        store = load_config(write(tmp_path, text), env={}).store
        assert (store.kind, store.path, store.synchronous) == (
            "sqlite",
            str(tmp_path / "data/ev.db"),
            "normal",
        )
        assert store.options == {"readers": 2}
        memory = load_config(write(tmp_path, "catgad: 1\nstore: {path: ':memory:'}\n"), env={})
        assert memory.store.path == ":memory:"

    @pytest.mark.parametrize(
        ("bus", "kind", "url"),
        [
            ("kafka", "kafka", "127.0.0.1:9092"),
            ("{kind: nats, url: 'nats://n:1'}", "nats", "nats://n:1"),
        ],
    )
    def test_bus_forms(self, tmp_path: Path, bus: str, kind: str, url: str) -> None:
        config = load_config(write(tmp_path, f"catgad: 1\nbus: {bus}\n"), env={})
        assert (config.bus.kind, config.bus.url) == (kind, url)

    def test_ipv6_listen(self, tmp_path: Path) -> None:
        config = load_config(write(tmp_path, "catgad: 1\nservice: {listen: '[::1]:0'}\n"), env={})
        assert (config.service.host, config.service.port) == ("::1", 0)

    def test_included_store_path_is_relative_to_its_file(self, tmp_path: Path) -> None:
        (tmp_path / "sub").mkdir()
        write(tmp_path, "store: {path: here.db}\n", "sub/store.yaml")
        config = load_config(write(tmp_path, "catgad: 1\ninclude: [sub/store.yaml]\n"), env={})
        assert config.store.path == str(tmp_path / "sub" / "here.db")

    def test_x_keys_are_ignored(self, tmp_path: Path) -> None:
        text = "catgad: 1\nx-defaults: &d {kind: memory}\nstore: *d\n"
        assert load_config(write(tmp_path, text), env={}).store.kind == "memory"

    def test_unknown_variable_in_on_rule_uses_event_root(self, tmp_path: Path) -> None:
        text = MINIMAL.replace("state.count + data.by", "state.count + event.data.by")
        assert load_config(write(tmp_path, text), env={})  # `event` is known in state rules
        text = MINIMAL.replace("state.count + data.by", "state.count + data.bye")
        with pytest.raises(ConfigError) as caught:
            load_config(write(tmp_path, text), env={})
        (issue,) = caught.value.issues
        assert (issue.path, issue.message) == (
            "aggregates.Counter.on.Incremented.set.count",
            "unknown field 'bye' (did you mean 'by'?)",
        )
