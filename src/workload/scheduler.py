"""The backup scheduler: a small program in the workload container that wakes the charm when a backup is due.

The charm (leader only) installs `script()` at SCRIPT_PATH, writes the schedules with
`schedule_file()` at SCHEDULE_PATH, and runs `service()`. At each fire time the program runs
`pebble notify NOTICE kind=<full|incremental> at=<ISO 8601 UTC>`, as Patroni's role-change
callback does, and the charm takes the backup when the custom notice arrives.

The program is the source of `workload.cron` followed by PROGRAM below. It needs only the image's
`/usr/bin/python3` and its standard library. It re-reads the schedule file when the file changes,
so a config change needs no restart.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import posixpath
from collections.abc import Mapping

import ops

from workload import layout

SERVICE = "backup-scheduler"
SCRIPT_PATH = posixpath.join(layout.CONF_DIR, "backup-scheduler.py")
SCHEDULE_PATH = posixpath.join(layout.CONF_DIR, "backup-schedule.json")
NOTICE = "postgresql-k8s.local/backup-due"
PYTHON = "/usr/bin/python3"
# Backup kinds, in priority order: when both fall on the same minute only the first fires, since a
# full backup makes an incremental one taken at the same moment pointless.
KINDS = ("full", "incremental")

# The scheduler's own code, appended to the cron module's source. Plain text, so it is checked by
# tests/unit/test_scheduler.py (compiled, linted, exercised in-process) and by a real run in
# tests/integration/test_scheduler_process.py.
PROGRAM = '''
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping

TICK = 30.0  # longest sleep, so that a changed schedule file or a clock jump is noticed soon
NOTIFY_TIMEOUT = 30.0


def log(message: str, error: bool = False) -> None:
    print(f"backup-scheduler: {message}", file=sys.stderr if error else sys.stdout, flush=True)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def load(path: str) -> dict[str, Cron]:
    """The schedules in the file, kind -> Cron; a kind that is missing or empty is off.

    Raises ValueError (CronError and JSONDecodeError are ones) for anything the charm would
    not have written.
    """
    with open(path, encoding="utf-8") as file:
        data = json.load(file)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object mapping a backup kind to a cron expression")
    unknown = sorted(set(data) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown backup kinds {unknown}; expected some of {list(KINDS)}")
    schedules: dict[str, Cron] = {}
    for kind in KINDS:
        expression = data.get(kind) or ""
        if not isinstance(expression, str):
            raise ValueError(f"{kind}: expected a cron expression, got {expression!r}")
        if expression.strip():
            try:
                schedules[kind] = Cron.parse(expression)
            except CronError as error:
                raise CronError(f"{kind}: {error}") from None
    return schedules


def due(
    schedules: Mapping[str, Cron], last: dt.datetime, now: dt.datetime
) -> list[tuple[str, dt.datetime]]:
    """The fires in the window (last, now], in KINDS order.

    Only the latest fire of each kind counts, so a scheduler that slept through several (a
    suspended pod) asks for one backup rather than a burst; when kinds share a minute only the
    first of KINDS fires.
    """
    fires: list[tuple[str, dt.datetime]] = []
    for kind in KINDS:
        cron = schedules.get(kind)
        if cron is None:
            continue
        at = cron.previous_at_or_before(now)
        if at > last and all(at != taken for _, taken in fires):
            fires.append((kind, at))
    return fires


def pause(schedules: Mapping[str, Cron], last: dt.datetime, now: dt.datetime) -> float:
    """Seconds to sleep: until the next fire after `last`, at most TICK."""
    upcoming = [cron.next_after(last) for cron in schedules.values()]
    if not upcoming:
        return TICK
    return min(TICK, max(0.05, (min(upcoming) - now).total_seconds()))


def notify(kind: str, at: dt.datetime) -> None:
    """Tell the charm a backup is due; a failure is logged and the next fire still comes."""
    what = f"{kind} backup due at {at.isoformat()}"
    command = ["pebble", "notify", NOTICE, f"kind={kind}", f"at={at.isoformat()}"]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=NOTIFY_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        log(f"{what}: could not notify the charm: {error}", error=True)
        return
    if result.returncode != 0:
        reason = result.stderr.strip() or f"exit status {result.returncode}"
        log(f"{what}: could not notify the charm: {reason}", error=True)
        return
    log(f"{what}: charm notified")


class ScheduleFile:
    """The schedule file, read again whenever it changes (the charm rewrites it on config change)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.signature: tuple[int, int, int] | None = None
        self.schedules: dict[str, Cron] = {}

    def refresh(self) -> dict[str, Cron]:
        try:
            info = os.stat(self.path)
            signature = (info.st_mtime_ns, info.st_size, info.st_ino)
        except FileNotFoundError:
            signature = None
        if signature != self.signature:
            self.signature = signature
            self.schedules = load(self.path) if signature else {}
            described = ", ".join(f"{kind} {cron}" for kind, cron in self.schedules.items())
            log(f"{self.path}: schedules (UTC): {described or 'none'}")
        return self.schedules


def run(
    path: str,
    clock: Callable[[], dt.datetime] = now_utc,
    sleep: Callable[[float], None] = time.sleep,
    notifier: Callable[[str, dt.datetime], None] = notify,
) -> None:
    """Loop forever: fire what is due since the last look, then sleep until the next fire.

    Times before the start are never fired: the charm reports a missed schedule itself. The
    window only moves forward, so a clock set back never fires the same time twice.
    """
    schedule_file = ScheduleFile(path)
    last = clock()
    while True:
        schedules = schedule_file.refresh()
        now = clock()
        for kind, at in due(schedules, last, now):
            notifier(kind, at)
        last = max(last, now)
        sleep(pause(schedules, last, clock()))


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else SCHEDULE_PATH
    try:
        run(path)
    except (OSError, ValueError) as error:
        log(f"{path}: {error}", error=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
'''


def script() -> str:
    """The scheduler program: the cron module's source, the constants, then PROGRAM."""
    cron_source = pathlib.Path(__file__).with_name("cron.py").read_text(encoding="utf-8")
    header = (
        f"#!{PYTHON}\n"
        f"# Installed by the charm as {SCRIPT_PATH}; Pebble runs it as the {SERVICE!r} service.\n"
    )
    constants = (
        "\n\n# " + "-" * 97 + "\n"
        "# The backup scheduler. Everything above is the charm's cron module, verbatim.\n\n"
        f"SCHEDULE_PATH = {SCHEDULE_PATH!r}\nNOTICE = {NOTICE!r}\nKINDS = {KINDS!r}\n"
    )
    return header + cron_source + constants + PROGRAM


def schedule_file(full: str, incremental: str) -> str:
    """The schedule file's text: each kind's cron expression, an empty one meaning off."""
    return json.dumps({"full": full, "incremental": incremental}, sort_keys=True, indent=2) + "\n"


def service() -> ops.pebble.ServiceDict:
    """The Pebble service running the scheduler as the workload user."""
    return {
        "override": "replace",
        "summary": "Wakes the charm when a scheduled backup is due",
        "command": f"{PYTHON} -u {SCRIPT_PATH}",
        "startup": "enabled",
        "user": layout.WORKLOAD_USER,
        "group": layout.WORKLOAD_GROUP,
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
