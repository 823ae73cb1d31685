"""Test data, and the helpers that build real Git repositories from it at test time."""
