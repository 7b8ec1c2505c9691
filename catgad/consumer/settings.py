"""`runtime.<part>` (projections, sagas, processes): how daemons sharing a store hand the
work of one consumer over, through its lease."""

from __future__ import annotations

from dataclasses import dataclass

from catgad.config.fragments import Schema, closed
from catgad.config.loader import Path
from catgad.config.section import Building


@dataclass(frozen=True, slots=True)
class LeasedSettings:
    lease_ttl: float = 10.0  # seconds; a dead holder's work moves within ~4/3 of it
    poll_interval: float = 0.2  # seconds between looks at the store for others' appends
    linger: float = 0.0  # seconds a busy consumer waits to gather a larger batch


def leased_schema(description: str, what: str, default: LeasedSettings) -> Schema:
    """The fragment of `runtime.<part>` for a consumer handed over by lease."""
    return closed(
        description,
        {
            "lease_ttl": {
                "type": "number",
                "minimum": 0.1,
                "maximum": 3600,
                "default": default.lease_ttl,
                "description": f"seconds a lease on {what} lasts unrenewed (renewed every "
                "third of it): a dead daemon's are taken over within about 4/3 of this",
            },
            "poll_interval": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 60,
                "default": default.poll_interval,
                "description": "seconds between looks at the store for events appended by "
                "other daemons (this daemon's own appends wake it at once); below lease_ttl",
            },
            "linger": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "default": default.linger,
                "description": "seconds to wait for more events before the next batch while "
                f"they keep coming (one arrived while {what} handled the last batch, or "
                "within this long of it), or until 128 appends are waiting: under load, "
                "fewer and larger batches for up to this much more delay; after a longer idle "
                "spell an event is handled at once (0: never wait)",
            },
        },
    )


def build_leased(ctx: Building, part: str, default: LeasedSettings) -> LeasedSettings:
    """`runtime.<part>`: a lease ttl and a poll interval, the interval below the ttl."""
    spec = ctx.runtime(part)
    settings = LeasedSettings(
        lease_ttl=float(spec.get("lease_ttl", default.lease_ttl)),
        poll_interval=float(spec.get("poll_interval", default.poll_interval)),
        linger=float(spec.get("linger", default.linger)),
    )
    if settings.poll_interval >= settings.lease_ttl:
        # a standby would look for work less often than a lease can lapse
        path: Path = ("runtime", part, "poll_interval")
        ctx.reporter.error(path, f"must be less than lease_ttl ({settings.lease_ttl:g} s)", at=path)
    return settings
