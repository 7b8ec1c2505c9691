"""What the diagram endpoints share: the format asked for, and the media type answered."""

from __future__ import annotations

from starlette.requests import Request

from catgad.http.problems import MalformedRequest

MERMAID = "text/vnd.mermaid"


def diagram_format(request: Request) -> str:
    """`?format=` of a diagram: mermaid (the default); svg is not drawn by this release."""
    wanted = request.query_params.get("format", "mermaid")
    if wanted != "mermaid":
        why = "svg is not drawn by this release" if wanted == "svg" else "format is mermaid"
        raise MalformedRequest("query format", f"{why}; got {wanted!r}")
    return wanted
