"""Integration fixtures: the real dockerd/sshd fleet (session scope), auto `integration` marks.

Without root or dockerd/sshd the fleet skips, except with CI=true, where it fails instead.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import aiodocker
import pytest

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parents[1]
if str(_ROOT) not in sys.path:  # `tests.fleet` must import even when the project isn't installed
    sys.path.insert(0, str(_ROOT))

from tests.fleet import Daemon, Fleet, start_fleet  # noqa: E402
from tests.fleet.aio import docker_for as _docker_for  # noqa: E402

_TOOLS = ("dockerd", "containerd", "runc", "nsenter", "ip", "openssl", "ssh-keygen", "umount")


def _missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "integration tests need root (network namespaces, dockerd)"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    missing += [p for p in ("/usr/sbin/sshd", "/bin/busybox") if not os.access(p, os.X_OK)]
    return f"integration tests need {', '.join(missing)}" if missing else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    reason = _missing_prerequisite()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    started = start_fleet()
    try:
        yield started
    finally:
        started.teardown()


@pytest.fixture
def docker_for() -> Callable[[Daemon], aiodocker.Docker]:
    """`async with docker_for(fleet.sock) as docker:` -> aiodocker client on its unix socket."""
    return _docker_for
