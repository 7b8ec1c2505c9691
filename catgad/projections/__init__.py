"""Projections: read models built from the event log, kept exactly in step with it.

    model.py       the loaded `projections:` section (dataclasses)
    schema.py      its JSON Schema; build.py / lint.py turn it into the model and check it
    mapping.py     pure: an event (and the rows it reads) -> upsert/update/delete operations
    fastcel.py     the common CEL subset as Python closures (CEL decides whenever unsure);
                   fastcel_values.py its arithmetic and functions
    coalesce.py    pure: a batch's operations folded per row, same final rows
    targets/       where read models live: sqlite, postgres, redis (rows and checkpoint in
                   one transaction, moved by compare-and-set), webhook and plugin (at least
                   once, deduplicated by event id)
    consume.py     one batch applied; poison events retried, dead-lettered or failing
    runner.py      one projection's consumer: lease, batches, rebuild, control;
                   records.py: batches read light (records, not envelopes) where it can
    status.py      what GET /projections shows; progress.py: head, lag, rate
    deadletters.py, replay.py   dead letters recorded, listed and replayed after a fix
    manager.py     every projection of a runtime

This package's __init__ imports nothing, so loading a config imports only the parts it needs.
"""
