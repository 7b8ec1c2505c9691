"""Tests of catgad's diagrams."""
