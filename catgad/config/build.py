"""Turns a schema-valid config document into the model dataclasses, compiling CEL and schemas.

The document has already passed the JSON Schema, and each payload schema the
draft 2020-12 metaschema (catgad.config.check_document: `check_schema`, with
every error positioned), so shapes can be trusted here. What is left to fail is
CEL compilation and values the schema cannot judge (a port above 65535); those
are reported, and the rest of the model is still built so later checks can run.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator

from catgad.aggregates.payload import PayloadSchema
from catgad.bus.topics import COMMANDS_TOPIC, EVENTS_TOPIC, nats_overlap
from catgad.config.cel import CelCompileError, CelExpr
from catgad.config.loader import Path, Reporter, format_path
from catgad.config.model import (
    AggregateDef,
    AuthToken,
    BusConfig,
    CommandDef,
    Config,
    Emit,
    EventDef,
    ExpectedRejection,
    ExpectedRow,
    GivenEvent,
    HandlerConfig,
    ProjectionSettings,
    Requirement,
    RuntimeConfig,
    Scenario,
    ServiceConfig,
    StateRule,
    StoreConfig,
    UpcastStep,
    Where,
)
from catgad.processes.build import build_processes
from catgad.projections.build import build_projections
from catgad.sagas.build import build_sagas
from catgad.sagas.model import SagaSettings
from catgad.store.nats_codec import DEFAULT_SUBJECT_PREFIX


def _option(section: Any, key: str, default: str) -> str:
    """`section[key]` when `section` is a mapping holding a string there, else `default`."""
    value = section.get(key, default) if isinstance(section, dict) else default
    return value if isinstance(value, str) else default


# What the short forms (`store: redis`, `bus: nats`) connect to.
DEFAULT_URLS = {
    "postgres": "postgresql://127.0.0.1:5432/postgres",
    "redis": "redis://127.0.0.1:6379/0",
    "nats": "nats://127.0.0.1:4222",
    "kafka": "127.0.0.1:9092",
}
DEFAULT_SQLITE_PATH = "catgad.db"
_HANDLER_KEYS = ("kind", "url", "entry_point", "description")
_CEL_ERROR = re.compile(r"^Failed to parse expression .*?: ERROR: <input>:(\d+):(\d+): (.*)$", re.S)
_EXPECTING = re.compile(r"expecting \{[^}]*IDENTIFIER\}")

StoreKind = Literal["memory", "sqlite", "postgres", "redis", "nats"]
BusKind = Literal["memory", "nats", "kafka"]


@dataclass
class Built:
    """The model, plus each compiled CEL expression by document path (for the linter)."""

    config: Config
    exprs: dict[Path, CelExpr] = field(default_factory=dict)


def build(data: dict[str, Any], reporter: Reporter, path: str) -> Built:
    """Build the model from a (possibly pruned) schema-valid document."""
    return _Build(data, reporter, path).run()


def cel_source(value: Any) -> str:
    """The CEL text of a YAML scalar: `total: 0` was typed as int by YAML, but means CEL `0`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cel_message(error: CelCompileError) -> str:
    """The compiler's message without its noise: where in the expression, and what."""
    text = str(error)
    match = _CEL_ERROR.match(text)
    if match is None:
        return f"invalid CEL: {text}"
    line, column, what = match.groups()
    what = _EXPECTING.sub("expecting an expression", what.removeprefix("Syntax error: "))
    where = f"column {column}" if line == "1" else f"line {line}, column {column}"
    return f"invalid CEL at {where} of the expression: {what}"


def payload_validator(schema: dict[str, Any]) -> PayloadSchema:
    """A validator for command/event data; `format` is checked, as users expect."""
    return PayloadSchema(
        schema,
        cast(
            Validator,
            Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER),
        ),
    )


Leased = TypeVar("Leased", ProjectionSettings, SagaSettings)


class _Build:
    def __init__(self, data: dict[str, Any], reporter: Reporter, path: str) -> None:
        self.data = data
        self.reporter = reporter
        self.path = path
        self.exprs: dict[Path, CelExpr] = {}

    def run(self) -> Built:
        data = self.data
        config = Config(path=self.path, version=int(data.get("catgad", 1)))
        config.service = self._service(data.get("service") or {})
        config.store = self._store(data.get("store", "sqlite"))
        config.bus = self._bus(data.get("bus", "memory"))
        self._shared_nats(config.store, config.bus)
        for name, raw in (data.get("handlers") or {}).items():
            config.handlers[name] = self._handler(name, raw)
        for name, raw in (data.get("aggregates") or {}).items():
            config.aggregates[name] = self._aggregate(name, raw)
        for name, raw in (data.get("commands") or {}).items():
            config.commands[name] = self._command(name, raw)
        for name, raw in (data.get("events") or {}).items():
            config.events[name] = self._event(name, raw)
        for index, raw in enumerate(data.get("tests") or []):
            if raw is not None:  # None: pruned after a schema error
                config.tests.append(self._scenario(index, raw))
        config.projections = build_projections(
            data.get("projections") or {}, config.handlers, self._cel, self._where, self._file
        )
        config.runtime = self._runtime(data.get("runtime") or {})
        config.sagas = build_sagas(
            data.get("sagas") or {}, self._cel, self._where, payload_validator
        )
        config.processes = build_processes(data.get("processes") or {}, self._cel, self._where)
        return Built(config, self.exprs)

    def _where(self, path: Path) -> Where:
        mark = self.reporter.positions.key(path)
        return Where(mark.file, mark.line, mark.column, format_path(path))

    def _cel(self, value: Any, path: Path) -> CelExpr | None:
        try:
            expr = CelExpr(cel_source(value))
        except CelCompileError as exc:
            self.reporter.error(path, cel_message(exc))
            return None
        self.exprs[path] = expr
        return expr

    def _cel_map(self, raw: dict[str, Any] | None, path: Path) -> dict[str, CelExpr]:
        compiled = {}
        for name, value in (raw or {}).items():
            expr = self._cel(value, (*path, name))
            if expr is not None:
                compiled[name] = expr
        return compiled

    def _service(self, raw: dict[str, Any]) -> ServiceConfig:
        service = ServiceConfig(name=raw.get("name", "catgad"))
        listen = raw.get("listen")
        if listen is not None:
            host, _, port = str(listen).rpartition(":")
            if not host or not port.isdigit():  # the schema lets `${...}` through for editors
                self.reporter.error(
                    ("service", "listen"), "expected host:port, e.g. 127.0.0.1:8080"
                )
            elif int(port) > 65535:
                self.reporter.error(("service", "listen"), f"port {port} is above 65535")
            else:
                service.host = host.removeprefix("[").removesuffix("]")
                service.port = int(port)
        service.auth = self._tokens((raw.get("auth") or {}).get("tokens") or [])
        return service

    def _tokens(self, raw: list[dict[str, Any]]) -> list[AuthToken]:
        tokens: list[AuthToken] = []
        names: dict[str, int] = {}
        digests: dict[bytes, str] = {}
        for index, item in enumerate(raw):
            path: Path = ("service", "auth", "tokens", index)
            secret = str(item["secret"])
            if secret.startswith("sha256:"):
                hexed = secret.removeprefix("sha256:")
                if len(hexed) != 64 or any(c not in "0123456789abcdefABCDEF" for c in hexed):
                    self.reporter.error((*path, "secret"), "a sha256: secret is 64 hex digits")
                    continue
                digest = bytes.fromhex(hexed)
            elif not secret.strip():
                self.reporter.error((*path, "secret"), "the secret is empty (is its ${VAR} set?)")
                continue
            else:
                digest = hashlib.sha256(secret.encode()).digest()
            if item["name"] in names:
                first = names[item["name"]]
                self.reporter.error((*path, "name"), f"tokens[{first}] has this name too")
                continue
            if digest in digests:
                self.reporter.error(
                    (*path, "secret"), f"token {digests[digest]!r} has this secret too"
                )
                continue
            names[item["name"]] = index
            digests[digest] = item["name"]
            tokens.append(AuthToken(item["name"], digest, frozenset(item["scopes"])))
        return tokens

    def _store(self, raw: str | dict[str, Any]) -> StoreConfig:
        spec: dict[str, Any] = {"kind": raw} if isinstance(raw, str) else raw
        kind = spec.get("kind", "sqlite")
        store = StoreConfig(
            kind=cast(StoreKind, kind),
            url=spec.get("url", DEFAULT_URLS.get(kind)),
            synchronous=spec.get("synchronous", "full"),
            options=dict(spec.get("options") or {}),
        )
        if kind == "sqlite":
            store.path = self._file(spec.get("path", DEFAULT_SQLITE_PATH), ("store", "path"))
        else:
            self._unused(spec, ("path", "synchronous"), "store", "the sqlite store")
        if kind in ("memory", "sqlite"):
            self._unused(spec, ("url",), "store", "the postgres, redis and nats stores")
        return store

    def _runtime(self, raw: dict[str, Any]) -> RuntimeConfig:
        return RuntimeConfig(
            projections=self._leased(raw, "projections", ProjectionSettings()),
            sagas=self._leased(raw, "sagas", SagaSettings()),
            processes=self._leased(raw, "processes", SagaSettings()),
        )

    def _leased(self, raw: dict[str, Any], part: str, default: Leased) -> Leased:
        """`runtime.<part>`: a lease ttl and a poll interval, the interval below the ttl."""
        spec = raw.get(part) or {}
        settings = type(default)(
            lease_ttl=float(spec.get("lease_ttl", default.lease_ttl)),
            poll_interval=float(spec.get("poll_interval", default.poll_interval)),
        )
        if settings.poll_interval >= settings.lease_ttl:
            # a standby would look for work less often than a lease can lapse
            path: Path = ("runtime", part, "poll_interval")
            self.reporter.error(
                path, f"must be less than lease_ttl ({settings.lease_ttl:g} s)", at=path
            )
        return settings

    def _bus(self, raw: str | dict[str, Any]) -> BusConfig:
        spec: dict[str, Any] = {"kind": raw} if isinstance(raw, str) else raw
        kind = spec.get("kind", "memory")
        if kind == "memory":
            self._unused(spec, ("url",), "bus", "the nats and kafka buses")
        return BusConfig(
            kind=cast(BusKind, kind),
            url=spec.get("url", DEFAULT_URLS.get(kind)),
            options=dict(spec.get("options") or {}),
        )

    def _shared_nats(self, store: StoreConfig, bus: BusConfig) -> None:
        """A NATS store and a NATS bus on one server must not share subjects."""
        if store.kind != "nats" or bus.kind != "nats" or store.url != bus.url:
            return
        options = bus.options
        topics = [
            _option(options.get("relay"), "topic", EVENTS_TOPIC),
            _option(options.get("commands"), "topic", COMMANDS_TOPIC),
        ]
        subject_prefix = store.options.get("subject_prefix", DEFAULT_SUBJECT_PREFIX)
        prefix = options.get("prefix", "catgad")
        if not isinstance(subject_prefix, str) or not isinstance(prefix, str):
            return  # wrong types are reported where the options are checked
        clash = nats_overlap(subject_prefix, prefix, topics)
        if clash is not None:
            path: Path = ("store", "options", "subject_prefix")
            self.reporter.error(
                path if "subject_prefix" in store.options else ("store",),
                f"the nats store's subjects {subject_prefix}.> overlap those of the bus"
                f" topic {clash!r} ({prefix}.{clash}.>) on the same server, which JetStream"
                " refuses: choose another store.options.subject_prefix or bus.options.prefix",
            )

    def _unused(self, spec: dict[str, Any], keys: tuple[str, ...], section: str, by: str) -> None:
        for key in keys:
            if key in spec:
                path = (section, key)
                self.reporter.error(path, f"{key!r} is only used by {by}", at=path)

    def _file(self, value: str, path: Path) -> str:
        """A path relative to the file it was written in (the root config for defaults)."""
        if value == ":memory:" or os.path.isabs(value):
            return value
        written = self.reporter.positions.values.get(path)
        base = os.path.dirname(written.file if written else self.path)
        return os.path.normpath(os.path.join(os.path.abspath(base), value))

    def _handler(self, name: str, raw: dict[str, Any]) -> HandlerConfig:
        return HandlerConfig(
            name=name,
            kind=raw["kind"],
            url=raw.get("url"),
            entry_point=raw.get("entry_point"),
            options={k: v for k, v in raw.items() if k not in _HANDLER_KEYS},
            where=self._where(("handlers", name)),
            entry_point_where=self._where(("handlers", name, "entry_point"))
            if "entry_point" in raw
            else None,
        )

    def _aggregate(self, name: str, raw: dict[str, Any]) -> AggregateDef:
        base: Path = ("aggregates", name)
        rules = {}
        for event, rule in (raw.get("on") or {}).items():
            rule = rule or {}
            rules[event] = StateRule(
                event=event,
                set=self._cel_map(rule.get("set"), (*base, "on", event, "set")),
                unset=list(rule.get("unset") or []),
            )
        return AggregateDef(
            name=name,
            id_field=raw["id"],
            stream_prefix=raw.get("stream_prefix", name),
            initial=dict(raw.get("initial") or {}),
            on=rules,
            snapshot_every=(raw.get("snapshot") or {}).get("every"),
            where=self._where(base),
        )

    def _command(self, name: str, raw: dict[str, Any]) -> CommandDef:
        base: Path = ("commands", name)
        command = CommandDef(
            name=name,
            aggregate=raw["aggregate"],
            schema=raw["schema"],
            validator=payload_validator(raw["schema"]),
            handler=raw.get("handler"),
            description=raw.get("description"),
            where=self._where(base),
        )
        for index, item in enumerate(raw.get("require") or []):
            rule = self._cel(item["rule"], (*base, "require", index, "rule"))
            if rule is not None:
                message = item.get("message") or f"requirement failed: {rule.source}"
                command.require.append(Requirement(rule, message, index))
        for index, item in enumerate(raw.get("emit") or []):
            path: Path = (*base, "emit", index)
            when = self._cel(item["when"], (*path, "when")) if "when" in item else None
            data = self._cel_map(item.get("data"), (*path, "data"))
            command.emit.append(Emit(item["event"], data, when))
        return command

    def _event(self, name: str, raw: dict[str, Any]) -> EventDef:
        schema = raw.get("schema", {"type": "object"})
        return EventDef(
            name=name,
            schema=schema,
            validator=payload_validator(schema),
            version=raw.get("version", 1),
            description=raw.get("description"),
            where=self._where(("events", name)),
            upcasters={
                int(key): self._upcaster(name, key, step or {})
                for key, step in (raw.get("upcasters") or {}).items()
            },
        )

    def _upcaster(self, event: str, key: str, raw: dict[str, Any]) -> UpcastStep:
        path: Path = ("events", event, "upcasters", key)
        return UpcastStep(
            from_version=int(key),
            rename=dict(raw.get("rename") or {}),
            defaults=dict(raw.get("defaults") or {}),
            set=self._cel_map(raw.get("set"), (*path, "set")),
            remove=list(raw.get("remove") or []),
            handler=raw.get("handler"),
            where=self._where(path),
        )

    def _scenario(self, index: int, raw: dict[str, Any]) -> Scenario:
        then = raw["then"]
        rejected = then.get("rejected")
        when = raw.get("when") or {}
        rows = then.get("rows")
        return Scenario(
            name=raw["name"],
            given=_messages(raw.get("given")),
            command=when.get("command"),
            data=when.get("data") or {},
            expect_events=_messages(then["events"]) if "events" in then else None,
            expect_rejection=None
            if rejected is None
            else ExpectedRejection(rejected.get("status"), rejected.get("message")),
            expect_state=then.get("state"),
            where=self._where(("tests", index)),
            reply=when.get("reply"),
            expect_rows=None
            if rows is None
            else [self._expected_row(index, i, row) for i, row in enumerate(rows)],
        )

    def _expected_row(self, index: int, at: int, raw: dict[str, Any]) -> ExpectedRow:
        exact = "row" in raw
        return ExpectedRow(
            projection=raw["projection"],
            key=str(raw["key"]),
            fields=dict(raw["row"] if exact else raw.get("fields") or {}),
            exact=exact,
            absent=bool(raw.get("absent", False)),
            where=self._where(("tests", index, "then", "rows", at)),
        )


def _messages(raw: list[dict[str, Any]] | None) -> list[GivenEvent]:
    return [
        GivenEvent(item["type"], item.get("data") or {}, item.get("version"), item.get("stream"))
        for item in raw or []
    ]
