"""The doctor's pure checks: Docker API, free disk from df, clock skew."""

from __future__ import annotations

from datetime import UTC, datetime

from app.doctor.checks import clock_check, disk_check, docker_check, parse_df

NOW = datetime(2026, 12, 2, 18, 0, 0, tzinfo=UTC)


def test_docker_api_old_enough_for_gpu_requests() -> None:
    assert docker_check({"docker_version": "20.10.24", "api_version": "1.41"}).status == "ok"
    old = docker_check({"docker_version": "18.09.1", "api_version": "1.39"})
    assert old.status == "warn" and "1.40" in (old.fix or "")


def test_free_disk_from_df() -> None:
    text = (
        "Filesystem 1024-blocks Used Available Capacity Mounted on\noverlay 1000 10 52428800 1% /\n"
    )
    assert parse_df(text) == 52428800
    assert parse_df("") is None and parse_df("header only\n") is None
    assert disk_check(52428800, "/var/lib/docker", None).status == "ok"  # 50 GiB
    assert disk_check(5 * 1024 * 1024, "/var/lib/docker", None).status == "warn"
    assert disk_check(1024 * 1024, "/var/lib/docker", None).status == "fail"
    unknown = disk_check(None, "/var/lib/docker", "no image")
    assert unknown.status == "warn" and "no image" in unknown.detail


def test_clock_skew_with_nanoseconds_and_offsets() -> None:
    assert clock_check("2026-12-02T18:00:00.123456789Z", NOW).status == "ok"
    assert clock_check("2026-12-02T19:00:01+01:00", NOW).status == "ok"
    assert clock_check("2026-12-02T18:00:10Z", NOW).status == "warn"
    late = clock_check("2026-12-02T17:58:00Z", NOW)
    assert late.status == "fail" and "-120.0s" in late.detail
    assert clock_check(None, NOW).status == "warn"
    assert clock_check("yesterday", NOW).status == "warn"
