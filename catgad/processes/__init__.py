"""Process managers (SPEC section 11): state machines over events, with durable timers, human
approval and commands sent on entering a state. The section's schema, build, lint and model
live here beside the decisions (pure) and the scenario runner."""
