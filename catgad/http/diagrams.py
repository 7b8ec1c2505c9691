"""What the diagram endpoints share: the format asked for, and the answer in it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from catgad.errors import MalformedRequest

MERMAID = "text/vnd.mermaid"
SVG = "image/svg+xml"


def diagram_format(request: Request) -> str:
    """`?format=` of a diagram: mermaid (the default) or svg."""
    wanted = request.query_params.get("format", "mermaid")
    if wanted not in ("mermaid", "svg"):
        raise MalformedRequest("query format", f"format is mermaid or svg, got {wanted!r}")
    return wanted


def diagram_response(text: str, form: str) -> Response:
    return Response(text, media_type=SVG if form == "svg" else MERMAID)
