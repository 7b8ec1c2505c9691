"""The process index of the NATS store: a JetStream stream of its own, `<stream>_pidx`
(created with the store's others), with two kinds of subjects under `$PIDX.<stream>`:

    r.<token(process)>.<token(instance)>   an instance's row (JSON), one per subject: each
                                           write is a rollup, and a compare-and-set on the
                                           subject's last sequence (a higher version wins)
    t.<token(process)>.<window>            timer entries {"i": instance, "d": due}, one
                                           message each, in the window floor(due / 16 s)

"Due at or before now" asks the stream which windows of the process hold entries (a stream
info with a subject filter: window names and counts, no entry read), then reads the windows
up to now's, each by a consumer filtered on its literal subject (served from the subject
index): the entries touched are the due ones and those of now's window (at most 16 s
ahead). An entry is written before its row, so a row's due time always has its entry; a
fired or stale entry is deleted by sequence (`drop`). Listing and the summary read the
process's rows (what a listing is); the metrics read the summary every few seconds.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import orjson

from catgad.errors import Unavailable
from catgad.store.nats_codec import EXPECT_LAST_SUBJECT_SEQ, token
from catgad.store.nats_scan import scan
from catgad.store.nats_wire import DEPENDENCY, ApiError, NoStream, Wire, WrongLastSequence
from catgad.store.process_index import DueTimer, InstanceRow, Summary, summarise

if TYPE_CHECKING:
    from catgad.store.nats import NATSStore

T = TypeVar("T")
WINDOW = 16.0  # seconds of due times per timer subject
_ATTEMPTS = 20  # compare-and-set rounds on one row before giving up as Unavailable
_ROLLUP = {"Nats-Rollup": "sub"}


def window(due: float) -> int:
    return math.floor(due / WINDOW)


class NATSProcessIndex:
    durable = True

    def __init__(self, store: NATSStore) -> None:
        self.store = store
        names = store.names
        self.stream = names.index_stream
        self.root = names.index_subjects
        self.examined = 0  # timer entries read by `due` and `next_due` (tests)

    def _row_subject(self, process: str, instance: str) -> str:
        return f"{self.root}.r.{token(process)}.{token(instance)}"

    def _timer_subject(self, process: str, at: int | str) -> str:
        return f"{self.root}.t.{token(process)}.{at}"

    async def _run(self, operation: Callable[[Wire], Awaitable[T]]) -> T:
        return await self.store._run(lambda wire, _: operation(wire))

    # -- writing -------------------------------------------------------------------------

    async def put(self, process: str, rows: Sequence[InstanceRow]) -> None:
        for row in rows:
            await self._run(lambda wire, row=row: self._put(wire, process, row))  # type: ignore[misc]

    async def _put(self, wire: Wire, process: str, row: InstanceRow) -> None:
        subject = self._row_subject(process, row.instance)
        body = orjson.dumps(row.to_json())
        for _ in range(_ATTEMPTS):
            got = await wire.direct_get(self.stream, subject=subject, last=True)
            old = None if got is None else InstanceRow.from_json(orjson.loads(got.data))
            if old is not None and old.version >= row.version:
                return
            if row.due is not None and (old is None or old.due != row.due):
                entry = orjson.dumps({"i": row.instance, "d": row.due})
                await wire.publish(self._timer_subject(process, window(row.due)), entry, {})
            expect = {EXPECT_LAST_SUBJECT_SEQ: str(0 if got is None else got.seq)}
            try:
                await wire.publish(subject, body, {**expect, **_ROLLUP})
                return
            except WrongLastSequence:
                continue
        raise Unavailable(DEPENDENCY, f"too many writers of process instance {row.instance!r}")

    async def drop(self, process: str, timer: DueTimer) -> None:
        if timer.ref is None:
            return
        body = {"seq": int(timer.ref), "no_erase": True}
        with contextlib.suppress(ApiError):  # deleted already (by another daemon, or a retry)
            await self._run(lambda wire: wire.api(f"$JS.API.STREAM.MSG.DELETE.{self.stream}", body))

    # -- timers ----------------------------------------------------------------------------

    async def _windows(self, wire: Wire, process: str) -> list[int]:
        """The windows holding entries of `process`, ascending (their names, no entry)."""
        body = {"subjects_filter": self._timer_subject(process, "*")}
        try:
            info = await wire.api(f"$JS.API.STREAM.INFO.{self.stream}", body)
        except ApiError as exc:
            if exc.code == 10059:  # stream not found: created again by the store
                raise NoStream(self.stream) from exc
            raise exc.mapped() from exc
        subjects = (info.get("state") or {}).get("subjects") or {}
        return sorted(int(s.rsplit(".", 1)[1]) for s, n in subjects.items() if n)

    async def _entries(self, wire: Wire, process: str, at: int) -> list[DueTimer]:
        found = []
        async with contextlib.aclosing(
            scan(wire, self.stream, self._timer_subject(process, at), 1, 512)
        ) as messages:
            async for got in messages:
                self.examined += 1
                doc = orjson.loads(got.data)
                found.append(DueTimer(str(doc["i"]), float(doc["d"]), got.seq))
        return found

    async def due(self, process: str, now: float, limit: int) -> list[DueTimer]:
        return await self._run(lambda wire: self._due(wire, process, now, limit))

    async def _due(self, wire: Wire, process: str, now: float, limit: int) -> list[DueTimer]:
        found: list[DueTimer] = []
        for at in await self._windows(wire, process):
            if at > window(now) or len(found) >= limit:
                break
            found += [t for t in await self._entries(wire, process, at) if t.due <= now]
        found.sort(key=lambda t: t.due)
        return found[:limit]

    async def next_due(self, process: str) -> float | None:
        return await self._run(lambda wire: self._next_due(wire, process))

    async def _next_due(self, wire: Wire, process: str) -> float | None:
        for at in await self._windows(wire, process):
            entries = await self._entries(wire, process, at)
            if entries:
                return min(t.due for t in entries)
        return None

    # -- rows ------------------------------------------------------------------------------

    async def listing(self, process: str, state: str | None = None) -> list[InstanceRow]:
        rows = await self._run(lambda wire: self._rows(wire, process))
        return sorted(
            (row for row in rows if state is None or row.state == state),
            key=lambda row: row.instance,
        )

    async def asking(self, process: str, limit: int) -> list[InstanceRow]:
        # the rows are one subject per instance: no order kept by asking time, so all are read
        rows = await self._run(lambda wire: self._rows(wire, process))
        asked = [row for row in rows if row.asked_at is not None]
        return sorted(asked, key=lambda row: (row.asked_at or 0.0, row.instance))[:limit]

    async def _rows(self, wire: Wire, process: str) -> list[InstanceRow]:
        rows: dict[str, InstanceRow] = {}
        subject = f"{self.root}.r.{token(process)}.*"
        async with contextlib.aclosing(scan(wire, self.stream, subject, 1, 512)) as messages:
            async for got in messages:
                row = InstanceRow.from_json(orjson.loads(got.data))
                rows[row.instance] = row  # a rollup not yet applied: the later one wins
        return list(rows.values())

    async def summary(self, process: str) -> Summary:
        return summarise(await self.listing(process))
