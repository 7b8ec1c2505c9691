"""What ties catgad together: the registry of config sections (catgad.app.registry), the
schema gathered from them (catgad.app.schema) and the loader that checks a config against
all of them (catgad.app.load)."""
