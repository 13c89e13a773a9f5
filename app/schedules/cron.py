"""A small 5-field cron evaluator (Vixie-cron semantics) on IANA time zones.

    minute hour day-of-month month day-of-week      e.g.  30 2 * * mon-fri

* Fields: `*`, numbers, ranges `a-b`, steps `*/n`, `a-b/n`, `a/n` (= `a-max/n`), comma lists;
  month names `jan`..`dec`, day names `sun`..`sat` (0 and 7 are Sunday), case-insensitive.
* Aliases: @yearly @annually @monthly @weekly @daily @midnight @hourly (@reboot is refused).
* Day-of-month OR day-of-week (Vixie): when both fields are restricted (neither starts with
  `*`), a day matches if EITHER matches (`0 0 1 * mon` = the 1st and every Monday); when one
  starts with `*`, both must (which makes the starred one irrelevant). As in Vixie cron, `*/2`
  counts as starred.
* Daylight saving time, as Vixie cron and cronie do it: a job whose minute and hour fields
  are both fixed (no leading `*`) is a *fixed-time* job, the others are *wildcard* jobs.
  - Spring forward (a wall time that does not exist): a fixed-time job due in the gap fires
    once at the first valid instant after it (`30 2 * * *` in Europe/Berlin on the last Sunday
    of March fires at 03:00 CEST); a wildcard job's times in the gap are skipped (they never
    happen, as every-minute jobs do not run for minutes the clock jumped over).
  - Fall back (a wall time that happens twice): a fixed-time job fires once, at the first
    occurrence; a wildcard job fires at both instants (`0 * * * *` runs at 02:00 CEST and
    again at 02:00 CET: they are an hour apart, and it is an hourly job).

Instants are aware UTC datetimes; seconds are ignored (fires are on whole minutes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
# (name, low, high, names)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, DAYS),
)
MAX_SHIFT = timedelta(hours=3)  # larger than any UTC offset change at a transition
SEARCH_YEARS = 30  # `0 0 29 2 mon`-style expressions fire rarely; none needs more
MAX_EXPRESSION = 200


class CronError(ValueError):
    """An expression or a time zone that cannot be used; the message says why."""


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (e.g. Europe/Berlin), or CronError."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise CronError(f"unknown time zone {name[:64]!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(f"unknown time zone {name[:64]!r} (use an IANA name)") from None


def _value(text: str, field: str, low: int, high: int, names: dict[str, int]) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise CronError(f"{field}: {text!r} is not a number" + (" or a name" if names else ""))
    number = int(text)
    if not low <= number <= high:
        raise CronError(f"{field}: {number} is outside {low}-{high}")
    return number


def _field(text: str, field: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    out: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"{field}: empty list item in {text!r}")
        body, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"{field}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            start, end = (_value(a, field, low, high, names), _value(b, field, low, high, names))
            if start > end:
                raise CronError(f"{field}: range {body!r} goes backwards")
        else:
            start = _value(body, field, low, high, names)
            end = high if slash else start
        out.update(range(start, end + 1, step))
    return frozenset(out)


@dataclass(frozen=True)
class Cron:
    """A parsed expression; `next_after(instant, tz)` is the next fire strictly after it."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    dom_star: bool
    dow_star: bool
    wildcard: bool  # minute or hour starts with '*': see the module's DST rules

    @classmethod
    def parse(cls, expression: str) -> Cron:
        """Parse an expression or an alias; CronError says what is wrong."""
        text = " ".join(expression.split())
        if not text:
            raise CronError("empty expression")
        if len(text) > MAX_EXPRESSION:
            raise CronError(f"longer than {MAX_EXPRESSION} characters")
        if text.startswith("@"):
            if text.lower() not in ALIASES:
                raise CronError(f"unknown alias {text[:20]!r}; use one of {', '.join(ALIASES)}")
            text = ALIASES[text.lower()]
        parts = text.split(" ")
        if len(parts) != 5:
            raise CronError(f"expected 5 fields (minute hour day month weekday), got {len(parts)}")
        sets = [_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
        weekdays = frozenset(d % 7 for d in sets[4])
        cron = cls(
            expression=" ".join(expression.split()),
            minutes=sets[0],
            hours=sets[1],
            days=sets[2],
            months=sets[3],
            weekdays=weekdays,
            dom_star=parts[2].startswith("*"),
            dow_star=parts[4].startswith("*"),
            wildcard=parts[0].startswith("*") or parts[1].startswith("*"),
        )
        if cron._next_wall(datetime(2000, 1, 1)) is None:
            raise CronError(f"{expression.strip()[:40]!r} never fires (no such day)")
        return cron

    # -- wall-clock search -------------------------------------------------------------------

    def _day_ok(self, day: datetime) -> bool:
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def _next_wall(self, after: datetime) -> datetime | None:
        """The first naive wall time strictly after `after` that the fields match."""
        t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t.year + SEARCH_YEARS
        while t.year <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0)
                continue
            if not self._day_ok(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            hour = min((h for h in self.hours if h >= t.hour), default=None)
            if hour is None:
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if hour != t.hour:
                t = t.replace(hour=hour, minute=0)
            minute = min((m for m in self.minutes if m >= t.minute), default=None)
            if minute is None:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            return t.replace(minute=minute)
        return None

    def _instants(self, wall: datetime, tz: ZoneInfo) -> list[datetime]:
        """The instants at which wall time `wall` fires (none, one, or two: see DST rules)."""
        early = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
        late = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
        if early.astimezone(tz).replace(tzinfo=None) != wall:  # in a spring-forward gap
            if self.wildcard:
                return []
            return [_gap_end(wall, min(early, late), tz)]
        if early != late:  # happens twice (fall back)
            return [early, late] if self.wildcard else [early]
        return [early]

    def next_after(self, instant: datetime, tz: ZoneInfo) -> datetime | None:
        """The first fire strictly after `instant` (aware), in UTC; None if there is none."""
        after = instant.astimezone(UTC)
        # A wall time a little before ours may be a later instant (the repeated hour).
        cursor = after.astimezone(tz).replace(tzinfo=None) - MAX_SHIFT
        best: datetime | None = None
        best_wall: datetime | None = None
        for _ in range(100_000):  # bounded; a match is found long before
            wall = self._next_wall(cursor)
            if wall is None or (best_wall is not None and wall > best_wall + 2 * MAX_SHIFT):
                break
            for fire in self._instants(wall, tz):
                if fire > after and (best is None or fire < best):
                    best, best_wall = fire, wall
            cursor = wall
        return best

    def latest_at_or_before(
        self, now: datetime, tz: ZoneInfo, not_before: datetime
    ) -> datetime | None:
        """The last fire in [not_before, now] (for catch_up=latest), or None."""
        floor = not_before.astimezone(UTC) - timedelta(microseconds=1)
        for window in (
            timedelta(minutes=2),
            timedelta(hours=2),
            timedelta(days=2),
            timedelta(days=40),
            timedelta(days=400),
            timedelta(days=366 * SEARCH_YEARS),
        ):
            start = max(floor, now - window)
            fire = self.next_after(start, tz)
            if fire is not None and fire <= now:
                while (following := self.next_after(fire, tz)) is not None and following <= now:
                    fire = following
                return fire
            if start == floor:
                return None
        return None


def _gap_end(wall: datetime, lower: datetime, tz: ZoneInfo) -> datetime:
    """The first instant whose wall time is after `wall` (the end of its gap), to the minute."""
    t = lower.replace(second=0, microsecond=0)
    for _ in range(24 * 60):
        if t.astimezone(tz).replace(tzinfo=None) > wall:
            return t
        t += timedelta(minutes=1)
    return t  # not reached: no gap is longer than a day


def parse(expression: str) -> Cron:
    """Cron.parse, for short."""
    return Cron.parse(expression)
