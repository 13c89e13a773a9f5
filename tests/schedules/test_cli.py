"""`dockfleet schedules …`, `status` with next fires, and the Python client, against a real
server subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.client import DockfleetClient, DockfleetError
from tests.live_server import LiveServer, live_server
from tests.test_cli import Cli


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, migrated_template: Path
) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("sched-cli"), template=migrated_template) as started:
        yield started


def test_schedules_commands(server: LiveServer) -> None:
    cli = Cli(server.url)
    cli("directives", "add", "nightly-dir", "--task", "log_triage")
    out = cli(
        "schedules",
        "add",
        "nightly",
        "--directive",
        "nightly-dir",
        "--cron",
        "30 2 * * *",
        "--timezone",
        "Europe/Berlin",
        "--overlap",
        "queue",
    ).stdout
    assert "created schedule nightly" in out and "next fire" in out
    listed = cli("schedules", "list").stdout
    assert "nightly" in listed and "30 2 * * *" in listed and "Europe/Berlin" in listed
    shown = cli.json("schedules", "show", "nightly")
    assert shown["overlap"] == "queue" and shown["next_fire_at"].endswith(":30:00Z")
    assert cli.json("schedules", "disable", "nightly")["next_fire_at"] is None
    assert "no" in cli("schedules", "list", "--disabled").stdout
    assert cli.json("schedules", "enable", "nightly")["next_fire_at"] is not None
    status = cli("status").stdout
    assert "next fires" in status and "nightly" in status
    assert cli.json("status")["next_fires"][0]["name"] == "nightly"
    # No host is registered: run-now is refused as a launch would be (503), and recorded.
    err = cli("schedules", "run-now", "nightly", code=1).stderr
    assert "No available hosts" in err
    shown_text = cli("schedules", "show", "nightly").stdout
    assert "run_now" in shown_text and "503" in shown_text
    bad = cli(
        "schedules", "add", "bad", "--directive", "nightly-dir", "--cron", "61 * * * *", code=1
    ).stderr
    assert "cron" in bad and "61" in bad
    assert "deleted" in cli("schedules", "rm", "nightly").stdout
    cli("schedules", "show", "nightly", code=1)


def test_the_python_client(server: LiveServer) -> None:
    with DockfleetClient(server.url) as fleet:
        directive = fleet.directives.create(name="client-dir", tasks=["log_triage"])
        created = fleet.schedules.create(
            name="every-5", directive_id=directive.id, cron="*/5 * * * *", catch_up="latest"
        )
        assert created.catch_up == "latest" and created.next_fire_at is not None
        assert fleet.schedules.update("every-5", enabled=False).next_fire_at is None
        assert any(s.name == "every-5" for s in fleet.schedules.iter())
        with pytest.raises(DockfleetError) as refused:
            fleet.schedules.run_now(created.id)
        assert refused.value.status == 503
        fires = fleet.schedules.fires("every-5")
        assert fires.count == 1 and fires.results[0].status_code == 503
        fleet.schedules.delete(created.id)
        with pytest.raises(DockfleetError) as gone:
            fleet.schedules.get(created.id)
        assert gone.value.status == 404


def test_notifiers_commands(server: LiveServer) -> None:
    from tests.notifiers.receiver import Receiver

    cli = Cli(server.url)
    with Receiver() as rx:
        url = rx.url("/hook/tok3n")
        out = cli(
            "notifiers", "add", "ops", "--kind", "webhook", "--secret-env", "HOOK_SECRET",
            "--event", "schedule.failed", "--schedule", "424242", "--on-change-only",
            DOCKFLEET_NOTIFIER_URL=url, HOOK_SECRET="hm4c",
        ).stdout  # fmt: skip
        assert "created notifier ops" in out and f"127.0.0.1:{rx.port}/…" in out
        assert "tok3n" not in out
        listed = cli("notifiers", "list").stdout
        assert "ops" in listed and "schedule.failed" in listed and "on change only" in listed
        assert "tok3n" not in listed and "hm4c" not in listed
        assert "delivered (HTTP 200)" in cli("notifiers", "test", "ops").stdout
        rx.default = 404
        assert "not delivered (failed): HTTP 404" in cli("notifiers", "test", "ops", code=1).stderr
        table = cli("notifiers", "deliveries", "ops").stdout
        assert "notifier.test" in table and "delivered" in table and "failed" in table
        [failed] = cli.json("notifiers", "deliveries", "ops", "--status", "failed")
        assert failed["last_status_code"] == 404
        assert "--kind" in cli("notifiers", "add", "--help").stdout
        cli("notifiers", "add", "x", "--kind", "ntfy", code=2)  # no URL
        bad = cli("notifiers", "add", "x", "--kind", "ntfy", "--url", "http://8.8.8.8/t", code=1)
        assert "DOCKFLEET_NOTIFIER_ALLOWED_NETWORKS" in bad.stderr
        assert "deleted" in cli("notifiers", "rm", "ops").stdout
    with DockfleetClient(server.url) as fleet:
        assert [n.name for n in fleet.notifiers.iter()] == []
