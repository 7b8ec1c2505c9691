"""Tests of catgad's http."""
