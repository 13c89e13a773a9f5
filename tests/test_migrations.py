"""Alembic: upgrade/downgrade round trip, the seeded tasks, and no drift from the models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.db import alembic_config
from app.models import metadata
from app.tasks.models import TaskCreate

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


def test_processes_migrating_a_new_database_at_once_all_come_up(tmp_path: Path) -> None:
    """Several servers starting together on a new database: one migrates, the others wait."""
    import subprocess
    import sys

    url = f"sqlite+aiosqlite:///{tmp_path / 'together.db'}"
    code = f"from app.db import upgrade_sync; upgrade_sync({url!r})"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(3)]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    eng = sa.create_engine(url.replace("+aiosqlite", ""))
    try:
        with eng.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    finally:
        eng.dispose()
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert versions == [(head,)]
