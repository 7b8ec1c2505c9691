"""Tests of catgad's cli."""
