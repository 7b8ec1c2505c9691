"""The saga endpoints (SPEC section 10).

- `POST /sagas/{name}`: start an instance with the body as its start data: 201
  with `Location`, or 200 with the existing instance when its id is known
  (the id comes from `start.id`, else the `Idempotency-Key` header, else a new one).
- `GET /sagas/{name}?status=`: the instances this daemon knows of (it follows
  the log), newest decision last.
- `GET /sagas/{name}/{id}`: status, current step, input and the log of steps
  and compensations (read from the instance's stream: always current).
- `POST /sagas/{name}/{id}/retry`: a `failed` saga tries its compensation
  again (409 otherwise); `POST /sagas/{name}/{id}/cancel`: a running saga
  stops and compensates (409 once it is not running).
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from catgad.errors import MalformedRequest
from catgad.http.access import Access
from catgad.http.diagrams import diagram_format, diagram_response
from catgad.http.routes import json_response, parse_idempotency_key, parse_json, read_body
from catgad.sagas.diagram import emits, saga_diagram, saga_svg
from catgad.sagas.runner import SagaRunner
from catgad.sagas.state import STATUSES


def instance_location(name: str, instance: str) -> str:
    return f"/sagas/{quote(name, safe='')}/{quote(instance, safe='')}"


class SagaEndpoints:
    def __init__(self, runner: SagaRunner) -> None:
        self.runner = runner

    def routes(self, access: Access) -> list[Route]:
        route = access.route
        return [
            route("commands", "/sagas/{name}", self.start, "POST"),
            route("read", "/sagas/{name}", self.listing, "GET"),
            route("manage", "/sagas/{name}/{id}/retry", self.retry, "POST"),
            route("manage", "/sagas/{name}/{id}/cancel", self.cancel, "POST"),
            route("read", "/sagas/{name}/diagram", self.diagram, "GET"),
            route("read", "/sagas/{name}/{id}", self.one, "GET"),
        ]

    async def diagram(self, request: Request) -> Response:
        """The saga's steps as Mermaid; `?instance=` highlights where that instance stands."""
        name: str = request.path_params["name"]
        saga = self.runner.definition(name)
        form = diagram_format(request)
        instance = request.query_params.get("instance")
        current, visited, failed = None, [], None
        if instance is not None:
            state = await self.runner.instance(name, instance)
            done = [saga.steps[i].name for i in range(min(state.step, len(saga.steps)))]
            step = state.current_step(saga)
            if state.status == "running":
                current, visited = step, done
            elif state.status == "completed":
                current, visited = "done", done
            else:  # compensating, compensated, failed: the step that failed, and the way there
                failed, visited = step, done
        draw = saga_svg if form == "svg" else saga_diagram
        text = draw(
            saga, emits(self.runner.config), current=current, visited=visited, failed=failed
        )
        return diagram_response(text, form)

    async def start(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        saga = self.runner.definition(name)  # 404 before reading a body we cannot use
        key = parse_idempotency_key(request.headers.get("idempotency-key"))
        data = parse_json(await read_body(request))
        state, created = await self.runner.begin(
            name, data, instance=None if saga.start_id else key
        )
        return json_response(
            state.to_dict(saga),
            201 if created else 200,
            {"Location": instance_location(name, state.id)},
        )

    async def listing(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        status = request.query_params.get("status")
        if status is not None and status not in STATUSES:
            raise MalformedRequest(
                "query status", f"status must be one of {', '.join(STATUSES)}, got {status!r}"
            )
        self.runner.definition(name)
        return json_response({"saga": name, "instances": self.runner.listing(name, status)})

    async def one(self, request: Request) -> Response:
        name, instance = request.path_params["name"], request.path_params["id"]
        state = await self.runner.instance(name, instance)
        return json_response(state.to_dict(self.runner.definition(name)))

    async def retry(self, request: Request) -> Response:
        name, instance = request.path_params["name"], request.path_params["id"]
        state = await self.runner.retry(name, instance)
        return json_response(state.to_dict(self.runner.definition(name)))

    async def cancel(self, request: Request) -> Response:
        name, instance = request.path_params["name"], request.path_params["id"]
        state = await self.runner.cancel(name, instance)
        return json_response(state.to_dict(self.runner.definition(name)))
