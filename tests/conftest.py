"""Shared fixtures; backend fixtures live beside their tests."""
