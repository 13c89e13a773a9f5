"""The cron evaluator: fields, names, aliases, the day-of-month/day-of-week OR rule, DST."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from app.schedules.cron import CronError, parse, zone

BERLIN = zone("Europe/Berlin")


def fires(expr: str, start: datetime, n: int, tz: str = "UTC") -> list[str]:
    """The next n fires after `start`, as local wall times with their zone abbreviation."""
    cron, where = parse(expr), zone(tz)
    out, t = [], start
    for _ in range(n):
        nxt = cron.next_after(t, where)
        assert nxt is not None
        assert nxt > t
        out.append(nxt.astimezone(where).strftime("%Y-%m-%d %H:%M %Z"))
        t = nxt
    return out


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_fields_ranges_steps_lists_and_names() -> None:
    assert fires("*/20 9-10 * * *", at(2026, 1, 5, 8, 59), 4) == [
        "2026-01-05 09:00 UTC",
        "2026-01-05 09:20 UTC",
        "2026-01-05 09:40 UTC",
        "2026-01-05 10:00 UTC",
    ]
    # Monday to Friday by name, 5 past on the hour in a list; 2026-01-09 is a Friday.
    assert fires("5 8,17 * * MON-fri", at(2026, 1, 9, 12), 3) == [
        "2026-01-09 17:05 UTC",
        "2026-01-12 08:05 UTC",
        "2026-01-12 17:05 UTC",
    ]
    assert fires("0 0 1 jan,jul *", at(2026, 2, 1), 2) == [
        "2026-07-01 00:00 UTC",
        "2027-01-01 00:00 UTC",
    ]
    assert fires("10/25 * * * *", at(2026, 1, 1), 3) == [  # a/n = a-max/n
        "2026-01-01 00:10 UTC",
        "2026-01-01 00:35 UTC",
        "2026-01-01 01:10 UTC",
    ]
    assert fires("0 12 * * 7", at(2026, 1, 1), 1) == ["2026-01-04 12:00 UTC"]  # 7 is Sunday
    assert fires("0 0 29 2 *", at(2026, 1, 1), 2) == [
        "2028-02-29 00:00 UTC",
        "2032-02-29 00:00 UTC",
    ]


@pytest.mark.parametrize(
    ("alias", "first"),
    [
        ("@hourly", "2026-03-04 11:00 UTC"),
        ("@daily", "2026-03-05 00:00 UTC"),
        ("@midnight", "2026-03-05 00:00 UTC"),
        ("@weekly", "2026-03-08 00:00 UTC"),
        ("@monthly", "2026-04-01 00:00 UTC"),
        ("@yearly", "2027-01-01 00:00 UTC"),
        ("@annually", "2027-01-01 00:00 UTC"),
    ],
)
def test_aliases(alias: str, first: str) -> None:
    assert fires(alias, at(2026, 3, 4, 10, 30), 1) == [first]


def test_day_of_month_or_day_of_week_as_vixie_cron() -> None:
    # Both restricted: the 13th OR any Friday (2026-02-13 is a Friday; 2026-03-13 too).
    assert fires("0 0 13 * fri", at(2026, 2, 1), 4) == [
        "2026-02-06 00:00 UTC",
        "2026-02-13 00:00 UTC",
        "2026-02-20 00:00 UTC",
        "2026-02-27 00:00 UTC",
    ]
    # A starred day-of-week: only the day of month counts ...
    assert fires("0 0 13 * *", at(2026, 2, 1), 1) == ["2026-02-13 00:00 UTC"]
    # ... and `*/2` counts as starred (Vixie's DOW_STAR): the 1st, when it is a Sunday-Saturday
    # step day (every day here), i.e. AND: only the 1st.
    assert fires("0 0 1 * */1", at(2026, 2, 2), 1) == ["2026-03-01 00:00 UTC"]


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("", "empty"),
        ("* * * *", "expected 5 fields"),
        ("60 * * * *", "minute: 60 is outside 0-59"),
        ("* 24 * * *", "hour: 24"),
        ("* * 0 * *", "day of month: 0"),
        ("* * * 13 *", "month: 13"),
        ("* * * * 8", "day of week: 8"),
        ("*/0 * * * *", "step"),
        ("5-1 * * * *", "backwards"),
        ("* * * foo *", "not a number or a name"),
        ("@reboot", "unknown alias"),
        ("0 0 31 2 *", "never fires"),
        ("1,,2 * * * *", "empty list item"),
    ],
)
def test_bad_expressions_say_why(expr: str, why: str) -> None:
    with pytest.raises(CronError, match=why):
        parse(expr)


@pytest.mark.parametrize("name", ["Mars/Olympus", "../etc/passwd", "/etc/localtime", ""])
def test_bad_zones(name: str) -> None:
    with pytest.raises(CronError, match="time zone"):
        zone(name)


# Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (02:00-02:59 do not exist);
# 2026-10-25 03:00 CEST -> 02:00 CET (02:00-02:59 happen twice).


def test_spring_forward_fixed_time_fires_once_at_the_first_valid_instant() -> None:
    assert fires("30 2 * * *", at(2026, 3, 27, 12), 3, "Europe/Berlin") == [
        "2026-03-28 02:30 CET",
        "2026-03-29 03:00 CEST",  # 02:30 does not exist: once, right after the jump
        "2026-03-30 02:30 CEST",
    ]
    # Several fixed times inside the gap still fire once.
    assert fires("0,15,45 2 * * *", at(2026, 3, 28, 12), 2, "Europe/Berlin") == [
        "2026-03-29 03:00 CEST",
        "2026-03-30 02:00 CEST",
    ]
    assert parse("30 2 * * *").next_after(at(2026, 3, 28, 12), BERLIN) == at(2026, 3, 29, 1, 0)


def test_spring_forward_wildcard_times_in_the_gap_are_skipped() -> None:
    assert fires("*/30 * * * *", at(2026, 3, 29, 0, 20), 3, "Europe/Berlin") == [
        "2026-03-29 01:30 CET",
        "2026-03-29 03:00 CEST",  # 02:00 and 02:30 never happened
        "2026-03-29 03:30 CEST",
    ]
    assert fires("30 * * * *", at(2026, 3, 29, 0, 0), 2, "Europe/Berlin") == [
        "2026-03-29 01:30 CET",
        "2026-03-29 03:30 CEST",
    ]


def test_fall_back_fixed_time_fires_once_in_the_repeated_hour() -> None:
    assert fires("30 2 * * *", at(2026, 10, 24, 12), 3, "Europe/Berlin") == [
        "2026-10-25 02:30 CEST",  # the first 02:30 only
        "2026-10-26 02:30 CET",
        "2026-10-27 02:30 CET",
    ]
    # Asked from inside the repeated hour (after the first 02:30): not again that night.
    cron = parse("30 2 * * *")
    second_0215 = at(2026, 10, 25, 1, 15)  # 02:15 CET, the second pass
    assert cron.next_after(second_0215, BERLIN) == at(2026, 10, 26, 1, 30)


def test_fall_back_wildcard_jobs_fire_in_both_passes() -> None:
    assert fires("0 * * * *", at(2026, 10, 24, 23, 30), 4, "Europe/Berlin") == [
        "2026-10-25 02:00 CEST",
        "2026-10-25 02:00 CET",
        "2026-10-25 03:00 CET",
        "2026-10-25 04:00 CET",
    ]
    instants = []
    t = at(2026, 10, 24, 23, 55)
    for _ in range(6):
        nxt = parse("*/30 * * * *").next_after(t, BERLIN)
        assert nxt is not None
        instants.append(nxt)
        t = nxt
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(instants)] == [
        1800.0
    ] * 5  # every 30 minutes of real time, through the repeated hour


def test_latest_missed_time() -> None:
    cron, utc = parse("*/5 * * * *"), zone("UTC")
    assert cron.latest_at_or_before(at(2026, 1, 1, 10, 7), utc, at(2026, 1, 1, 9)) == at(
        2026, 1, 1, 10, 5
    )
    daily = parse("@daily")
    assert daily.latest_at_or_before(at(2026, 1, 9, 10), utc, at(2026, 1, 2)) == at(2026, 1, 9)
    assert daily.latest_at_or_before(at(2026, 1, 9, 10), utc, at(2026, 1, 9, 1)) is None
