"""The process endpoints (SPEC section 11).

- `GET /processes/{name}?state=`: the instances, from the store's process index
  (catgad.store.process_index), so every daemon on the store lists the same.
- `GET /processes/{name}/{id}`: state, data, status, history with times, the pending timer
  with its due time, the approval waited for (read from the instance's stream).
- `POST /processes/{name}/{id}/approve` · `/reject`, body `{"comment": ...}` optional: a
  person's decision, recorded with the token's name and the comment; 409 when the instance
  waits for none (decided, timed out, finished). The token needs the scope the approval
  state names (by default `approve`).
- `GET /processes/{name}/diagram`: the state machine as Mermaid.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from catgad.errors import Forbidden, MalformedRequest
from catgad.http.access import Access
from catgad.http.diagrams import diagram_format, diagram_response
from catgad.http.routes import json_response, parse_json, read_body
from catgad.processes.diagram import process_diagram, process_svg
from catgad.processes.runner import ProcessRunner


class ProcessEndpoints:
    def __init__(self, runner: ProcessRunner, access: Access) -> None:
        self.runner = runner
        self.access = access

    def routes(self, access: Access) -> list[Route]:
        route = access.route
        return [
            route("read", "/processes/{name}/diagram", self.diagram, "GET"),
            route("read", "/processes/{name}", self.listing, "GET"),
            route("approve", "/processes/{name}/{id}/approve", self.approve, "POST"),
            route("approve", "/processes/{name}/{id}/reject", self.reject, "POST"),
            route("read", "/processes/{name}/{id}", self.one, "GET"),
        ]

    async def diagram(self, request: Request) -> Response:
        process = self.runner.definition(request.path_params["name"])
        form = diagram_format(request)
        instance = request.query_params.get("instance")
        current, visited = None, []
        if instance is not None:
            state = await self.runner.instance(process.name, instance)
            current = state.state
            visited = [h["to"] for h in state.history if "to" in h]
            visited = [process.initial, *visited]
        draw = process_svg if form == "svg" else process_diagram
        return diagram_response(draw(process, current=current, visited=visited), form)

    async def listing(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        process = self.runner.definition(name)
        state = request.query_params.get("state")
        if state is not None and state not in process.states:
            raise MalformedRequest(
                "query state", f"state must be one of {', '.join(process.states)}, got {state!r}"
            )
        return json_response({"process": name, "instances": await self.runner.listing(name, state)})

    async def one(self, request: Request) -> Response:
        name, instance = request.path_params["name"], request.path_params["id"]
        return json_response((await self.runner.instance(name, instance)).to_dict())

    async def approve(self, request: Request) -> Response:
        return await self._decide(request, approve=True)

    async def reject(self, request: Request) -> Response:
        return await self._decide(request, approve=False)

    async def _decide(self, request: Request, *, approve: bool) -> Response:
        name, instance = request.path_params["name"], request.path_params["id"]
        process = self.runner.definition(name)
        comment = _comment(await read_body(request))
        state = await self.runner.instance(name, instance)
        waiting = process.states[state.state].approval if state.state in process.states else None
        token = getattr(request.state, "token", None)
        if token is not None and waiting is not None and waiting.scope not in token.scopes:
            raise Forbidden(token.name, waiting.scope)
        decided = await self.runner.decide(
            name, instance, approve=approve, token=self.access.token_name(request), comment=comment
        )
        return json_response(decided.to_dict())


def _comment(raw: bytes) -> str | None:
    """The optional `{"comment": "..."}` body (read as every body is: catgad.http.routes)."""
    if not raw.strip():
        return None
    body: Any = parse_json(raw)
    if not isinstance(body, dict) or set(body) - {"comment"}:
        raise MalformedRequest("body", 'the body is {"comment": "..."} or empty')
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise MalformedRequest("body", "comment must be a string")
    return comment
