"""The projection endpoints: status and control under /projections, read models under /read.

- `GET /projections`, `GET /projections/{name}` (with its open dead letters).
- `POST /projections/{name}/rebuild` answers 202 with the status (`rebuild`
  shows progress); a rebuild already under way is not restarted (200).
  `/stop`, `/start` answer 200 with the status; `/replay` replays the open
  dead letters (`?event_id=` one of them) and says what became of each;
  `/skip` closes them (or the one of `?event_id=`) without applying them.
- `GET /read/{projection}/{key}`: the row, or a 404 problem.
- `GET /read/{projection}?column=value&limit=N&cursor=C`: rows in key order,
  filtered on one indexed column (none: every row); `next` is the URL of the
  next page. The value is read as the column's type (`?total=3`, `?paid=true`).
  The cursor is the key of the last row of the page before: the rows after it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from catgad.errors import MalformedRequest
from catgad.http.access import Access
from catgad.http.routes import json_response, query_int
from catgad.projections.manager import ProjectionManager
from catgad.projections.model import ProjectionDef

DEFAULT_PAGE = 100
MAX_PAGE = 1000
_PAGING = ("limit", "cursor")


class ProjectionEndpoints:
    def __init__(self, manager: ProjectionManager) -> None:
        self.manager = manager

    def routes(self, access: Access) -> list[Route]:
        route = access.route
        return [
            route("read", "/projections", self.list, "GET"),
            route("read", "/projections/{name}", self.one, "GET"),
            route("manage", "/projections/{name}/rebuild", self.rebuild, "POST"),
            route("manage", "/projections/{name}/stop", self.stop, "POST"),
            route("manage", "/projections/{name}/start", self.start, "POST"),
            route("manage", "/projections/{name}/replay", self.replay, "POST"),
            route("manage", "/projections/{name}/skip", self.skip, "POST"),
            route("read", "/read/{projection}", self.find, "GET"),
            route("read", "/read/{projection}/{key:path}", self.get, "GET"),
        ]

    async def list(self, request: Request) -> Response:
        return json_response({"projections": await self.manager.statuses()})

    async def one(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        return json_response(await self.manager.status(name, detail=True))

    async def rebuild(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        started = await self.manager.rebuild(name)
        body = await self.manager.status(name)
        body["rebuild_started"] = started
        return json_response(body, 202 if started else 200)

    async def stop(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        await self.manager.set_running(name, False)
        return json_response(await self.manager.status(name))

    async def start(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        await self.manager.set_running(name, True)
        return json_response(await self.manager.status(name))

    async def replay(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        event_id = request.query_params.get("event_id")
        return json_response(await self.manager.replay(name, event_id=event_id))

    async def skip(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        event_id = request.query_params.get("event_id")
        return json_response(await self.manager.skip(name, event_id=event_id))

    async def get(self, request: Request) -> Response:
        name: str = request.path_params["projection"]
        return json_response(await self.manager.get(name, request.path_params["key"]))

    async def find(self, request: Request) -> Response:
        name: str = request.path_params["projection"]
        projection = self.manager.definition(name)
        limit = query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        cursors = request.query_params.getlist("cursor")
        if len(cursors) > 1:
            raise MalformedRequest("query cursor", "cursor is given more than once; give it once")
        cursor = cursors[0] if cursors and cursors[0] else None
        filters = [(k, v) for k, v in request.query_params.multi_items() if k not in _PAGING]
        if len(filters) > 1:
            raise MalformedRequest("query", "filter on one column at a time")
        column, value = filters[0] if filters else (None, None)
        typed = None if column is None else parse_filter(projection, column, value or "")
        try:
            page = await self.manager.find(name, column, typed, limit=limit, cursor=cursor)
        except ValueError as exc:  # a cursor that is not one of ours
            raise MalformedRequest("query cursor", str(exc)) from None
        body: dict[str, Any] = {"projection": name, "rows": page.rows, "next": None}
        if page.cursor is not None:
            params = {**dict(filters), "limit": str(limit), "cursor": page.cursor}
            body["next"] = f"/read/{name}?{urlencode(params)}"
            body["cursor"] = page.cursor
        return json_response(body)


def parse_filter(projection: ProjectionDef, column: str, raw: str) -> Any:
    """A query value as its column's type; 400 for a column that cannot be filtered on."""
    definition = projection.columns.get(column)
    if definition is None or not definition.index:
        indexed = ", ".join(projection.indexed) or "none"
        raise MalformedRequest(
            f"query {column}",
            f"{column!r} is not an indexed column of {projection.name} (indexed: {indexed}); "
            "declare it with `index: true` to filter on it",
        )
    try:
        if definition.type == "integer":
            return int(raw)
        if definition.type == "number":
            return float(raw)
        if definition.type == "boolean":
            if raw not in ("true", "false"):
                raise ValueError(raw)
            return raw == "true"
    except ValueError:
        raise MalformedRequest(
            f"query {column}", f"{column} is a {definition.type} column; got {raw!r}"
        ) from None
    return raw
