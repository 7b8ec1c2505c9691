"""Structured logging: JSON lines when stderr is not a terminal, readable console otherwise.

catgad logs through structlog; the standard library's loggers (uvicorn's among
them) are routed through the same processors, so one process writes one format.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog
from structlog.typing import Processor

from catgad.observability.context import add_ids


def _orjson_dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def configure_logging(level: str | int = "INFO", *, json: bool | None = None) -> None:
    """Set up structlog and the stdlib root logger once for the whole process.

    `json=None` picks JSON when stderr is not a TTY (containers, CI, files).
    """
    if json is None:
        json = not sys.stderr.isatty()
    if isinstance(level, str):
        level = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if json:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,  # loggers are used off the hot path only
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's access log would cost a line per request; catgad's metrics count requests.
    logging.getLogger("uvicorn.access").disabled = True
    # uvicorn's start/stop chatter repeats catgad's own lines; its warnings and errors stay.
    uvicorn_level = level if level <= logging.DEBUG else max(level, logging.WARNING)
    logging.getLogger("uvicorn.error").setLevel(uvicorn_level)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
