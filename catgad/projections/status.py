"""A projection's status as GET /projections shows it: state, checkpoint, lag, owner, progress.

Any daemon can answer for any projection: the holder of its lease from what it
knows, the others from the target's record (checkpoint, state, rebuild).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Literal

from catgad.errors import CatgadError
from catgad.projections.progress import age_seconds, head_position
from catgad.projections.targets.protocol import Meta

if TYPE_CHECKING:
    from catgad.projections.runner import ProjectionRunner

Status = Literal["running", "stopped", "rebuilding", "failed"]


async def describe(runner: ProjectionRunner) -> dict[str, Any]:
    meta: Meta | None = None
    error = runner.last_error
    head = runner.seen
    try:
        head = await head_position(runner.store, runner.seen)
        await runner.open()
        meta = await runner.target.meta()
    except CatgadError as exc:
        error = exc.detail
    active = runner.active
    checkpoint = runner.position if active else (meta.position if meta else None)
    state = runner.state if active or meta is None else state_of(meta)
    if state == "failed" or runner.retrying:
        shown_error = error
    else:
        shown_error = meta.error if meta else None
    body: dict[str, Any] = {
        "name": runner.name,
        "status": state,
        "enabled": True,
        "target": target_info(runner),
        "checkpoint": checkpoint,
        "head": head,
        "lag": await lag(runner, checkpoint, head),
        "owner": runner.lease.holder if runner.lease is not None else runner.owner,
        "active_here": active,
        "last_error": shown_error,
        "retrying": runner.retrying,
    }
    rebuild = runner.rebuild_position if active else (meta.rebuild_position if meta else None)
    if runner.redelivering:
        rebuild = checkpoint
    if state == "rebuilding" and rebuild is not None:
        body["rebuild"] = progress(runner, rebuild, max(head, runner.rebuild_head))
    if runner.metrics is not None and checkpoint is not None:
        runner.metrics.lag(runner.name, max(0, head - checkpoint))
    return body


def state_of(meta: Meta) -> Status:
    if meta.state != "running":
        return meta.state
    return "rebuilding" if meta.rebuild_position is not None else "running"


async def lag(runner: ProjectionRunner, checkpoint: int | None, head: int) -> dict[str, Any]:
    """Events between the checkpoint and the head, and the age of the oldest not applied."""
    if checkpoint is None:
        return {"events": None, "seconds": None}
    behind = max(0, head - checkpoint)
    seconds = 0.0
    if behind:
        with contextlib.suppress(CatgadError):
            first = await runner.store.read_all(after=checkpoint, limit=1)
            seconds = age_seconds(first[0].time) if first else 0.0
    return {"events": behind, "seconds": round(seconds, 3)}


def progress(runner: ProjectionRunner, position: int, head: int) -> dict[str, Any]:
    rate = runner.rate.per_second()
    left = max(0, head - position)
    return {
        "position": position,
        "head": head,
        "percent": round(100.0 * position / head, 1) if head else 100.0,
        "events_per_second": round(rate, 1),
        "eta_seconds": round(left / rate, 1) if rate > 0 else None,
    }


def target_info(runner: ProjectionRunner) -> dict[str, Any]:
    target = runner.projection.target
    info: dict[str, Any] = {"kind": target.kind, "location": target.location()}
    if target.has_table:
        info["table"] = target.table
    return info
