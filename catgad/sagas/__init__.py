"""Sagas (SPEC section 10): ordered steps, each a command, undone by compensating commands in
reverse order when a step fails. The section's schema, build, lint and model live here
beside the decisions (pure) and the runner (I/O)."""
