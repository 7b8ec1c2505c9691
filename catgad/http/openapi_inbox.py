"""The OpenAPI paths of the operator inbox (catgad.http.inbox), the recent streams
(catgad.http.streams) and the dashboard pages (catgad.http.ui)."""

from __future__ import annotations

from typing import Any

from catgad.http.inbox import KINDS

JSON = "application/json"
HTML = "text/html"


def inbox_schemas() -> dict[str, Any]:
    text = {"type": "string"}
    action = {
        "type": "object",
        "required": ["name", "method", "href", "scope"],
        "properties": {
            "name": {"enum": ["replay", "skip", "retry", "approve", "reject", "start", "rebuild"]},
            "method": {"const": "POST"},
            "href": {"type": "string", "description": "the request to make"},
            "scope": {"type": "string", "description": "the scope its token needs"},
            "body": {"type": "object", "description": 'optional body: {"comment": ...}'},
        },
    }
    item = {
        "type": "object",
        "required": ["kind", "key", "title", "since", "subject", "link", "actions"],
        "properties": {
            "kind": {"enum": list(KINDS)},
            "key": {"type": "string", "description": "stable while the item waits"},
            "title": text,
            "detail": {"type": ["string", "null"]},
            "since": {"type": ["string", "null"], "format": "date-time"},
            "subject": {"type": "object", "description": "what the item is about"},
            "link": {"type": "string", "description": "where the dashboard (/ui) shows it"},
            "actions": {"type": "array", "items": action},
        },
    }
    return {
        "Inbox": {
            "type": "object",
            "description": "Everything waiting for a person, oldest first, each with its "
            "actions; the counts are also the gauge catgad_inbox_items{kind}.",
            "required": ["generated_at", "total", "counts", "items"],
            "properties": {
                "generated_at": {"type": "string", "format": "date-time"},
                "total": {"type": "integer", "minimum": 0},
                "counts": {
                    "type": "object",
                    "required": list(KINDS),
                    "properties": {k: {"type": "integer", "minimum": 0} for k in KINDS},
                },
                "items": {"type": "array", "items": item},
            },
        }
    }


def inbox_paths() -> dict[str, Any]:
    page = {"description": "The page.", "content": {HTML: {"schema": {"type": "string"}}}}
    return {
        "/inbox": {
            "get": {
                "operationId": "inbox.get",
                "tags": ["operations"],
                "summary": "The operator inbox: dead letters, failed sagas, pending approvals, "
                "overdue timers, projections stopped or lagging, each with its actions",
                "responses": {
                    "200": {
                        "description": "The inbox.",
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Inbox"}}},
                    }
                },
            }
        },
        "/streams": {
            "get": {
                "operationId": "streams.recent",
                "tags": ["streams"],
                "summary": "The streams written most recently (found in the newest 1000 events "
                "of the log), newest first, each with its version and last event",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    }
                ],
                "responses": {
                    "200": {"description": "The streams.", "content": {JSON: {}}},
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            }
        },
        "/ui": {
            "get": {
                "operationId": "ui.page",
                "tags": ["operations"],
                "summary": "The dashboard, opening on the inbox. A browser without a token "
                "(the cookie catgad_token, set by /ui/signin) is redirected to /ui/signin",
                "responses": {"200": page, "303": {"description": "To the sign-in page."}},
            }
        },
        "/ui/signin": {
            "get": {
                "operationId": "ui.signin",
                "tags": ["operations"],
                "summary": "The dashboard's sign-in page (a token field; no data)",
                "responses": {"200": page},
            }
        },
    }
