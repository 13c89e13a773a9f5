"""Pure rules: staleness arithmetic and why a host cannot take a run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.hosts.eligibility import ineligible_reasons, is_stale
from tests.builders import make_host

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
STALE_AFTER = 300.0


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_never_seen_is_stale() -> None:
    assert is_stale(None, NOW, STALE_AFTER) is True


@pytest.mark.parametrize(
    ("seconds_ago", "stale"),
    [(0, False), (STALE_AFTER - 1, False), (STALE_AFTER, False), (STALE_AFTER + 0.001, True)],
)
def test_stale_only_past_the_limit(seconds_ago: float, stale: bool) -> None:
    assert is_stale(ago(seconds_ago), NOW, STALE_AFTER) is stale


def test_a_good_host_is_eligible() -> None:
    assert ineligible_reasons(make_host(now=NOW), NOW, STALE_AFTER) == []


def test_a_good_gpu_host_is_eligible_for_a_gpu_run() -> None:
    host = make_host(now=NOW, capabilities={"gpus": True, "gpu_count": 2, "max_concurrency": 1})

    assert ineligible_reasons(host, NOW, STALE_AFTER, gpu_need=2) == []


def test_disabled() -> None:
    assert ineligible_reasons(make_host(now=NOW, enabled=False), NOW, STALE_AFTER) == ["disabled"]


def test_draining() -> None:
    assert ineligible_reasons(make_host(now=NOW, draining=True), NOW, STALE_AFTER) == ["draining"]


def test_unhealthy_says_the_last_error() -> None:
    host = make_host(now=NOW, healthy=False, last_error="cannot connect to Docker")

    assert ineligible_reasons(host, NOW, STALE_AFTER) == ["unhealthy: cannot connect to Docker"]
    assert ineligible_reasons(make_host(now=NOW, healthy=False), NOW, STALE_AFTER) == ["unhealthy"]


def test_stale() -> None:
    seen = make_host(last_seen_at=ago(STALE_AFTER + 60))
    never = make_host(last_seen_at=None)

    assert ineligible_reasons(seen, NOW, STALE_AFTER) == ["stale: last seen 360s ago"]
    assert ineligible_reasons(never, NOW, STALE_AFTER) == ["stale: never seen"]


def test_no_gpus() -> None:
    assert ineligible_reasons(make_host(now=NOW), NOW, STALE_AFTER, gpu_need=1) == ["no GPUs"]


def test_too_few_gpus() -> None:
    host = make_host(now=NOW, capabilities={"gpus": True, "gpu_count": 1, "max_concurrency": 1})

    assert ineligible_reasons(host, NOW, STALE_AFTER, gpu_need=2) == ["has 1 GPUs, run needs 2"]


def test_every_reason_at_once() -> None:
    host = make_host(enabled=False, draining=True, healthy=False, last_seen_at=None)

    reasons = ineligible_reasons(host, NOW, STALE_AFTER, gpu_need=1)

    assert reasons == ["disabled", "draining", "unhealthy", "stale: never seen", "no GPUs"]
