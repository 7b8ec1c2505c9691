"""The process endpoints of this release: a process's state machine as a diagram.

Processes are checked (`catgad validate`) and tested (`catgad test`) but not run yet, so
their instances (`GET /processes/{name}/{id}`, approvals) are not served."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from catgad.config.model import Config
from catgad.diagrams.mermaid import process_diagram
from catgad.errors import NotFound
from catgad.http.access import Access
from catgad.http.diagrams import MERMAID, diagram_format


class ProcessEndpoints:
    def __init__(self, config: Config) -> None:
        self.config = config

    def routes(self, access: Access) -> list[Route]:
        return [access.route("read", "/processes/{name}/diagram", self.diagram, "GET")]

    async def diagram(self, request: Request) -> Response:
        name: str = request.path_params["name"]
        process = self.config.processes.get(name)
        if process is None:
            raise NotFound("process", name)
        diagram_format(request)
        return Response(process_diagram(process), media_type=MERMAID)
