"""The SQL both table targets run (SQLite and PostgreSQL), built once per projection.

Rows live in a table named after the projection (`"key"` primary key plus one
column per declared column); every target's checkpoints live in one table,
catgad_projections, one row per projection, so a read-model change and its
checkpoint commit together. A rebuild fills `<table>__rebuild` and its
checkpoint `rebuild_position`, then the swap drops the old table and renames
the shadow, in one transaction. Indexes get unique names (`ix_<hex>`) because
SQLite has no ALTER INDEX ... RENAME: a renamed table keeps its index names.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from catgad.projections.mapping import Op
from catgad.projections.model import KEY_COLUMN, ColumnDef, ColumnType, ProjectionDef
from catgad.projections.targets.protocol import Row

META_TABLE = "catgad_projections"
SHADOW_SUFFIX = "__rebuild"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    param: str  # placeholder: ? or %s
    types: dict[ColumnType, str]
    true: str  # literal of true in DDL defaults
    false: str
    encode_json: Callable[[Any], Any]
    decode_json: Callable[[Any], Any]
    decode_bool: Callable[[Any], Any]


def _loads(value: Any) -> Any:
    return None if value is None else orjson.loads(value)


SQLITE = Dialect(
    name="sqlite",
    param="?",
    types={
        "string": "TEXT",
        "integer": "INTEGER",
        "number": "REAL",
        "boolean": "INTEGER",
        "json": "TEXT",
    },
    true="1",
    false="0",
    encode_json=lambda v: None if v is None else orjson.dumps(v).decode(),
    decode_json=_loads,
    decode_bool=lambda v: None if v is None else bool(v),
)


def literal(dialect: Dialect, column: ColumnDef) -> str:
    """The column's default as an SQL literal (DDL takes no parameters)."""
    value = column.default
    if value is None:
        return "NULL"
    if column.type == "boolean":
        return dialect.true if value else dialect.false
    if column.type == "json":
        value = orjson.dumps(value).decode()
    if isinstance(value, str):
        text = "'" + value.replace("'", "''") + "'"
        return text + ("::jsonb" if column.type == "json" and dialect.name == "postgres" else "")
    return repr(float(value)) if column.type == "number" else str(int(value))


class Statements:
    """Every statement of one projection on one dialect, for its live table or its shadow."""

    def __init__(
        self, projection: ProjectionDef, dialect: Dialect, table: str, schema: str | None = None
    ) -> None:
        self.projection = projection
        self.dialect = dialect
        self.columns = list(projection.columns.values())
        self.names = [c.name for c in self.columns]
        self.base = table
        self.schema = schema
        self.meta = self.qualified(META_TABLE)
        self._encoders = [self._encoder(c) for c in self.columns]
        self._decoders = [self._decoder(c) for c in self.columns]
        self._defaults = [
            c.default if enc is None else enc(c.default)
            for enc, c in zip(self._encoders, self.columns, strict=True)
        ]
        self._index = {name: at for at, name in enumerate(self.names)}
        self._upserts: dict[tuple[bool, tuple[str, ...]], str] = {}
        self._updates: dict[tuple[bool, tuple[str, ...]], tuple[str, list[Any]]] = {}
        self._deletes = {
            shadow: f"DELETE FROM {self.qualified(self.table(shadow))} "
            f"WHERE {quote(KEY_COLUMN)} = {dialect.param}"
            for shadow in (False, True)
        }

    def qualified(self, name: str) -> str:
        return f"{quote(self.schema)}.{quote(name)}" if self.schema else quote(name)

    def table(self, shadow: bool) -> str:
        return self.base + SHADOW_SUFFIX if shadow else self.base

    # -- schema -------------------------------------------------------------------------------

    def meta_ddl(self) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {self.meta} ("
            "name TEXT PRIMARY KEY, position BIGINT NOT NULL DEFAULT 0, "
            "state TEXT NOT NULL DEFAULT 'running', error TEXT, rebuild_position BIGINT)"
        )

    def column_ddl(self, column: ColumnDef) -> str:
        sql = f"{quote(column.name)} {self.dialect.types[column.type]}"
        return (
            sql + f" DEFAULT {literal(self.dialect, column)}" if column.default is not None else sql
        )

    def table_ddl(self, shadow: bool) -> str:
        parts = [f"{quote(KEY_COLUMN)} TEXT PRIMARY KEY", *map(self.column_ddl, self.columns)]
        return (
            f"CREATE TABLE IF NOT EXISTS {self.qualified(self.table(shadow))} ({', '.join(parts)})"
        )

    def add_column(self, shadow: bool, column: ColumnDef) -> str:
        return (
            f"ALTER TABLE {self.qualified(self.table(shadow))} ADD COLUMN {self.column_ddl(column)}"
        )

    def index_ddl(self, shadow: bool, column: str) -> str:
        name = "ix_" + uuid.uuid4().hex[:16]
        table = self.qualified(self.table(shadow))
        return f"CREATE INDEX {quote(name)} ON {table} ({quote(column)}, {quote(KEY_COLUMN)})"

    # -- checkpoint ---------------------------------------------------------------------------

    def position_column(self, shadow: bool) -> str:
        return "rebuild_position" if shadow else "position"

    def read_meta(self) -> str:
        p = self.dialect.param
        return f"SELECT position, state, error, rebuild_position FROM {self.meta} WHERE name = {p}"

    def insert_meta(self) -> str:
        p = self.dialect.param
        return f"INSERT INTO {self.meta} (name) VALUES ({p}) ON CONFLICT (name) DO NOTHING"

    def move_checkpoint(self, shadow: bool) -> str:
        """UPDATE ... WHERE position = after: one row changed, or the writer was fenced."""
        column = self.position_column(shadow)
        p = self.dialect.param
        return f"UPDATE {self.meta} SET {column} = {p} WHERE name = {p} AND {column} = {p}"

    # -- rows ---------------------------------------------------------------------------------

    def grouped(self, ops: Sequence[Op], shadow: bool) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """Runs of operations with the same statement, for executemany, in order."""
        out: list[tuple[str, list[tuple[Any, ...]]]] = []
        for op in ops:
            made = self._statement(op, shadow)
            if made is None:
                continue
            sql, params = made
            if out and out[-1][0] == sql:
                out[-1][1].append(params)
            else:
                out.append((sql, [params]))
        return out

    def _statement(self, op: Op, shadow: bool) -> tuple[str, tuple[Any, ...]] | None:
        if op.kind == "delete":
            return self._deletes[shadow], (op.key,)
        names = tuple(op.fields)
        if op.kind == "update":
            if not names:
                return None
            made = self._updates.get((shadow, names))
            if made is None:
                made = self._updates[(shadow, names)] = self._update_plan(shadow, names)
            sql, encoders = made
            values = [
                v if e is None else e(v) for v, e in zip(op.fields.values(), encoders, strict=True)
            ]
            values.append(op.key)
            return sql, tuple(values)
        upsert = self._upserts.get((shadow, names))
        if upsert is None:
            upsert = self._upserts[(shadow, names)] = self._upsert_sql(
                self.qualified(self.table(shadow)), names
            )
        row = [op.key, *self._defaults]
        index = self._index
        for name, value in op.fields.items():
            at = index[name]
            encoder = self._encoders[at]
            row[at + 1] = value if encoder is None else encoder(value)
        return upsert, tuple(row)

    def _update_plan(self, shadow: bool, names: tuple[str, ...]) -> tuple[str, list[Any]]:
        p = self.dialect.param
        sets = ", ".join(f"{quote(n)} = {p}" for n in names)
        table = self.qualified(self.table(shadow))
        sql = f"UPDATE {table} SET {sets} WHERE {quote(KEY_COLUMN)} = {p}"
        return sql, [self._encoders[self._index[n]] for n in names]

    def _upsert_sql(self, table: str, names: tuple[str, ...]) -> str:
        p = self.dialect.param
        columns = ", ".join(quote(n) for n in (KEY_COLUMN, *self.names))
        values = ", ".join([p] * (1 + len(self.names)))
        sql = f"INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT ({quote(KEY_COLUMN)})"
        if not names:
            return sql + " DO NOTHING"
        sets = ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in names)
        return f"{sql} DO UPDATE SET {sets}"

    def select(self, shadow: bool, where: str) -> str:
        columns = ", ".join(quote(n) for n in (KEY_COLUMN, *self.names))
        return f"SELECT {columns} FROM {self.qualified(self.table(shadow))} WHERE {where}"

    def by_keys(self, shadow: bool, count: int) -> str:
        marks = ", ".join([self.dialect.param] * count)
        return self.select(shadow, f"{quote(KEY_COLUMN)} IN ({marks})")

    def by_key(self) -> str:
        return self.select(False, f"{quote(KEY_COLUMN)} = {self.dialect.param}")

    def find(self, column: str | None, after: bool) -> str:
        p = self.dialect.param
        conditions = [f"{quote(column)} = {p}"] if column else []
        if after:
            conditions.append(f"{quote(KEY_COLUMN)} > {p}")
        where = " AND ".join(conditions) or "1 = 1"
        return f"{self.select(False, where)} ORDER BY {quote(KEY_COLUMN)} LIMIT {p}"

    def find_params(
        self, column: str | None, value: Any, after: str | None, limit: int
    ) -> tuple[Any, ...]:
        params: list[Any] = []
        if column:
            encoder = self._encoders[self._index[column]]
            params.append(value if encoder is None else encoder(value))
        if after is not None:
            params.append(after)
        return (*params, limit)

    def decode(self, record: Sequence[Any]) -> Row:
        """A selected record as a row: key first, then each column, typed."""
        row: Row = {KEY_COLUMN: record[0]}
        for name, dec, value in zip(self.names, self._decoders, record[1:], strict=True):
            row[name] = dec(value)
        return row

    def _encoder(self, column: ColumnDef) -> Callable[[Any], Any] | None:
        """How a value is passed as a parameter; None: as it is."""
        if column.type == "json":
            return self.dialect.encode_json
        if column.type == "boolean" and self.dialect.name == "sqlite":
            return lambda v: None if v is None else int(v)
        return None

    def _decoder(self, column: ColumnDef) -> Callable[[Any], Any]:
        if column.type == "json":
            return self.dialect.decode_json
        if column.type == "boolean":
            return self.dialect.decode_bool
        if column.type == "number":
            return lambda v: None if v is None else float(v)
        return lambda v: v
