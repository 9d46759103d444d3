"""The backup schedules: cron in the workload container wakes the charm when a backup is due.

The leader's charm writes `files()` into the container and runs `service()`: the image's own cron
daemon, in UTC. At each scheduled minute cron runs, as the workload user, a small script that
calls `pebble notify NOTICE kind=<full|incremental> at=<the minute, ISO 8601 UTC>`, as Patroni's
role-change callback does, and the charm takes the backup when the custom notice arrives.

Expressions are checked here against what Debian's cron (the `cron` package the image ships)
accepts and means, and evaluated with cronsim.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import posixpath
import re
import shlex
from collections.abc import Mapping

import cronsim
import ops

from workload import layout

SERVICE = "backup-scheduler"
NOTICE = "postgresql-k8s.local/backup-due"
# Backup kinds, in priority order: when both fall on the same minute only the first fires, since a
# full backup makes an incremental one taken at the same moment pointless.
KINDS = ("full", "incremental")

CRON = "/usr/sbin/cron"
# The workload user's crontab in cron's spool: cron requires it to be owned by that user and not
# readable by others (0600), and reloads it within a minute of a change (the spool directory's
# mtime changes when Pebble replaces the file). Jobs in it run as that user.
CRONTAB_PATH = posixpath.join("/var/spool/cron/crontabs", layout.WORKLOAD_USER)
SCRIPT_PATH = posixpath.join(layout.CONF_DIR, "backup-due.sh")
# Where the script reports a notice it could not send (cron's own output goes nowhere: the image
# has no mail transport and no syslog).
LOG_PATH = posixpath.join(layout.LOGS_MOUNT, "backup-scheduler.log")
# Juju mounts each workload container's Pebble directory at /charm/container and gives Pebble,
# hence every service, PEBBLE_SOCKET=/charm/container/pebble.socket. Cron gives its jobs only
# the crontab's variables, so the crontab says where the socket is.
PEBBLE_SOCKET = "/charm/container/pebble.socket"
# Where a job finds `pebble`: the image ships it in /usr/bin (the local substrate's pods have it
# in /usr/local/bin).
JOB_PATH = "/usr/local/bin:/usr/bin:/bin"

# The longest expression accepted: a schedule, not a list of every minute of the day.
MAX_LENGTH = 200


@dataclasses.dataclass(frozen=True)
class _Field:
    """One of the five fields as Debian's cron reads it: bounds, and names it accepts."""

    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i; cron takes them in any case

    def check(self, text: str) -> str | None:
        """What is wrong with the field's text, or None."""
        for item in text.split(","):
            error = self._item(item)
            if error:
                return f"{self.name} {text!r}: {error}"
        return None

    def _item(self, item: str) -> str | None:
        # Forms both cron and cronsim read the same way: *, */n, a, a-b, a-b/n. Cron refuses
        # `a/n` and an empty item; it reads `1#2` as 1 and `*/5-10` as */5 where cronsim does
        # not, so anything else is refused.
        match = _ITEM.fullmatch(item)
        if match is None:
            return f"{item!r} is not *, */step, a value, a range a-b, or a-b/step"
        start, end, step = match.group("start", "end", "step")
        if start is not None:
            low = self._value(start)
            high = self._value(end) if end is not None else low
            if low is None or high is None:
                wrong = start if low is None else end
                return f"{wrong!r} is not {self._expected()}"
            if high < low:
                return f"the range {item!r} starts after it ends"
            if step is not None and end is None:
                return f"a step needs a range or *, such as {start}-{self.high}/{step}"
        if step is not None and not 1 <= int(step) <= self.high - self.low + 1:
            return f"the step {step!r} is not from 1 to {self.high - self.low + 1}"
        return None

    def _value(self, text: str) -> int | None:
        if text.isdigit():
            number = int(text)
            return number if self.low <= number <= self.high else None
        lowered = text.lower()
        return self.low + self.names.index(lowered) if lowered in self.names else None

    def _expected(self) -> str:
        expected = f"a number from {self.low} to {self.high}"
        if self.names:
            expected += f" or a name ({'/'.join(self.names)})"
        return expected


# Numbers have at most 2 digits; names are 3 letters (cron refuses longer ones such as "sunday").
_VALUE = r"[0-9]{1,2}|[A-Za-z]{3}"
_ITEM = re.compile(
    rf"(?:\*|(?P<start>{_VALUE})(?:-(?P<end>{_VALUE}))?)(?:/(?P<step>[0-9]{{1,2}}))?", re.ASCII
)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 7, _WEEKDAYS),  # 0 and 7 are both Sunday
)
# Fields are separated by spaces or tabs, as in a crontab line; nothing else may reach one.
_SEPARATOR = re.compile(r"[ \t]+")
_ALLOWED = re.compile(r"[0-9A-Za-z*,/ \t-]*", re.ASCII)


def _fields(expression: str) -> list[str]:
    return _SEPARATOR.split(expression.strip(" \t"))


def validate(expression: str) -> str | None:
    """What is wrong with a cron expression, or None when it is valid (blank: no schedule).

    Valid means five fields that Debian's cron accepts and cronsim reads the same way, firing at
    least once. Refused although cron takes them: macros (@daily, @reboot), `1#2` and `*/5-10`
    (cron silently drops the rest of such an item), reversed ranges, and a day no selected month
    has (`0 0 30 2 *` never fires). Line breaks and other control characters are refused.
    """
    if not expression.strip(" \t"):
        return None
    fields = _fields(expression)
    error = _text_error(expression) or _fields_error(fields)
    if error:
        return error
    try:
        _Schedule.parse(" ".join(fields))
    except cronsim.CronSimError:
        return "no selected month has the selected days: the schedule never fires"
    return None


def _text_error(expression: str) -> str | None:
    if len(expression) > MAX_LENGTH:
        return f"longer than {MAX_LENGTH} characters"
    if expression.lstrip(" \t").startswith("@"):
        return "macros such as @daily are not accepted: use 5 fields (@daily is 0 0 * * *)"
    if not _ALLOWED.fullmatch(expression):
        return "only digits, month and weekday names, * , - / and spaces may be used"
    return None


def _fields_error(fields: list[str]) -> str | None:
    if len(fields) != len(_FIELDS):
        return f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
    errors = (spec.check(text) for spec, text in zip(_FIELDS, fields, strict=True))
    return next((error for error in errors if error), None)


def _line(expression: str) -> str:
    """The expression as a crontab line writes it ("" for none).

    Raises:
        ValueError: validate() refuses it.
    """
    error = validate(expression)
    if error is not None:
        raise ValueError(f"not a valid cron expression {expression!r}: {error}")
    return " ".join(_fields(expression)) if expression.strip(" \t") else ""


@dataclasses.dataclass(frozen=True)
class _Schedule:
    """What a valid expression selects, as cronsim reads it."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0-6, Sunday 0 (7 folded onto 0)
    either_day: bool  # both day fields restricted: a day matches if either one does (cron's rule)

    @classmethod
    def parse(cls, line: str) -> _Schedule:
        """Read a line that passed the field checks.

        Raises:
            cronsim.CronSimError: cronsim refuses it (a day that no selected month has).
        """
        sim = cronsim.CronSim(line, dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
        return cls(
            minutes=frozenset(sim.minutes),
            hours=frozenset(sim.hours),
            days=frozenset(sim.days),
            months=frozenset(sim.months),
            # The field checks leave only plain numbers (no `L` or `#` items).
            weekdays=frozenset(day % 7 for day in sim.weekdays if isinstance(day, int)),
            either_day=not sim.day_and,
        )


def last_due(expression: str, at_or_before: dt.datetime) -> dt.datetime:
    """The latest time the schedule fires at or before `at_or_before` (aware), in UTC.

    Raises:
        ValueError: the expression is blank or not valid (see validate), or the time is naive.
    """
    line = _line(expression)
    if not line:
        raise ValueError("no schedule: a blank expression never fires")
    if at_or_before.tzinfo is None or at_or_before.utcoffset() is None:
        raise ValueError(f"a timezone-aware time is required, got {at_or_before!r}")
    # cronsim steps back one second before it looks, so start one second after the bound.
    start = at_or_before.astimezone(dt.timezone.utc).replace(microsecond=0)
    try:
        return next(cronsim.CronSim(line, start + dt.timedelta(seconds=1), reverse=True))
    except StopIteration:  # cronsim looks back 50 years; a valid expression fires within 28
        raise ValueError(f"{expression!r} did not fire in the 50 years before {start}") from None


def files(full: str, incremental: str) -> dict[str, tuple[str, int]]:
    """What the charm writes into the container, owned by the workload user: path -> (text, mode).

    In writing order: the script the crontab runs, then the crontab (whose jobs run the script).
    A blank expression schedules nothing; with both blank the crontab has no job, so a schedule
    never outlives its option.

    Raises:
        ValueError: an expression validate() refuses (the charm validates its options first).
    """
    lines = {"full": _line(full), "incremental": _line(incremental)}
    jobs = "".join(
        f"{line} {SCRIPT_PATH} {kind} {LOG_PATH}\n" for kind, line in lines.items() if line
    )
    crontab = (
        f"# Installed by the charm; its {SERVICE} service runs cron in UTC.\n"
        "# Each job tells the charm that a scheduled backup is due.\n"
        "SHELL=/bin/sh\n"
        f"PATH={JOB_PATH}\n"
        f"PEBBLE_SOCKET={PEBBLE_SOCKET}\n"
        'MAILTO=""\n'
        f"{jobs}"
    )
    both = lines["full"] and lines["incremental"]
    full_schedule = _Schedule.parse(lines["full"]) if both else None
    return {SCRIPT_PATH: (_script(full_schedule), 0o755), CRONTAB_PATH: (crontab, 0o600)}


def _script(full: _Schedule | None) -> str:
    """The job: `backup-due.sh <kind>`, run by cron at a scheduled minute, notifies the charm.

    An incremental backup due at a minute when the full one is due too is not asked for (KINDS'
    priority): the script checks the full schedule's fields against the same reading of the clock
    it sends as `at`. The check is generated from the full schedule, so the crontab lines stay
    exactly what the user wrote.
    """
    head = (
        "#!/bin/sh\n"
        "# Installed by the charm. Cron runs it as `backup-due.sh <kind> <log>` at each scheduled\n"
        "# minute (UTC): it tells the charm, by a Pebble custom notice, that the backup is due.\n"
        "set -eu\n"
        "kind=$1 log=$2\n"
        "# One reading of the clock; cron starts a job within its scheduled minute.\n"
        "set -- $(date -u '+%Y-%m-%dT%H:%M:00+00:00 %M %H %d %m %w')\n"
        "at=$1 minute=$2 hour=$3 day=$4 month=$5 weekday=$6\n"
    )
    guard = ""
    if full is not None:
        days = "||" if full.either_day else "&&"
        guard = (
            'one_of() { case " $2 " in *" $1 "*) return 0 ;; esac; return 1; }\n'
            "# Whether the full backup is due this minute too: then it alone is asked for.\n"
            'if [ "$kind" = incremental ] \\\n'
            f'  && one_of "$minute" {_words(full.minutes)} \\\n'
            f'  && one_of "$hour" {_words(full.hours)} \\\n'
            f'  && one_of "$month" {_words(full.months)} \\\n'
            f'  && {{ one_of "$day" {_words(full.days)} {days} '
            f'one_of "$weekday" {_words(full.weekdays, width=1)}; }}; then\n'
            "  exit 0\n"
            "fi\n"
        )
    notify = shlex.join(["pebble", "notify", NOTICE])
    tail = (
        f'if ! output=$({notify} "kind=$kind" "at=$at" 2>&1); then\n'
        '  message="$at: $kind backup due, but the charm could not be told: $output"\n'
        '  echo "$message" >&2\n'
        "  # Also where an operator can read it (cron's own output goes nowhere); never fatal.\n"
        '  { echo "$message" >> "$log"; } 2>/dev/null || :\n'
        "  exit 1\n"
        "fi\n"
    )
    return head + guard + tail


def _words(values: frozenset[int], width: int = 2) -> str:
    """Values as `date` prints them (zero-padded), quoted as one shell word."""
    return "'" + " ".join(f"{value:0{width}d}" for value in sorted(values)) + "'"


def service(enabled: bool) -> ops.pebble.ServiceDict:
    """The Pebble service running cron (as root, so that it can run jobs as their user), in UTC.

    Disabled, it is stopped at the next replan and never started: only the leader's runs.
    """
    return {
        "override": "replace",
        "summary": "cron: tells the charm when a scheduled backup is due",
        # -f: stay in the foreground under Pebble; -L 4: log only failed jobs (to syslog, if any).
        "command": f"{CRON} -f -L 4",
        "startup": "enabled" if enabled else "disabled",
        # Cron reads schedules in its own time zone; the options document them as UTC.
        "environment": {"TZ": "UTC"},
    }


def parse_notice(data: Mapping[str, str]) -> tuple[str, dt.datetime]:
    """The (kind, scheduled time) a backup-due notice carries.

    Raises:
        ValueError: the data is not what the scheduler sends (unknown kind, bad time).
    """
    kind = data.get("kind", "")
    if kind not in KINDS:
        raise ValueError(f"backup-due notice: unknown kind {kind!r}")
    at = dt.datetime.fromisoformat(data.get("at", ""))
    if at.tzinfo is None:
        raise ValueError(f"backup-due notice: time without a timezone {data.get('at')!r}")
    return kind, at.astimezone(dt.timezone.utc)
