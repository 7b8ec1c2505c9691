"""The leased, checkpointed loop that everything consuming the event log runs on (the relay,
projections, reactors), the components a Runtime starts and stops, and their clock."""
