"""The OpenAPI paths and schemas of the projection endpoints, one row schema per read model."""

from __future__ import annotations

from typing import Any

from catgad.model import Config
from catgad.projections.model import KEY_COLUMN, ColumnDef
from catgad.projections.section import PROJECTIONS

JSON = "application/json"
PROBLEM = "application/problem+json"
_TYPES = {
    "string": {"type": ["string", "null"]},
    "integer": {"type": ["integer", "null"]},
    "number": {"type": ["number", "null"]},
    "boolean": {"type": ["boolean", "null"]},
    "json": {},
}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _column(column: ColumnDef) -> dict[str, Any]:
    schema: dict[str, Any] = dict(_TYPES[column.type])
    if column.default is not None:
        schema["default"] = column.default
    if column.index:
        schema["description"] = "indexed: GET /read/{projection}?" + column.name + "=value"
    return schema


def projection_schemas(config: Config) -> dict[str, Any]:
    integer_or_null = {"type": ["integer", "null"]}
    schemas: dict[str, Any] = {
        "ProjectionStatus": {
            "type": "object",
            "required": ["name", "status", "enabled"],
            "properties": {
                "name": {"type": "string"},
                "status": {"enum": ["running", "stopped", "rebuilding", "failed"]},
                "enabled": {"type": "boolean"},
                "target": {"type": "object"},
                "checkpoint": integer_or_null,
                "head": {"type": "integer", "description": "newest position in the store"},
                "lag": {
                    "type": "object",
                    "properties": {
                        "events": integer_or_null,
                        "seconds": {"type": ["number", "null"]},
                    },
                },
                "owner": {"type": ["string", "null"], "description": "daemon holding the lease"},
                "active_here": {"type": "boolean"},
                "last_error": {"type": ["string", "null"]},
                "retrying": {"type": "boolean", "description": "target or store unreachable"},
                "rebuild": {
                    "type": "object",
                    "description": "progress, while rebuilding",
                    "properties": {
                        "position": {"type": "integer"},
                        "head": {"type": "integer"},
                        "percent": {"type": "number"},
                        "events_per_second": {"type": "number"},
                        "eta_seconds": {"type": ["number", "null"]},
                    },
                },
                "dead_letters": {"type": "object", "description": "open dead letters"},
            },
        },
        "ProjectionList": {
            "type": "object",
            "required": ["projections"],
            "properties": {
                "projections": {"type": "array", "items": _ref("schemas", "ProjectionStatus")}
            },
        },
        "ReplayResult": {
            "type": "object",
            "description": "What became of each open dead letter replayed.",
            "required": ["projection", "replayed", "failed"],
            "properties": {
                "projection": {"type": "string"},
                "replayed": {"type": "array", "items": _ref("schemas", "DeadLetter")},
                "failed": {
                    "type": "array",
                    "description": "still failing: open, with the new `reason`",
                    "items": _ref("schemas", "DeadLetter"),
                },
            },
        },
        "DeadLetter": {
            "type": "object",
            "required": ["id", "event_id", "event_type", "reason", "attempts"],
            "properties": {
                "id": {"type": "string"},
                "event_id": {"type": "string"},
                "event_type": {"type": "string"},
                "stream": {"type": ["string", "null"]},
                "position": integer_or_null,
                "reason": {"type": "string"},
                "attempts": {"type": "integer"},
                "time": {"type": ["string", "null"]},
            },
        },
        "ProjectionDisabledProblem": {
            "description": "projection-disabled: `enabled: false` in the config",
            "allOf": [
                _ref("schemas", "Problem"),
                {"type": "object", "properties": {"projection": {"type": "string"}}},
            ],
        },
        "ReadPage": {
            "type": "object",
            "required": ["projection", "rows", "next"],
            "properties": {
                "projection": {"type": "string"},
                "rows": {"type": "array", "items": {"type": "object"}},
                "next": {"type": ["string", "null"], "description": "URL of the next page"},
                "cursor": {"type": "string"},
            },
        },
    }
    for name, projection in sorted(PROJECTIONS.of(config).items()):
        if projection.target.has_table:
            properties = {KEY_COLUMN: {"type": "string"}}
            properties.update({c.name: _column(c) for c in projection.columns.values()})
            schemas[f"Row.{name}"] = {
                "type": "object",
                "description": projection.description or f"a row of {name}",
                "required": [KEY_COLUMN, *projection.columns],
                "properties": properties,
            }
    return schemas


def projection_paths(config: Config) -> dict[str, Any]:
    names = {"type": "string", "enum": sorted(PROJECTIONS.of(config))}
    name = {"name": "name", "in": "path", "required": True, "schema": names}
    status = {
        "description": "The projection's status.",
        "content": {JSON: {"schema": _ref("schemas", "ProjectionStatus")}},
    }
    not_found = _ref("responses", "NotFound")
    disabled = {
        "description": "The projection is disabled (`enabled: false` in the config).",
        "content": {PROBLEM: {"schema": _ref("schemas", "ProjectionDisabledProblem")}},
    }

    def control(verb: str, summary: str, ok: str) -> dict[str, Any]:
        return {
            "post": {
                "operationId": f"projections.{verb}",
                "tags": ["projections"],
                "summary": summary,
                "parameters": [name],
                "responses": {
                    ok: status,
                    "404": not_found,
                    "409": disabled,
                    "503": _ref("responses", "Unavailable"),
                },
            }
        }

    replay = control("replay", "Replay the open dead letters after a fix", "200")
    replay["post"]["responses"]["200"] = {
        "description": "What became of each dead letter.",
        "content": {JSON: {"schema": _ref("schemas", "ReplayResult")}},
    }
    replay["post"]["parameters"] = [
        name,
        {
            "name": "event_id",
            "in": "query",
            "schema": {"type": "string"},
            "description": "replay only the dead letter of this event",
        },
    ]
    skip = control("skip", "Close the open dead letters without applying them", "200")
    skip["post"]["parameters"] = [
        name,
        {
            "name": "event_id",
            "in": "query",
            "schema": {"type": "string"},
            "description": "skip only the dead letter of this event (404 when it is not open)",
        },
    ]
    skip["post"]["responses"]["200"] = {
        "description": "The dead letters closed, as `skipped: [...]`.",
        "content": {JSON: {}},
    }
    rebuild = control("rebuild", "Rebuild the read model beside the current one, then swap", "202")
    rebuild["post"]["responses"]["200"] = status | {"description": "Already rebuilding."}
    queryable = sorted(n for n, p in PROJECTIONS.of(config).items() if p.target.has_table)
    projection = {
        "name": "projection",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": queryable},
    }
    paths: dict[str, Any] = {
        "/projections": {
            "get": {
                "operationId": "projections.list",
                "tags": ["projections"],
                "summary": "Every projection's status, checkpoint and lag",
                "responses": {
                    "200": {
                        "description": "Statuses.",
                        "content": {JSON: {"schema": _ref("schemas", "ProjectionList")}},
                    }
                },
            }
        },
    }
    if not PROJECTIONS.of(config):  # no name to call the others with: each would be a 404
        return paths
    paths["/projections/{name}"] = {
        "get": {
            "operationId": "projections.get",
            "tags": ["projections"],
            "summary": "A projection's status, with its open dead letters",
            "parameters": [name],
            "responses": {"200": status, "404": not_found},
        }
    }
    paths["/projections/{name}/rebuild"] = rebuild
    paths["/projections/{name}/stop"] = control("stop", "Stop applying events", "200")
    paths["/projections/{name}/start"] = control(
        "start", "Apply events again (after a stop or a failure)", "200"
    )
    paths["/projections/{name}/replay"] = replay
    paths["/projections/{name}/skip"] = skip
    if not queryable:
        return paths
    paths["/read/{projection}"] = {
        "get": {
            "operationId": "read.find",
            "tags": ["read"],
            "summary": "Rows in key order, filtered on one indexed column (?column=value)",
            "parameters": [
                projection,
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 1000,
                        "default": 100,
                    },
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "schema": {"type": "string", "pattern": "^[^\\u0000]*$"},
                    "description": "`cursor` of the previous page: the key of its last row; "
                    "the page holds the rows after it in key order (a key holds no NUL)",
                },
            ],
            "responses": {
                "200": {
                    "description": "A page of rows.",
                    "content": {JSON: {"schema": _ref("schemas", "ReadPage")}},
                },
                "400": _ref("responses", "BadRequest"),
                "404": not_found,
                "409": disabled,
                "503": _ref("responses", "Unavailable"),
            },
        }
    }
    paths["/read/{projection}/{key}"] = {
        "get": {
            "operationId": "read.get",
            "tags": ["read"],
            "summary": "One row of a read model, by key",
            "parameters": [
                projection,
                {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {
                    "description": "The row (see Row.<projection> schemas).",
                    "content": {JSON: {"schema": {"type": "object"}}},
                },
                "404": not_found,
                "409": disabled,
                "503": _ref("responses", "Unavailable"),
            },
        }
    }
    return paths
