"""The OpenAPI 3.1 document of a service, generated from its config once at start-up."""

from __future__ import annotations

import copy
from typing import Any

from catgad import __version__
from catgad.http.openapi_inbox import inbox_paths, inbox_schemas
from catgad.http.openapi_projections import projection_paths, projection_schemas
from catgad.model import Config
from catgad.reactors.feature import reactors_of

PROBLEM = "application/problem+json"
JSON = "application/json"
CLOUDEVENTS = "application/cloudevents+json"


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _rebased(node: Any, base: str) -> Any:
    """A copy of `node` whose local refs (`#/$defs/x`) point into the document at `base`."""
    if isinstance(node, dict):
        out = {k: _rebased(v, base) for k, v in node.items()}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            out["$ref"] = base + ref[1:]
        return out
    if isinstance(node, list):
        return [_rebased(v, base) for v in node]
    return node


def _embedded(schema: dict[str, Any], component: str) -> dict[str, Any]:
    """A user's schema placed under components; its own `#/...` refs keep their meaning."""
    if "$id" in schema:  # refs resolve against its own $id: leave them alone
        return copy.deepcopy(schema)
    pointer = component.replace("~", "~0").replace("/", "~1")
    rebased: dict[str, Any] = _rebased(schema, f"#/components/schemas/{pointer}")
    return rebased


def _problem(extra: dict[str, Any] | None = None, description: str = "") -> dict[str, Any]:
    if extra is None:
        return _ref("schemas", "Problem")
    return {
        "description": description,
        "allOf": [_ref("schemas", "Problem"), {"type": "object", "properties": extra}],
    }


def _schemas() -> dict[str, Any]:
    string = {"type": "string"}
    nonempty = {"type": "string", "minLength": 1}
    string_or_null = {"type": ["string", "null"]}
    integer = {"type": "integer"}
    return {
        "Problem": {
            "type": "object",
            "description": "An RFC 9457 problem; `type` is stable per kind of error.",
            "required": ["type", "title", "status"],
            "properties": {
                "type": {"type": "string", "format": "uri-reference"},
                "title": string,
                "status": integer,
                "detail": string,
                "instance": {"type": "string", "description": "the request path"},
                "request_id": {"type": "string", "description": "on 5xx: find the log lines"},
            },
        },
        "BadRequestProblem": _problem(
            {
                "errors": {
                    "type": "array",
                    "description": "each field that breaks the command's schema, and why",
                    "items": {
                        "type": "object",
                        "required": ["pointer", "message"],
                        "properties": {"pointer": string, "message": string},
                    },
                },
                "where": {"type": "string", "description": "body, header X or query X"},
            },
            "invalid-payload (schema violation) or malformed-request (not JSON, bad header)",
        ),
        "UnknownCommandProblem": _problem(
            {"command": string, "known": {"type": "array", "items": string}}, "unknown-command"
        ),
        "NotFoundProblem": _problem({"kind": string, "name": string}, "not-found"),
        "ConflictProblem": _problem(
            {
                "stream": string,
                "expected_version": integer,
                "actual_version": integer,
                "reason": string,
                "handler": string,
            },
            "version-conflict, command-rejected or idempotency-key-reused",
        ),
        "PreconditionProblem": _problem(
            {
                "command": string,
                "rule": string,
                "rule_index": integer,
                "event": {"type": "string", "description": "event-rule-failed: the event"},
                "field": {"type": "string", "description": "the field the failing rule sets"},
            },
            "precondition-failed (a `require` rule is false) or event-rule-failed (a rule "
            "that applies the command's events fails on them; nothing was stored)",
        ),
        "UnavailableProblem": _problem({"dependency": string}, "unavailable (retry later)"),
        "CloudEvent": {
            "type": "object",
            "description": "A CloudEvents 1.0 structured JSON message. An optional "
            "attribute given as null is taken as absent, as CloudEvents' JSON format says.",
            "required": ["specversion", "id", "source", "type"],
            "properties": {
                "specversion": {"const": "1.0"},
                "id": nonempty,
                "source": nonempty,
                "type": nonempty,
                "subject": {
                    "type": ["string", "null"],
                    "description": "the stream id, e.g. Order-o1",
                },
                "time": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": "RFC 3339; a command's is checked, an event's is its append",
                },
                "datacontenttype": string_or_null,
                "correlationid": string_or_null,
                "causationid": string_or_null,
                "streamversion": {
                    "type": ["integer", "null"],
                    "description": "an event's 1-based position in its stream",
                },
                "dataschemaversion": {"type": ["integer", "null"]},
                "data": {"type": "object"},
            },
        },
        "CommandResult": {
            "type": "object",
            "required": ["command_id", "stream", "version", "duplicate", "events"],
            "properties": {
                "command_id": string,
                "stream": string,
                "version": {"type": "integer", "description": "stream version after the command"},
                "duplicate": {
                    "type": "boolean",
                    "description": "true: a retry of an earlier command; its first result",
                },
                "events": {"type": "array", "items": _ref("schemas", "CloudEvent")},
            },
        },
        "StreamPage": {
            "type": "object",
            "required": ["stream", "version", "from", "events"],
            "properties": {
                "stream": string,
                "version": {"type": "integer", "description": "current version of the stream"},
                "from": {"type": "integer", "description": "first version asked for"},
                "events": {"type": "array", "items": _ref("schemas", "CloudEvent")},
                "next": {"type": "string", "description": "URL of the next page, if any"},
            },
        },
        "AggregateState": {
            "type": "object",
            "required": ["type", "id", "stream", "version", "state"],
            "properties": {
                "type": string,
                "id": string,
                "stream": string,
                "version": integer,
                "state": {"type": "object"},
            },
        },
        "Status": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": string,
                "checks": {"type": "object", "additionalProperties": string},
            },
        },
    }


def _problem_response(description: str, schema: str = "Problem") -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": _ref("schemas", schema)}}}


def _responses() -> dict[str, Any]:
    unavailable = _problem_response("A dependency is down; retry later.", "UnavailableProblem")
    unavailable["headers"] = {"Retry-After": _ref("headers", "Retry-After")}
    return {
        "BadRequest": _problem_response(
            "The body is not JSON, breaks the command's schema, or a header or query "
            "parameter is malformed.",
            "BadRequestProblem",
        ),
        "NotFound": _problem_response("No such stream, aggregate or route.", "NotFoundProblem"),
        "Conflict": _problem_response(
            "Version conflict (If-Match), rejected by a handler, or idempotency key reused.",
            "ConflictProblem",
        ),
        "PayloadTooLarge": _problem_response("The body exceeds 1 MiB."),
        "PreconditionFailed": _problem_response(
            "A `require` rule of the command is false, or a rule applying its events fails on "
            "them: `rule` and `detail` say which and why.",
            "PreconditionProblem",
        ),
        "Internal": _problem_response("Unexpected error; `request_id` finds it in the log."),
        "BadGateway": _problem_response("A handler replied with something unusable."),
        "Unavailable": unavailable,
    }


def _command_path(config: Config, name: str) -> dict[str, Any]:
    cmd = config.commands[name]
    data = _ref("schemas", f"Command.{name}")
    envelope = {
        "allOf": [
            _ref("schemas", "CloudEvent"),
            {"type": "object", "properties": {"type": {"const": name}, "data": data}},
        ]
    }
    result = {"schema": _ref("schemas", "CommandResult")}
    ok_headers = {"ETag": _ref("headers", "ETag"), "Location": _ref("headers", "Location")}
    return {
        "post": {
            "operationId": f"command.{name}",
            "tags": ["commands"],
            "summary": cmd.description or f"Submit {name}",
            "description": (
                f"Targets the {cmd.aggregate} aggregate. The body is the command's data, "
                f"or a whole structured CloudEvent (with `specversion`) whose `data` it is."
            ),
            "parameters": [_ref("parameters", "Idempotency-Key"), _ref("parameters", "If-Match")],
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": data}, CLOUDEVENTS: {"schema": envelope}},
            },
            "responses": {
                "200": {
                    "description": "Applied to an existing stream, or a retried duplicate "
                    "(`duplicate: true`, nothing appended).",
                    "headers": ok_headers,
                    "content": {JSON: result},
                },
                "201": {
                    "description": "Applied; the command created the stream.",
                    "headers": ok_headers,
                    "content": {JSON: result},
                },
                "400": _ref("responses", "BadRequest"),
                "404": _problem_response("Unknown command type.", "UnknownCommandProblem"),
                "409": _ref("responses", "Conflict"),
                "413": _ref("responses", "PayloadTooLarge"),
                "422": _ref("responses", "PreconditionFailed"),
                "500": _ref("responses", "Internal"),
                "502": _ref("responses", "BadGateway"),
                "503": _ref("responses", "Unavailable"),
            },
        }
    }


def _get(
    operation_id: str, tag: str, summary: str, ok: dict[str, Any], **more: Any
) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": operation_id, "tags": [tag], "summary": summary}
    op.update(more)
    op["responses"] = {"200": ok, **op.get("responses", {})}
    return {"get": op}


def _json_ok(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("schemas", schema)}}}


def _query_paths(config: Config) -> dict[str, Any]:
    path_param = {"in": "path", "required": True, "schema": {"type": "string"}}
    stream_ok = _json_ok("A page of the stream's events, oldest first.", "StreamPage")
    stream_ok["headers"] = {"ETag": _ref("headers", "ETag")}
    aggregate_ok = _json_ok("The aggregate's current state and version.", "AggregateState")
    aggregate_ok["headers"] = {"ETag": _ref("headers", "ETag")}
    not_found = {"404": _ref("responses", "NotFound"), "503": _ref("responses", "Unavailable")}
    return {
        "/streams/{stream_id}": _get(
            "streams.read",
            "streams",
            "Events of a stream",
            stream_ok,
            description=(
                "`from` is the first stream version to return: 1-based and inclusive, "
                "so `?from=1` (the default; 0 means the same) starts at the first event and "
                "`?from=4` skips versions 1-3. `limit` caps the page (default 1000, at most "
                "10000); when more events follow, `next` is the URL of the next page. "
                "A stream that does not exist is a 404."
            ),
            parameters=[
                {"name": "stream_id", **path_param, "example": "Order-o1"},
                {
                    "name": "from",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": 10**18 - 1,
                        "default": 1,
                    },
                    "description": "first stream version to return (inclusive, 1-based)",
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000},
                },
            ],
            responses={"400": _ref("responses", "BadRequest"), **not_found},
        ),
        "/aggregates/{type}/{id}": _get(
            "aggregates.get",
            "aggregates",
            "Current state and version of an aggregate instance",
            aggregate_ok,
            parameters=[
                {"name": "type", **path_param, "schema": {"enum": sorted(config.aggregates)}},
                {"name": "id", **path_param},
            ],
            responses=not_found,
        ),
        "/healthz": _get(
            "healthz", "operations", "Liveness: the process answers", _json_ok("Alive.", "Status")
        ),
        "/readyz": _get(
            "readyz",
            "operations",
            "Readiness: the store (and bus) answer",
            _json_ok("Every dependency answers.", "Status"),
            responses={"503": _ref("responses", "Unavailable")},
        ),
        "/metrics": _get(
            "metrics",
            "operations",
            "Prometheus metrics",
            {"description": "Text exposition format.", "content": {"text/plain": {}}},
        ),
        "/openapi.json": _get(
            "openapi",
            "operations",
            "This document",
            {"description": "OpenAPI 3.1.", "content": {JSON: {}}},
        ),
    }


def build_openapi(config: Config) -> dict[str, Any]:
    """The whole document: one path per command, its payload schema, events under components."""
    schemas = _schemas()
    for name, cmd in sorted(config.commands.items()):
        schema = _embedded(cmd.schema, f"Command.{name}")
        if cmd.description and "description" not in schema:
            schema["description"] = cmd.description
        schemas[f"Command.{name}"] = schema
    for name, event in sorted(config.events.items()):
        schema = _embedded(event.schema, f"Event.{name}")
        schema.setdefault("description", event.description or f"data of a {name} event")
        schema["x-catgad-schema-version"] = event.version
        schemas[f"Event.{name}"] = schema
    paths = {f"/commands/{name}": _command_path(config, name) for name in sorted(config.commands)}
    paths.update(_query_paths(config))
    paths.update(projection_paths(config))
    schemas.update(projection_schemas(config))
    for reactor in reactors_of(config):
        reactor_paths, reactor_schemas = reactor.openapi()
        paths.update(reactor_paths)
        schemas.update(reactor_schemas)
    paths.update(inbox_paths())
    schemas.update(inbox_schemas())
    for operations in paths.values():  # any route answers 500 on a fault of its own
        for operation in operations.values():
            operation["responses"].setdefault("500", _ref("responses", "Internal"))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": config.service.name,
            "version": __version__,
            "description": f"Commands, streams and aggregates of the {config.service.name} "
            "service, served by catgad. Errors are RFC 9457 problems (application/problem+json).",
        },
        "tags": [
            {"name": "commands", "description": "Submit commands"},
            {"name": "streams", "description": "Read event streams"},
            {"name": "aggregates", "description": "Read aggregate state"},
            {"name": "projections", "description": "Projection status and control"},
            {"name": "read", "description": "Query read models"},
            *({"name": r.key, "description": r.description} for r in reactors_of(config)),
            {"name": "operations", "description": "Health, readiness, metrics"},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": _responses(),
            "parameters": {
                "Idempotency-Key": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "description": "The command id. A retry with the same key returns the "
                    "first result and appends nothing.",
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 200,
                        # printable ASCII, neither starting nor ending with a space
                        "pattern": "^[!-~](?:[ -~]*[!-~])?$",
                    },
                },
                "If-Match": {
                    "name": "If-Match",
                    "in": "header",
                    "description": 'Expected stream version, e.g. 3 or "3" (0: the stream must '
                    "not exist). Another version is a 409.",
                    "schema": {"type": "string", "pattern": '^(?:[0-9]{1,18}|"[0-9]{1,18}")$'},
                },
            },
            "headers": {
                "ETag": {
                    "description": 'The stream version, quoted: "3"',
                    "schema": {"type": "string"},
                },
                "Location": {
                    "description": "The stream: /streams/{stream_id}",
                    "schema": {"type": "string"},
                },
                "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}},
            },
        },
    }
