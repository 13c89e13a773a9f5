"""Fault tests: the promises under faults, counted from the daemons' own view. Every test here
runs on the real fleet and is marked `integration` and `faults`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fleet import Daemon, Fleet

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="session")
def fault(fleet: Fleet) -> Daemon:
    """The fault suite's own daemon (TCP + mutual TLS, fake GPUs, own netns), started once."""
    return fleet.fault


@pytest.fixture
def healthy_fault(fault: Daemon) -> Daemon:
    """The fault daemon, with whatever an earlier test left undone undone."""
    fault.undo_faults()
    return fault
