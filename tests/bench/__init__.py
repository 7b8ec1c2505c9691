"""Tests of catgad's bench."""
