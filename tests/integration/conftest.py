"""Integration tests: every test here runs on the real fleet (the `fleet` fixture lives in
tests/conftest.py, shared with tests/faults) and is marked `integration`."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)
