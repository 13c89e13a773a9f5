"""Schemathesis over /openapi.json: a few hundred generated requests per operation, valid and
invalid, and not one 5xx nor one answer outside the documented schemas.

The server runs with its monitor off, and its Docker pool refuses every connection (nothing it
registers is ever contacted: a generated `?check=true` is an unhealthy answer, not a packet).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from app.engine.endpoint import Endpoint
from app.engine.pool import DockerPool
from app.errors import HostUnreachable
from app.main import create_app
from tests.conftest import make_settings

EXAMPLES = int(os.environ.get("DOCKFLEET_FUZZ_EXAMPLES", "200"))


class NoConnections(DockerPool):
    """A pool that never opens a connection: the fuzzer's hosts stay where they are."""

    async def _open(self, ep: Endpoint) -> Any:
        raise HostUnreachable(f"{ep.name}: connections are off while fuzzing")


def _fuzzed_app(database: Path) -> Any:
    # Streams (logs ?follow=true, GET /api/events/) end at once, so each case has an end.
    settings = make_settings(f"sqlite+aiosqlite:///{database}", follow_max_seconds=0.05)
    app = create_app(settings, migrate=False)
    state = app.state.dockfleet
    state.pool = NoConnections(state.pool.deadlines, state.pool.networks)
    assert state.monitor is not None
    state.monitor.pool = state.pool
    state.instance_id = "fuzz"

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        yield  # no background services: nothing is placed, checked or swept

    app.router.lifespan_context = lifespan
    return app


# The schema is read at collection (schemathesis parametrizes by operation); the database file
# is made from the migrated template just before the first case runs.
_DIR = Path(tempfile.mkdtemp(prefix="dockfleet-fuzz-"))
atexit.register(shutil.rmtree, _DIR, True)
_DB = _DIR / "fuzz.db"
schema = schemathesis.openapi.from_asgi("/openapi.json", _fuzzed_app(_DB))


@pytest.fixture(autouse=True, scope="module")
def _database(migrated_template: Path) -> None:
    if not _DB.exists():
        shutil.copy(migrated_template, _DB)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_5xx_and_every_answer_fits_its_schema(case: Any) -> None:
    response = case.call()
    if response.status_code >= 500:
        # The one 5xx the runbook itself specifies: a launch no host could ever take.
        body = response.json()
        assert (response.status_code, body.get("code")) == (503, "no_available_hosts"), (
            response.status_code,
            response.text[:500],
        )
    case.validate_response(
        response,
        checks=[
            checks.response_schema_conformance,
            checks.status_code_conformance,
            checks.content_type_conformance,
        ],
    )
