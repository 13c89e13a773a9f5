"""Test suite of dockfleet (also makes `tests.fleet` importable)."""
