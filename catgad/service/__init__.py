"""The `service:` section: the service's name, HTTP address and access tokens (SPEC 12)."""
