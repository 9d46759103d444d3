"""Five-field cron schedules in UTC: parsing, validation, and the times a schedule fires.

Standard library only: this module is also shipped, verbatim, into the workload container as the
first half of the backup scheduler program (see `workload.scheduler`).
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
from collections.abc import Iterator

__all__ = ["Cron", "CronError", "parse", "validate"]

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# Every calendar pattern (leap years, weekdays of dates) repeats after 400 Gregorian years, so a
# search that finds nothing within that many months will never find anything.
SEARCH_MONTHS = 400 * 12
_ONE_MINUTE = dt.timedelta(minutes=1)


class CronError(ValueError):
    """Raised when a cron expression is malformed or describes a time that never comes."""


@dataclasses.dataclass(frozen=True)
class _Field:
    """How one of the five fields is written: its name, bounds and the names it accepts."""

    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i

    def parse(self, text: str) -> tuple[int, ...]:
        """The sorted values a field's text selects."""
        values: set[int] = set()
        for item in text.split(","):
            values.update(self._item(item))
        return tuple(sorted(values))

    def _item(self, item: str) -> range:
        """One comma-separated item: `*`, `a`, `a-b`, `*/n` or `a-b/n`."""
        base, slash, step_text = item.partition("/")
        step = self._step(item, step_text) if slash else 1
        if base == "*":
            return range(self.low, self.high + 1, step)
        start_text, dash, end_text = base.partition("-")
        start = self._value(item, start_text)
        if not dash:
            if slash:  # some crons read `a/n` as `a-max/n`, others as `a`: ask for the range
                raise self._error(
                    item, f"a step needs a range, such as {start}-{self.high}/{step}"
                )
            return range(start, start + 1)
        end = self._value(item, end_text)
        if end < start:
            raise self._error(item, f"the range starts after it ends ({start} > {end})")
        return range(start, end + 1, step)

    def _step(self, item: str, text: str) -> int:
        span = self.high - self.low + 1
        if not (_is_number(text) and 1 <= int(text) <= span):
            raise self._error(item, f"the step {text!r} is not a number from 1 to {span}")
        return int(text)

    def _value(self, item: str, text: str) -> int:
        if text.lower() in self.names:
            return self.low + self.names.index(text.lower())
        if not text:
            raise self._error(item, "a number is missing")
        if not (_is_number(text) and self.low <= int(text) <= self.high):
            expected = f"a number from {self.low} to {self.high}"
            if self.names:
                expected += f" or a name ({'/'.join(self.names)})"
            raise self._error(item, f"{text!r} is not {expected}")
        return int(text)

    def _error(self, item: str, reason: str) -> CronError:
        return CronError(f"{self.name} {item!r}: {reason}")


# Day-of-week accepts 7 as a second Sunday; it is folded onto 0 after parsing.
_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, MONTH_NAMES),
    _Field("day-of-week", 0, 7, WEEKDAY_NAMES),
)


@dataclasses.dataclass(frozen=True)
class Cron:
    """A parsed schedule. Times are UTC; fires are whole minutes.

    Day rule of standard cron: when both day-of-month and day-of-week are restricted (neither
    starts with `*`), a day matches if EITHER matches; otherwise both must match.
    """

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 = Sunday
    either_day: bool  # both day fields restricted: the OR rule applies

    @classmethod
    def parse(cls, expression: str) -> Cron:
        """Parse five fields or a macro (`@hourly`, `@daily`, `@weekly`, `@monthly`, ...).

        Raises:
            CronError: malformed, or never fires (`0 0 31 2 *`); the message names the field.
        """
        text = expression.strip()
        fields = MACROS.get(text.lower(), text).split()
        if len(fields) != len(_FIELDS):
            raise CronError(
                f"expected 5 fields (minute hour day-of-month month day-of-week) or a macro"
                f" ({', '.join(MACROS)}), got {len(fields)} in {expression!r}"
            )
        minutes, hours, days, months, weekdays = (
            spec.parse(field) for spec, field in zip(_FIELDS, fields, strict=True)
        )
        cron = cls(
            expression=text,
            minutes=minutes,
            hours=hours,
            days=days,
            months=months,
            weekdays=tuple(sorted({day % 7 for day in weekdays})),
            either_day=not fields[2].startswith("*") and not fields[4].startswith("*"),
        )
        cron._check_possible()
        return cron

    def _check_possible(self) -> None:
        # Each valid month/day date falls on every weekday over the years, so the weekday field
        # never makes a schedule impossible; only a day that no selected month has does.
        if self.either_day:
            return
        longest = max(calendar.monthrange(2000, month)[1] for month in self.months)  # 2000: leap
        if self.days[0] > longest:
            raise CronError(
                f"day-of-month: no selected month has day {self.days[0]}: "
                f"{self.expression!r} never fires"
            )

    def __str__(self) -> str:
        return self.expression

    def matches(self, moment: dt.datetime) -> bool:
        """Whether the schedule fires at the minute containing `moment` (UTC)."""
        moment = _utc(moment)
        return (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and self._day_matches(moment.date())
        )

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first fire strictly after `moment` (aware; returned in UTC, second 0)."""
        start = _utc(moment).replace(second=0, microsecond=0) + _ONE_MINUTE
        for day in self._days(start.date(), forward=True):
            floor = (start.hour, start.minute) if day == start.date() else (0, 0)
            hour_minute = next((t for t in self._times() if t >= floor), None)
            if hour_minute is not None:
                return _at(day, hour_minute)
        raise CronError(f"{self.expression!r} never fires")  # unreachable after parse()

    def previous_at_or_before(self, moment: dt.datetime) -> dt.datetime:
        """The last fire at or before `moment` (aware; returned in UTC, second 0)."""
        end = _utc(moment).replace(second=0, microsecond=0)
        for day in self._days(end.date(), forward=False):
            ceiling = (end.hour, end.minute) if day == end.date() else (23, 59)
            hour_minute = next((t for t in reversed(self._times()) if t <= ceiling), None)
            if hour_minute is not None:
                return _at(day, hour_minute)
        raise CronError(f"{self.expression!r} never fires")  # unreachable after parse()

    def _times(self) -> list[tuple[int, int]]:
        """The (hour, minute) pairs of a firing day, in order."""
        return [(hour, minute) for hour in self.hours for minute in self.minutes]

    def _day_matches(self, day: dt.date) -> bool:
        in_month = day.day in self.days
        in_week = day.isoweekday() % 7 in self.weekdays
        return (in_month or in_week) if self.either_day else (in_month and in_week)

    def _days(self, first: dt.date, forward: bool) -> Iterator[dt.date]:
        """Matching days from `first` (included) onwards or backwards, month by month."""
        year, month = first.year, first.month
        for _ in range(SEARCH_MONTHS):
            if not dt.MINYEAR <= year <= dt.MAXYEAR:
                return
            if month in self.months:
                length = calendar.monthrange(year, month)[1]
                if forward:
                    start = first.day if (year, month) == (first.year, first.month) else 1
                    numbers = range(start, length + 1)
                else:
                    end = first.day if (year, month) == (first.year, first.month) else length
                    numbers = range(end, 0, -1)
                for number in numbers:
                    day = dt.date(year, month, number)
                    if self._day_matches(day):
                        yield day
            year, month = _step_month(year, month, 1 if forward else -1)


def _is_number(text: str) -> bool:
    # str.isdigit() alone also accepts non-ASCII digits and superscripts.
    return text.isascii() and text.isdigit()


def _step_month(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + month - 1 + delta
    return index // 12, index % 12 + 1


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is required, got {moment!r}")
    return moment.astimezone(dt.timezone.utc)


def _at(day: dt.date, hour_minute: tuple[int, int]) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, *hour_minute, tzinfo=dt.timezone.utc)


def parse(expression: str) -> Cron:
    """Parse a cron expression; see `Cron.parse`."""
    return Cron.parse(expression)


def validate(expression: str) -> str | None:
    """What is wrong with a cron expression, or None when it is valid."""
    try:
        Cron.parse(expression)
    except CronError as error:
        return str(error)
    return None
