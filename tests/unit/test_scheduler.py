"""The backup schedules: validation, the last due time, the crontab and the job cron runs.

The job script runs here for real (/bin/sh, with `date` pinned to chosen minutes and a `pebble`
that records what it was asked). Debian's own crontab parser and a real cron daemon under the
substrate's Pebble are in tests/integration/test_scheduler_process.py.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import cronsim
import pytest

from workload import layout, scheduler

UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- names and the service ----------------------------------------------------------------------


def test_names() -> None:
    assert scheduler.NOTICE == "postgresql-k8s.local/backup-due"
    assert scheduler.SERVICE == "backup-scheduler"
    assert scheduler.KINDS == ("full", "incremental")
    assert scheduler.CRONTAB_PATH == "/var/spool/cron/crontabs/postgres"
    assert scheduler.SCRIPT_PATH.startswith(layout.CONF_DIR + "/")
    assert scheduler.LOG_PATH.startswith(layout.LOGS_MOUNT + "/")


@pytest.mark.parametrize("enabled", [True, False])
def test_service_runs_cron_in_the_foreground_in_utc(enabled: bool) -> None:
    assert scheduler.service(enabled) == {
        "override": "replace",
        "summary": "cron: tells the charm when a scheduled backup is due",
        "command": "/usr/sbin/cron -f -L 4",
        "startup": "enabled" if enabled else "disabled",
        "environment": {"TZ": "UTC"},
    }
    # cron must start as root to run jobs as the crontab's user.
    assert "user" not in scheduler.service(enabled)


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "  ",
        "0 2 * * 0",
        "* * * * *",
        "*/15 * * * *",
        "0-59/20 0-23/6 1-31/10 1-12/3 0-7/2",
        "05 00 01 01 00",
        "0 0 * * 7",
        "0 0 * * 5-7",
        "0 0 * * mon-fri",
        "0 0 * JAN-mar SUN",
        "30 4 1,15 * 5",
        "1-5/2,7,9-10 * * * *",
        "0 0 31 2 1",  # both day fields restricted: Mondays of February
        "0 0 29 2 *",
        "*/60 */24 */31 */12 */8",
        " \t0  2\t* * 0 ",
    ],
)
def test_valid(expression: str) -> None:
    assert scheduler.validate(expression) is None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * *", "expected 5 fields"),
        ("0 0 1 1 * *", "expected 5 fields"),  # a seconds (or year) field
        ("0 0 1 1 * 2026", "expected 5 fields"),
        ("@daily", "macros"),
        ("@reboot", "macros"),
        ("60 * * * *", "minute '60'"),
        ("0 24 * * *", "hour '24'"),
        ("0 0 0 * *", "day-of-month '0'"),
        ("0 0 32 * *", "day-of-month '32'"),
        ("0 0 * 0 *", "month '0'"),
        ("0 0 * 13 *", "month '13'"),
        ("0 0 * * 8", "day-of-week '8'"),
        ("mon * * * *", "minute 'mon'"),
        ("0 0 mon * *", "day-of-month 'mon'"),
        ("0 0 * * sunday", "day-of-week 'sunday'"),
        ("0 0 * Janu *", "month 'Janu'"),
        ("5/10 * * * *", "a step needs a range"),  # cron refuses it; cronsim reads 5-59/10
        ("0 0 * * mon/2", "a step needs a range"),
        ("*/0 * * * *", "the step '0'"),
        ("*/61 * * * *", "the step '61'"),
        ("*/5-10 * * * *", "minute '*/5-10'"),  # cron reads */5, cronsim refuses
        ("0 0 * * 1#2", "only digits"),  # cron reads 1, cronsim the 2nd Monday
        ("0 0 * * 5L", "day-of-week '5L'"),
        ("0 0 L * *", "day-of-month 'L'"),
        ("0 0 LW * *", "day-of-month 'LW'"),
        ("0 0 ? * *", "only digits"),
        ("0 0 * * 7-1", "starts after it ends"),
        ("0 0 * * fri-mon", "starts after it ends"),
        ("0,,1 * * * *", "minute"),
        ("0, * * * *", "minute"),
        ("- * * * *", "minute"),
        ("+1 * * * *", "only digits"),
        ("0x10 * * * *", "minute '0x10'"),
        ("005 * * * *", "minute '005'"),
        ("\u0661 * * * *", "only digits"),  # an Arabic-Indic digit one
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6 *", "never fires"),
        ("0 2 * * *\n0 3 * * *", "only digits"),
        ("0 2 * * *\n", "only digits"),
        ("0 2 * * * \x00", "only digits"),
        ("0 2 * * *\rx", "only digits"),
        ("0 2\v* * *", "only digits"),
        ("0 2 * * * root", "expected 5 fields"),
        ("0 2 * * * ; rm -rf /", "only digits"),
        ("0 " * 100 + "0", "longer than 200"),
    ],
)
def test_invalid(expression: str, message: str) -> None:
    error = scheduler.validate(expression)
    assert error is not None and message in error, error
    with pytest.raises(ValueError, match="not a valid cron expression"):
        scheduler.files(expression, "")
    with pytest.raises(ValueError, match="not a valid cron expression"):
        scheduler.files("", expression)


# --- the last due time --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "moment", "due"),
    [
        ("0 2 * * *", "2026-11-26 02:00", "2026-11-26 02:00"),  # at the minute itself
        ("0 2 * * *", "2026-11-26 01:59:59.999999", "2026-11-25 02:00"),
        ("0 2 * * *", "2026-11-26 02:00:59", "2026-11-26 02:00"),
        ("0 2 * * 0", "2026-11-26 12:00", "2026-11-22 02:00"),  # Sunday
        ("0 2 * * 7", "2026-11-26 12:00", "2026-11-22 02:00"),  # 7 is Sunday too
        ("*/15 * * * *", "2026-11-26 12:14", "2026-11-26 12:00"),
        ("30 4 1,15 * 5", "2026-11-14 00:00", "2026-11-13 04:30"),  # a Friday: either day field
        ("30 4 1,15 * 5", "2026-11-02 00:00", "2026-11-01 04:30"),
        ("30 4 */2 * 5", "2026-11-14 00:00", "2026-11-13 04:30"),  # `*/2`: both must match
        ("0 0 29 2 *", "2026-11-26 00:00", "2024-02-29 00:00"),
        ("0 0 * jan-mar mon-fri", "2026-11-26 00:00", "2026-03-31 00:00"),
    ],
)
def test_last_due(expression: str, moment: str, due: str) -> None:
    assert scheduler.last_due(expression, at(moment)) == at(due)


def test_last_due_takes_any_time_zone_and_answers_in_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    due = scheduler.last_due("0 2 * * *", dt.datetime(2026, 11, 26, 2, 30, tzinfo=paris))
    assert due == at("2026-11-25 02:00") and due.tzinfo == UTC


@pytest.mark.parametrize(
    ("expression", "moment"),
    [
        ("", at("2026-11-26 00:00")),
        ("@daily", at("2026-11-26 00:00")),
        ("0 2 * * *", dt.datetime(2026, 11, 26)),  # naive
    ],
)
def test_last_due_refuses(expression: str, moment: dt.datetime) -> None:
    with pytest.raises(ValueError, match=r"."):
        scheduler.last_due(expression, moment)


# --- the crontab --------------------------------------------------------------------------------

ENVIRONMENT = [
    "SHELL=/bin/sh",
    "PATH=/usr/local/bin:/usr/bin:/bin",
    "PEBBLE_SOCKET=/charm/container/pebble.socket",
    'MAILTO=""',
]


def crontab_lines(full: str, incremental: str) -> list[str]:
    text, mode = scheduler.files(full, incremental)[scheduler.CRONTAB_PATH]
    assert mode == 0o600  # cron refuses a user's crontab that others may read
    assert text.endswith("\n")  # cron ignores a crontab whose last line has no newline
    return [line for line in text.splitlines() if not line.startswith("#")]


def job(expression: str, kind: str) -> str:
    return (
        f"{expression} /var/lib/postgresql/conf/backup-due.sh {kind}"
        " /var/lib/postgresql/logs/backup-scheduler.log"
    )


def test_files_are_the_script_then_the_crontab() -> None:
    written = scheduler.files("0 2 * * 0", "0 3 * * *")
    assert list(written) == [scheduler.SCRIPT_PATH, scheduler.CRONTAB_PATH]
    assert written[scheduler.SCRIPT_PATH][1] == 0o755


@pytest.mark.parametrize(
    ("full", "incremental", "jobs"),
    [
        ("0 2 * * 0", "0 3 * * *", [job("0 2 * * 0", "full"), job("0 3 * * *", "incremental")]),
        ("0 2 * * 0", "", [job("0 2 * * 0", "full")]),
        ("", "*/30 * * * *", [job("*/30 * * * *", "incremental")]),
        ("", "", []),
        ("\t0   2 * *  SUN ", "", [job("0 2 * * SUN", "full")]),  # one space between fields
    ],
)
def test_crontab(full: str, incremental: str, jobs: list[str]) -> None:
    assert crontab_lines(full, incremental) == ENVIRONMENT + jobs


# --- the job, run by /bin/sh --------------------------------------------------------------------


class Job:
    """The generated script, run at a chosen minute with a `pebble` that records its calls."""

    def __init__(self, directory: Path, full: str, incremental: str) -> None:
        self.directory = directory
        self.script = directory / "backup-due.sh"
        self.script.write_text(scheduler.files(full, incremental)[scheduler.SCRIPT_PATH][0])
        self.calls = directory / "calls"
        self.log = directory / "logs" / "backup-scheduler.log"
        fake_date = directory / "date"
        fake_date.write_text('#!/bin/sh\nexec /usr/bin/date -d "@$FAKE_NOW" "$@"\n')
        fake_pebble = directory / "pebble"
        fake_pebble.write_text(
            "#!/bin/sh\n"
            f"printf '%s\\t' \"$@\" >> {self.calls}\n"
            f"echo >> {self.calls}\n"
            'echo "$PEBBLE_ERROR" >&2\n'
            'exit "$PEBBLE_EXIT"\n'
        )
        for path in (fake_date, fake_pebble):
            path.chmod(0o755)

    def run(
        self, kind: str, when: dt.datetime, pebble_exit: int = 0, pebble_error: str = ""
    ) -> subprocess.CompletedProcess[str]:
        self.calls.unlink(missing_ok=True)
        return subprocess.run(
            ["/bin/sh", str(self.script), kind, str(self.log)],
            env={
                "PATH": f"{self.directory}:/usr/bin:/bin",
                "FAKE_NOW": str(int(when.timestamp())),
                "PEBBLE_EXIT": str(pebble_exit),
                "PEBBLE_ERROR": pebble_error,
            },
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )

    def notices(self) -> list[list[str]]:
        if not self.calls.exists():
            return []
        return [line.rstrip("\t").split("\t") for line in self.calls.read_text().splitlines()]


@pytest.mark.parametrize("kind", ["full", "incremental"])
def test_job_sends_the_notice_the_charm_reads(tmp_path: Path, kind: str) -> None:
    job_ = Job(tmp_path, "0 2 * * 0", "0 3 * * *")
    # 20 s into the minute: `at` is the minute itself.
    result = job_.run(kind, at("2026-11-26 03:00:20"))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    [[command, key, *data]] = job_.notices()
    assert (command, key) == ("notify", "postgresql-k8s.local/backup-due")
    assert data == [f"kind={kind}", "at=2026-11-26T03:00:00+00:00"]
    parsed = scheduler.parse_notice(dict(item.split("=", 1) for item in data))
    assert parsed == (kind, at("2026-11-26 03:00"))


def full_due(full: str, minute: dt.datetime) -> bool:
    return next(cronsim.CronSim(full, minute - dt.timedelta(minutes=1))) == minute


def every(first: str, step: dt.timedelta, count: int) -> list[dt.datetime]:
    return [at(first) + step * i for i in range(count)]


DAY = dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("full", "incremental", "minutes"),
    [
        # Weekly full, daily incremental at the same time: Sundays are full only.
        ("0 2 * * 0", "0 2 * * *", every("2026-11-22 02:00", DAY, 8)),
        # Both day fields restricted: the 1st and 15th, and Fridays.
        ("30 4 1,15 * 5", "30 4 * * *", every("2026-11-01 04:30", DAY, 31)),
        # `*/2` in day-of-month starts with `*`: odd days that are also Fridays.
        ("30 4 */2 * fri", "30 4 * * *", every("2026-11-01 04:30", DAY, 31)),
        # Every 15 minutes on Sundays (7), incremental every 5.
        ("*/15 * * * 7", "*/5 * * * *", every("2026-11-21 23:30", dt.timedelta(minutes=5), 14)),
        # Names and ranges: weekdays of January to March.
        ("0 0 * jan-mar mon-fri", "0 0 * * *", every("2026-03-26 00:00", DAY, 10)),
    ],
)
def test_an_incremental_due_with_the_full_one_is_not_asked_for(
    tmp_path: Path, full: str, incremental: str, minutes: list[dt.datetime]
) -> None:
    job_ = Job(tmp_path, full, incremental)
    outcomes: set[bool] = set()
    for minute in minutes:
        assert full_due(incremental, minute)  # the incremental line fires at every one of them
        clash = full_due(full, minute)
        outcomes.add(clash)
        result = job_.run("incremental", minute + dt.timedelta(seconds=1))
        assert result.returncode == 0, result.stderr
        expected = [] if clash else ["kind=incremental", f"at={minute.isoformat()}"]
        assert [data for _, _, *data in job_.notices()] == ([expected] if expected else []), minute
        # The full job never looks at the incremental schedule.
        job_.run("full", minute + dt.timedelta(seconds=1))
        assert job_.notices()[0][2] == "kind=full"
    assert outcomes == {True, False}  # each case has minutes of both sorts


def test_without_a_full_schedule_every_incremental_is_asked_for(tmp_path: Path) -> None:
    job_ = Job(tmp_path, "", "* * * * *")
    job_.run("incremental", at("2026-11-22 02:00"))
    assert job_.notices() == [
        ["notify", scheduler.NOTICE, "kind=incremental", "at=2026-11-22T02:00:00+00:00"]
    ]


def test_a_notice_that_cannot_be_sent_is_logged_and_fails_the_job(tmp_path: Path) -> None:
    job_ = Job(tmp_path, "0 2 * * *", "")
    error = "error: cannot connect to Pebble at /charm/container/pebble.socket"
    expected = (
        f"2026-11-22T02:00:00+00:00: full backup due, but the charm could not be told: {error}\n"
    )
    # Without a log directory the job still tells what went wrong, and nothing else breaks.
    result = job_.run("full", at("2026-11-22 02:00:01"), pebble_exit=1, pebble_error=error)
    assert (result.returncode, result.stderr) == (1, expected)
    job_.log.parent.mkdir()
    for _ in range(2):
        job_.run("full", at("2026-11-22 02:00:01"), pebble_exit=1, pebble_error=error)
    assert job_.log.read_text() == expected * 2


# --- the notice ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"kind": "full", "at": "2025-01-05T01:00:00+00:00"}, ("full", at("2025-01-05 01:00"))),
        (
            {"kind": "incremental", "at": "2025-01-05T03:00:00+02:00"},
            ("incremental", at("2025-01-05 01:00")),
        ),
    ],
)
def test_parse_notice(data: dict[str, str], expected: tuple[str, dt.datetime]) -> None:
    kind, when = scheduler.parse_notice(data)
    assert (kind, when) == expected
    assert when.tzinfo == UTC


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"kind": "diff", "at": "2025-01-05T01:00:00+00:00"},
        {"kind": "full"},
        {"kind": "full", "at": "yesterday"},
        {"kind": "full", "at": "2025-01-05T01:00:00"},
    ],
)
def test_parse_notice_refuses_what_the_scheduler_never_sends(data: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"."):
        scheduler.parse_notice(data)
