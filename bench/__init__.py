"""The catgad benchmark: the Order workload through catgad, raw sqlite3 and eventsourcing."""
