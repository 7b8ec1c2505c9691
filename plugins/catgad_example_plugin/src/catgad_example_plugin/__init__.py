"""Example catgad plugin handlers: found by catgad through the `catgad.handlers` entry points."""
