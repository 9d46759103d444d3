"""The backup scheduler as a real process on the real clock: it wakes the charm at the minute.

Waits for the next minute boundary (up to about a minute), so it lives in this tier rather than
with the scheduler's fast unit tests.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workload import scheduler

pytestmark = pytest.mark.integration


def fake_pebble(directory: Path) -> Path:
    """A `pebble` that appends the time and its arguments, tab-separated, to `calls`."""
    calls = directory / "calls"
    fake = directory / "pebble"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys, time\n"
        f"with open({str(calls)!r}, 'a') as f:\n"
        "    f.write('\\t'.join([repr(time.time()), *sys.argv[1:]]) + '\\n')\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return calls


def notified(calls: Path) -> bool:
    return calls.exists() and calls.read_text().endswith("\n")


def test_every_minute_schedule_notifies_the_charm_at_the_minute(tmp_path: Path) -> None:
    script = tmp_path / "backup-scheduler.py"
    script.write_text(scheduler.script())
    schedule = tmp_path / "backup-schedule.json"
    schedule.write_text(scheduler.schedule_file("* * * * *", "* * * * *"))
    calls = fake_pebble(tmp_path)
    environment = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}

    if 60 - time.time() % 60 < 3:  # too close to a minute to be sure to start before it
        time.sleep(4)
    boundary = (int(time.time()) // 60 + 1) * 60
    with subprocess.Popen(
        [sys.executable, "-u", str(script), str(schedule)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            while not notified(calls) and time.time() < boundary + 10:
                assert process.poll() is None, process.communicate()
                time.sleep(0.2)
        finally:
            process.terminate()
        stdout, stderr = process.communicate(timeout=10)

    assert notified(calls), f"no notice by {boundary + 10}; stdout={stdout!r} stderr={stderr!r}"
    [(called_at, *args)] = [line.split("\t") for line in calls.read_text().splitlines()]
    due = dt.datetime.fromtimestamp(boundary, dt.timezone.utc)
    # Full and incremental share every minute: full alone fires.
    assert args == [
        "notify",
        "postgresql-k8s.local/backup-due",
        "kind=full",
        f"at={due.isoformat()}",
    ]
    assert boundary <= float(called_at) < boundary + 3  # at the minute, not a tick later
    assert stderr == ""
    assert f"full backup due at {due.isoformat()}: charm notified" in stdout
    assert scheduler.parse_notice(dict(arg.split("=", 1) for arg in args[2:])) == ("full", due)
