"""Tests of catgad's daemon."""
