"""Pictures of sagas and processes: Mermaid text (catgad diagram, GET .../diagram)."""
