"""Tests of catgad's engine."""
