"""Dead letters of a projection: events it could not apply, kept in the store with the reason.

Each is a `catgad.deadletter` event in the stream `$deadletter-projection.<name>`,
written by catgad.bus.deadletter like the bus consumers' ones, carrying the
whole event (with its store position as the extension `catgadposition`), the
reason and the attempts made. A replay after a fix appends a
`catgad.deadletter.replayed` event naming it; the open dead letters are those
not replayed yet. Recording is idempotent by event id, so a projection that
crashes between recording and moving on records it once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from catgad.bus.deadletter import DEADLETTER_TYPE, dead_letter, deadletter_stream
from catgad.envelope import Envelope, from_dict, new_id, now_rfc3339
from catgad.ids import event_id
from catgad.store.protocol import EventStore

DEAD_LETTER = DEADLETTER_TYPE
REPLAYED = "catgad.deadletter.replayed"
POSITION = "catgadposition"  # extension on the dead-lettered event: its store position
_MAX_READ = 100_000  # dead letters listed at most (a projection with more should stop)


def consumer(projection: str) -> str:
    return f"projection.{projection}"


def stream(projection: str) -> str:
    return deadletter_stream(consumer(projection))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str  # the dead letter's own event id
    event: Envelope
    position: int
    reason: str
    attempts: int
    time: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event_id": self.event.id,
            "event_type": self.event.type,
            "stream": self.event.subject,
            "position": self.position,
            "reason": self.reason,
            "attempts": self.attempts,
            "time": self.time,
        }


async def record(
    store: EventStore, projection: str, event: Envelope, reason: str, attempts: int, source: str
) -> None:
    """Append the dead letter of `event`, unless one of it is still open."""
    marked = dataclasses.replace(
        event, extensions={**event.extensions, POSITION: event.position}, position=None
    )
    result = await dead_letter(store, consumer(projection), marked, reason, attempts, source=source)
    if result.duplicate and not any(
        o.event.id == event.id for o in await open_letters(store, projection)
    ):
        # recorded before and replayed since (a rebuild met it again): a new dead letter
        letter = result.events[0]
        command_id = f"deadletter:{consumer(projection)}:id:{event.id}:{new_id()}"
        again = Envelope(
            type=DEAD_LETTER,
            data={
                **letter.data,
                "reason": reason,
                "attempts": attempts,
                "failed_at": now_rfc3339(),
            },
            id=event_id(command_id, 0),
            source=source,
            correlationid=letter.correlationid,
            causationid=letter.causationid,
        )
        await store.append(
            stream(projection), [again], expected_version=None, command_id=command_id
        )


async def mark_replayed(
    store: EventStore, projection: str, letter: DeadLetter, outcome: str, source: str
) -> None:
    command_id = f"replayed:{consumer(projection)}:{letter.id}"
    done = Envelope(
        type=REPLAYED,
        source=source,
        data={"dead_letter": letter.id, "event_id": letter.event.id, "outcome": outcome},
        id=event_id(command_id, 0),
        causationid=letter.id,
    )
    await store.append(stream(projection), [done], expected_version=None, command_id=command_id)


async def open_letters(store: EventStore, projection: str) -> list[DeadLetter]:
    """The dead letters not replayed yet, oldest first."""
    letters: dict[str, DeadLetter] = {}
    for envelope in await store.read(stream(projection), limit=_MAX_READ):
        data = envelope.data
        if envelope.type == DEAD_LETTER and isinstance(data.get("envelope"), dict):
            event = from_dict(data["envelope"])
            position = event.extensions.pop(POSITION, None)
            event.position = position if isinstance(position, int) else None
            letters[envelope.id] = DeadLetter(
                envelope.id,
                event,
                event.position or 0,
                str(data.get("reason", "")),
                int(data.get("attempts", 0)),
                str(data.get("failed_at") or envelope.time),
            )
        elif envelope.type == REPLAYED:
            letters.pop(str(data.get("dead_letter")), None)
    return list(letters.values())
