"""Alembic: upgrade/downgrade round trip, the seeded tasks, and no drift from the models."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.db import Database, alembic_config
from app.models import metadata
from app.tasks.models import TaskCreate
from tests.pgtemplate import PgServer

SEEDED = {"log_triage", "gpu_report", "service_map"}


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "fresh.db"


@pytest.fixture
def engine(db_file: Path) -> Iterator[sa.Engine]:
    """A sync engine on the same file, for looking at what the migrations did."""
    eng = sa.create_engine(f"sqlite:///{db_file}")
    try:
        yield eng
    finally:
        eng.dispose()


def upgrade(db_file: Path, revision: str = "head") -> None:
    command.upgrade(alembic_config(f"sqlite+aiosqlite:///{db_file}"), revision)


def downgrade(db_file: Path, revision: str) -> None:
    command.downgrade(alembic_config(f"sqlite+aiosqlite:///{db_file}"), revision)


def tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def task_rows(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM task_definitions")).mappings().all()
    return {row["name"]: dict(row) for row in rows}


def test_upgrade_downgrade_upgrade(db_file: Path, engine: sa.Engine) -> None:
    upgrade(db_file)
    assert tables(engine) == set(metadata.tables)

    downgrade(db_file, "base")
    assert tables(engine) == set()

    upgrade(db_file)
    assert tables(engine) == set(metadata.tables)
    assert set(task_rows(engine)) == SEEDED


def test_seeded_tasks_exist_and_are_valid(db_file: Path, engine: sa.Engine) -> None:
    upgrade(db_file)

    rows = task_rows(engine)

    assert set(rows) == SEEDED
    table = metadata.tables["task_definitions"]
    with engine.connect() as conn:
        typed = conn.execute(sa.select(table)).mappings().all()
    for row in typed:
        body = {k: row[k] for k in TaskCreate.model_fields if row.get(k) is not None}
        TaskCreate.model_validate(body)  # what the migration wrote, the API would accept
    assert rows["gpu_report"]["requires_gpu"] == 1
    assert rows["log_triage"]["network_mode"] == "none"
    assert rows["service_map"]["network_mode"] == "host"


def test_seed_downgrade_removes_only_the_seeded_rows(db_file: Path, engine: sa.Engine) -> None:
    upgrade(db_file)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO task_definitions (name, description, image, requires_gpu, gpu_count,"
                " max_retries, enabled, created_at, updated_at) VALUES ('mine', '', 'alpine:3',"
                " 0, 0, 0, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
    seed_revision = _seed_revision()

    downgrade(db_file, f"{seed_revision}-1")

    assert set(task_rows(engine)) == {"mine"}
    upgrade(db_file)
    assert set(task_rows(engine)) == SEEDED | {"mine"}


def test_seed_keeps_a_task_that_already_has_a_seeded_name(db_file: Path, engine: sa.Engine) -> None:
    seed_revision = _seed_revision()
    upgrade(db_file, f"{seed_revision}-1")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO task_definitions (name, description, image, requires_gpu, gpu_count,"
                " max_retries, enabled, created_at, updated_at) VALUES ('log_triage', 'mine',"
                " 'alpine:3', 0, 0, 0, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )

    upgrade(db_file)

    rows = task_rows(engine)
    assert set(rows) == SEEDED
    assert rows["log_triage"]["description"] == "mine"


def test_models_and_migrations_do_not_drift(db_file: Path, engine: sa.Engine) -> None:
    upgrade(db_file)

    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "render_as_batch": True}
        )
        diffs = compare_metadata(context, metadata)

    assert diffs == []


def _seed_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    for rev in script.walk_revisions():
        if "seed task definitions" in (rev.doc or ""):
            return rev.revision
    raise AssertionError("no seed revision")


def _revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    return [rev.revision for rev in script.walk_revisions()]


async def _versions(url: str) -> list[tuple[str, ...]]:
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            rows = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
            return [tuple(r) for r in rows.all()]
    finally:
        await db.dispose()


@pytest.fixture
def new_database(request: pytest.FixtureRequest, db_backend: str, tmp_path: Path) -> Iterator[str]:
    """A database nobody migrated yet: a new SQLite file, or an empty PostgreSQL database."""
    if db_backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
        return
    server: PgServer = request.getfixturevalue("pg")
    url = server.empty_database()
    yield url
    server.drop(url)


async def test_replicas_started_at_once_on_a_new_database_migrate_once(
    tmp_path: Path, new_database: str
) -> None:
    """Three `dockfleet serve` started together on a new database all come up; the migration
    lock (file lock on SQLite, advisory lock on PostgreSQL) lets exactly one of them apply the
    revisions while the others wait, then find nothing left to do."""
    from tests.integration.test_runs_recovery import Server

    servers = [
        Server(tmp_path / f"r{i}", cli=True, DOCKFLEET_DATABASE_URL=new_database) for i in range(3)
    ]
    ports = {s.port for s in servers}
    assert len(ports) == 3
    try:
        await asyncio.gather(*(s.start() for s in servers))
        logs = [s.log() for s in servers]
    finally:
        for server in servers:
            server.kill()
    applied = [log.count("Running upgrade") for log in logs]
    assert sorted(applied) == [0, 0, len(_revisions())], (applied, logs)
    head = ScriptDirectory.from_config(alembic_config(new_database)).get_current_head()
    assert await _versions(new_database) == [(head,)]
    assert len({s.instance_id() for s in servers}) == 1


@pytest.mark.postgresql
def test_migrations_round_trip_and_do_not_drift_on_postgresql(pg: PgServer) -> None:
    """The same revisions on PostgreSQL: up, down to nothing, up again; no drift from the models."""
    url = pg.empty_database()
    try:
        cfg = alembic_config(url)
        command.upgrade(cfg, "head")
        command.downgrade(cfg, "base")
        assert pg.fetch(url, "SELECT version_num FROM alembic_version") == []
        command.upgrade(cfg, "head")
        names = {r[0] for r in pg.fetch(url, "SELECT name FROM task_definitions")}
        assert names == SEEDED

        async def drift() -> list[Any]:
            db = Database(url)
            try:
                async with db.engine.connect() as conn:

                    def compare(sync_conn: sa.Connection) -> list[Any]:
                        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                        return list(compare_metadata(context, metadata))

                    return await conn.run_sync(compare)
            finally:
                await db.dispose()

        assert asyncio.run(drift()) == []
    finally:
        pg.drop(url)
