"""Every section of a catgad config, in the order they are built.

A feature or backend owns its section beside its code (schema fragment, build,
lint); adding one to catgad is adding it here. A reactor's section value also
tells the daemon how to run it (catgad.reactors.feature), so a new reactor
needs nothing else outside its own package.
"""

from __future__ import annotations

from typing import Any

from catgad.aggregates.section import AGGREGATES, COMMANDS, EVENTS
from catgad.bus.section import BUS
from catgad.config.section import Section
from catgad.handlers.section import HANDLERS
from catgad.processes.section import PROCESSES
from catgad.projections.section import PROJECTIONS
from catgad.sagas.section import SAGAS
from catgad.service.section import SERVICE
from catgad.store.section import STORE
from catgad.testing.section import TESTS

# Built in this order: a section may read what the ones before it built.
SECTIONS: tuple[Section[Any], ...] = (
    SERVICE,
    STORE,
    BUS,
    HANDLERS,
    AGGREGATES,
    COMMANDS,
    EVENTS,
    TESTS,
    PROJECTIONS,
    SAGAS,
    PROCESSES,
)
