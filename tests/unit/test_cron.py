"""The cron module: every syntax form, the calendar's corners, and the errors users see."""

from __future__ import annotations

import ast
import datetime as dt
import random
import time
from pathlib import Path

import pytest

from workload import cron

UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    """`2025-01-31 23:59` (optionally with seconds) as an aware UTC datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(expression: str, start: str, count: int) -> list[str]:
    """The next `count` fires strictly after `start`, as `YYYY-MM-DD HH:MM`."""
    schedule = cron.parse(expression)
    moment = at(start)
    found: list[str] = []
    for _ in range(count):
        moment = schedule.next_after(moment)
        found.append(moment.strftime("%Y-%m-%d %H:%M"))
    return found


# --- syntax -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "minutes", "hours", "days", "months", "weekdays"),
    [
        ("* * * * *", range(60), range(24), range(1, 32), range(1, 13), range(7)),
        ("5 4 3 2 1", [5], [4], [3], [2], [1]),
        ("0,15,30,45 * * * *", [0, 15, 30, 45], range(24), range(1, 32), range(1, 13), range(7)),
        ("10-12 1-3 * * *", [10, 11, 12], [1, 2, 3], range(1, 32), range(1, 13), range(7)),
        ("*/15 */6 * * *", [0, 15, 30, 45], [0, 6, 12, 18], range(1, 32), range(1, 13), range(7)),
        ("10-30/10 1-9/4 * * *", [10, 20, 30], [1, 5, 9], range(1, 32), range(1, 13), range(7)),
        (
            "1,3-5,50-59/5 * * * *",
            [1, 3, 4, 5, 50, 55],
            range(24),
            range(1, 32),
            range(1, 13),
            range(7),
        ),
        ("* * */10 */4 *", range(60), range(24), [1, 11, 21, 31], [1, 5, 9], range(7)),
        ("* * * * */2", range(60), range(24), range(1, 32), range(1, 13), [0, 2, 4, 6]),
        ("0 0 * * 7", [0], [0], range(1, 32), range(1, 13), [0]),
        ("0 0 * * 0,7", [0], [0], range(1, 32), range(1, 13), [0]),
        ("0 0 * * 5-7", [0], [0], range(1, 32), range(1, 13), [0, 5, 6]),
        ("0 0 * * 0-7", [0], [0], range(1, 32), range(1, 13), range(7)),
        ("59 23 31 12 6", [59], [23], [31], [12], [6]),
        ("*/60 * * * *", [0], range(24), range(1, 32), range(1, 13), range(7)),
        ("1,1,1 * * * *", [1], range(24), range(1, 32), range(1, 13), range(7)),
    ],
)
def test_fields(
    expression: str,
    minutes: range | list[int],
    hours: range | list[int],
    days: range | list[int],
    months: range | list[int],
    weekdays: range | list[int],
) -> None:
    schedule = cron.parse(expression)
    assert schedule.minutes == tuple(minutes)
    assert schedule.hours == tuple(hours)
    assert schedule.days == tuple(days)
    assert schedule.months == tuple(months)
    assert schedule.weekdays == tuple(weekdays)


@pytest.mark.parametrize(
    ("names", "numbers"),
    [
        ("0 0 1 jan *", "0 0 1 1 *"),
        ("0 0 1 JAN,Jun,dec *", "0 0 1 1,6,12 *"),
        ("0 0 1 feb-apr *", "0 0 1 2-4 *"),
        ("0 0 1 jan-dec/3 *", "0 0 1 1-12/3 *"),
        ("0 0 * * sun", "0 0 * * 0"),
        ("0 0 * * MON-FRI", "0 0 * * 1-5"),
        ("0 0 * * sat,Sun", "0 0 * * 6,0"),
        ("0 0 * * tue-thu/2", "0 0 * * 2-4/2"),
        ("0 0 * * thu-7", "0 0 * * 4-6,0"),
    ],
)
def test_names_are_numbers(names: str, numbers: str) -> None:
    by_name, by_number = cron.parse(names), cron.parse(numbers)
    assert (by_name.months, by_name.weekdays) == (by_number.months, by_number.weekdays)


@pytest.mark.parametrize(
    ("macro", "expression"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        (" @Daily ", "0 0 * * *"),
    ],
)
def test_macros(macro: str, expression: str) -> None:
    expanded, written = cron.parse(macro), cron.parse(expression)
    assert dataclass_fields(expanded) == dataclass_fields(written)
    assert str(expanded) == macro.strip()


def dataclass_fields(schedule: cron.Cron) -> tuple[object, ...]:
    return (
        schedule.minutes,
        schedule.hours,
        schedule.days,
        schedule.months,
        schedule.weekdays,
        schedule.either_day,
    )


def test_whitespace_between_fields_is_free() -> None:
    assert cron.parse("  0\t3  *   * *\n").hours == (3,)
    assert str(cron.parse(" 0 3 * * * ")) == "0 3 * * *"


def test_parsed_schedules_are_values() -> None:
    assert cron.parse("0 3 * * *") == cron.parse("0 3 * * *")
    assert len({cron.parse("0 3 * * *"), cron.Cron.parse("0 3 * * *")}) == 1


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "expected 5 fields"),
        ("* * * *", "expected 5 fields"),
        ("* * * * * *", "got 6"),
        ("@reboot", "expected 5 fields"),
        ("60 * * * *", "minute '60': '60' is not a number from 0 to 59"),
        ("* 24 * * *", "hour '24'"),
        ("* * 0 * *", "day-of-month '0'"),
        ("* * 32 * *", "day-of-month '32'"),
        ("* * * 0 *", "month '0'"),
        ("* * * 13 *", "month '13'"),
        ("* * * * 8", "day-of-week '8'"),
        ("*/0 * * * *", "minute '*/0': the step '0' is not a number from 1 to 60"),
        ("*/61 * * * *", "minute '*/61'"),
        ("*/x * * * *", "minute '*/x'"),
        ("*/ * * * *", "minute '*/'"),
        ("* */-1 * * *", "hour '*/-1'"),
        ("5-1 * * * *", "minute '5-1': the range starts after it ends (5 > 1)"),
        ("* * * dec-jan *", "month 'dec-jan': the range starts after it ends"),
        ("5/10 * * * *", "minute '5/10': a step needs a range, such as 5-59/10"),
        ("a * * * *", "minute 'a'"),
        ("* * * * x", "day-of-week 'x'"),
        ("* * * january *", "month 'january'"),
        ("* * jan * *", "day-of-month 'jan'"),
        ("* * * * sun-mon-tue", "day-of-week 'sun-mon-tue'"),
        ("-1 * * * *", "minute '-1': a number is missing"),
        ("1- * * * *", "minute '1-'"),
        ("1,,2 * * * *", "minute '': a number is missing"),
        ("1, * * * *", "minute ''"),
        ("+5 * * * *", "minute '+5'"),
        ("1.5 * * * *", "minute '1.5'"),
        ("٣ * * * *", "minute '٣'"),  # a digit, but not an ASCII one
        ("* * 31 2 *", "day-of-month: no selected month has day 31"),
        ("0 0 30 feb *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("0 0 30-31 2 *", "never fires"),
    ],
)
def test_invalid(expression: str, message: str) -> None:
    with pytest.raises(cron.CronError) as caught:
        cron.parse(expression)
    assert message in str(caught.value)
    assert cron.validate(expression) == str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_field_errors_name_the_field_and_the_allowed_names() -> None:
    assert cron.validate("* * * foo *") == (
        "month 'foo': 'foo' is not a number from 1 to 12 or a name "
        "(jan/feb/mar/apr/may/jun/jul/aug/sep/oct/nov/dec)"
    )
    assert "sun/mon/tue/wed/thu/fri/sat" in (cron.validate("* * * * funday") or "")


@pytest.mark.parametrize("expression", ["0 0 29 2 *", "0 0 31 2,3 *", "0 0 31 2 mon"])
def test_rare_but_possible_schedules_are_accepted(expression: str) -> None:
    assert cron.validate(expression) is None


def test_naive_datetimes_are_refused() -> None:
    schedule = cron.parse("* * * * *")
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(dt.datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.previous_at_or_before(dt.datetime(2025, 1, 1))


# --- next and previous --------------------------------------------------------------------------


def test_next_is_strictly_after_and_on_a_whole_minute() -> None:
    every_minute = cron.parse("* * * * *")
    assert every_minute.next_after(at("2025-03-01 10:00")) == at("2025-03-01 10:01")
    assert every_minute.next_after(at("2025-03-01 10:00:59.999")) == at("2025-03-01 10:01")
    assert every_minute.previous_at_or_before(at("2025-03-01 10:00")) == at("2025-03-01 10:00")
    assert every_minute.previous_at_or_before(at("2025-03-01 10:00:59")) == at("2025-03-01 10:00")


def test_results_are_utc_whatever_the_input_zone() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    daily = cron.parse("0 3 * * *")
    moment = dt.datetime(2025, 6, 1, 4, 30, tzinfo=plus_two)  # 02:30 UTC
    assert daily.next_after(moment) == at("2025-06-01 03:00")
    assert daily.next_after(moment).tzinfo == UTC
    assert daily.previous_at_or_before(moment) == at("2025-05-31 03:00")
    assert daily.previous_at_or_before(moment).utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        ("*/20 * * * *", "2025-01-01 00:00", ["00:20", "00:40", "01:00"]),
        ("0 */8 * * *", "2025-01-01 09:00", ["16:00", "00:00", "08:00"]),
        ("30 1,13 * * *", "2025-01-01 13:30", ["01:30", "13:30", "01:30"]),
        ("0 0 * * *", "2025-01-01 00:00", ["00:00", "00:00"]),
        ("15 10-11 * * *", "2025-01-01 10:15", ["11:15", "10:15"]),
    ],
)
def test_times_of_day(expression: str, start: str, expected: list[str]) -> None:
    assert [fire[-5:] for fire in fires(expression, start, len(expected))] == expected


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        # Month ends: 31st only in months that have one.
        (
            "0 0 31 * *",
            "2025-01-31 00:00",
            ["2025-03-31 00:00", "2025-05-31 00:00", "2025-07-31 00:00", "2025-08-31 00:00"],
        ),
        ("0 0 30 * *", "2025-01-30 00:00", ["2025-03-30 00:00", "2025-04-30 00:00"]),
        # Leap days: every four years, not in 2100, yes in 2000.
        ("0 0 29 2 *", "2025-01-01 00:00", ["2028-02-29 00:00", "2032-02-29 00:00"]),
        ("0 0 29 2 *", "2096-03-01 00:00", ["2104-02-29 00:00"]),
        ("0 0 29 2 *", "1999-01-01 00:00", ["2000-02-29 00:00"]),
        ("0 0 28-29 feb *", "2023-02-28 00:00", ["2024-02-28 00:00", "2024-02-29 00:00"]),
        # Year rollover.
        ("59 23 31 12 *", "2025-12-31 23:59", ["2026-12-31 23:59"]),
        ("0 0 1 1 *", "2025-12-31 23:59", ["2026-01-01 00:00", "2027-01-01 00:00"]),
        ("* * * * *", "2025-12-31 23:59", ["2026-01-01 00:00"]),
        ("0 0 * jan *", "2025-02-01 00:00", ["2026-01-01 00:00"]),
        # Month steps and names.
        ("0 0 1 */3 *", "2025-01-01 00:00", ["2025-04-01 00:00", "2025-07-01 00:00"]),
        ("0 12 15 jun,dec *", "2025-06-15 12:00", ["2025-12-15 12:00", "2026-06-15 12:00"]),
    ],
)
def test_calendar(expression: str, start: str, expected: list[str]) -> None:
    assert fires(expression, start, len(expected)) == expected


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        # 2025-01-01 is a Wednesday.
        ("0 0 * * 1", "2025-01-01 00:00", ["2025-01-06", "2025-01-13"]),
        ("0 0 * * mon-fri", "2025-01-03 00:00", ["2025-01-06", "2025-01-07"]),
        ("0 0 * * 0", "2025-01-01 00:00", ["2025-01-05"]),
        ("0 0 * * 7", "2025-01-01 00:00", ["2025-01-05"]),
        ("0 0 * * sat,sun", "2025-01-04 00:00", ["2025-01-05", "2025-01-11"]),
        ("@weekly", "2025-01-01 00:00", ["2025-01-05", "2025-01-12"]),
        # Both day fields restricted: the 13th OR any Friday.
        ("0 0 13 * fri", "2025-01-01 00:00", ["2025-01-03", "2025-01-10", "2025-01-13"]),
        ("0 0 1,15 * 3", "2025-01-01 00:00", ["2025-01-08", "2025-01-15", "2025-01-22"]),
        # A day field starting with `*` is unrestricted: both must match (odd days AND Fridays).
        ("0 0 */2 * 5", "2025-01-01 00:00", ["2025-01-03", "2025-01-17", "2025-01-31"]),
        ("0 0 1 * */7", "2025-01-01 00:00", ["2025-06-01"]),
        # The OR rule also rescues a day no selected month has.
        ("0 0 31 2 mon", "2025-01-01 00:00", ["2025-02-03", "2025-02-10"]),
    ],
)
def test_day_rules(expression: str, start: str, expected: list[str]) -> None:
    assert [fire[:10] for fire in fires(expression, start, len(expected))] == expected


def test_previous_walks_back_across_month_year_and_leap_day() -> None:
    assert cron.parse("0 0 31 * *").previous_at_or_before(at("2025-03-30 12:00")) == at(
        "2025-01-31 00:00"
    )
    assert cron.parse("0 12 * * *").previous_at_or_before(at("2026-01-01 11:59")) == at(
        "2025-12-31 12:00"
    )
    assert cron.parse("0 0 29 2 *").previous_at_or_before(at("2104-02-28 23:59")) == at(
        "2096-02-29 00:00"
    )
    assert cron.parse("0 0 * * fri").previous_at_or_before(at("2025-01-01 00:00")) == at(
        "2024-12-27 00:00"
    )
    assert cron.parse("30 9 * * *").previous_at_or_before(at("2025-05-05 09:30")) == at(
        "2025-05-05 09:30"
    )


def test_rare_schedules_are_found_far_away_and_fast() -> None:
    # February the 1st or 29th that is also a Monday (a day field starting with `*` makes the
    # two day fields AND): years apart.
    rare = cron.parse("0 0 */28 2 mon")
    started = time.perf_counter()
    assert rare.next_after(at("2025-01-01 00:00")) == at("2027-02-01 00:00")
    assert rare.next_after(at("2027-02-01 00:00")) == at("2038-02-01 00:00")
    leap_day = cron.parse("0 0 29 2 *")
    assert leap_day.next_after(at("2096-02-29 00:00")) == at("2104-02-29 00:00")
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * *",
        "*/7 */5 * * *",
        "0 0 29 2 *",
        "0 0 31 * *",
        "0 0 13 * fri",
        "0 0 */2 * 5",
        "15,45 2-4 1-7 */2 mon",
        "@weekly",
        "@monthly",
        "0 0 1 1 *",
        "59 23 28-31 * *",
    ],
)
def test_next_and_previous_agree(expression: str) -> None:
    schedule = cron.parse(expression)
    moments = random.Random(expression)
    for _ in range(60):
        moment = at("2000-01-01 00:00") + dt.timedelta(
            seconds=moments.randrange(150 * 365 * 86400)
        )
        following = schedule.next_after(moment)
        assert following > moment
        assert schedule.matches(following)
        assert schedule.previous_at_or_before(following) == following
        assert schedule.previous_at_or_before(following - dt.timedelta(seconds=1)) <= moment
        previous = schedule.previous_at_or_before(moment)
        assert previous <= moment
        assert schedule.next_after(previous) == following


def test_matches_every_minute_it_returns_and_no_other() -> None:
    """A minute-by-minute scan over two months agrees with next_after."""
    schedule = cron.parse("*/30 0,12 1,15 * mon")
    moment = at("2024-01-29 00:00")
    expected = [
        moment + dt.timedelta(minutes=step)
        for step in range(1, 61 * 24 * 60)
        if schedule.matches(moment + dt.timedelta(minutes=step))
    ]
    found: list[dt.datetime] = []
    while (moment := schedule.next_after(moment)) <= expected[-1]:
        found.append(moment)
    assert found == expected


def test_module_is_standard_library_only() -> None:
    """It is shipped into the container as part of the scheduler: nothing else is there."""
    tree = ast.parse(Path(cron.__file__).read_text())
    imported = {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    } | {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert imported <= {"__future__", "calendar", "dataclasses", "datetime", "collections"}
