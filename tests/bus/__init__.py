"""Tests of catgad's bus."""
