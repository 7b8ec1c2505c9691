"""Schema evolution: old events read as the newest version, and rewritten to it on demand.

upcast.py    pure upcasters chained N → N+1 → … → latest, and UpcastingStore,
             which applies them on every read path of an EventStore
migrate.py   `catgad migrate`: rewrite stored events in place through the upcasters
"""
