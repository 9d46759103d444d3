"""The backup scheduler program and its Pebble service, exercised in-process and as quick processes.

The real-time run (waiting for a minute boundary) is in tests/integration/test_scheduler_process.py.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import os
import shutil
import stat
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from workload import cron, layout, scheduler

UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def program() -> types.ModuleType:
    """The script's text executed as a module (its `__main__` guard does not run)."""
    module = types.ModuleType("backup_scheduler")
    # dataclasses look their class's module up in sys.modules while the class is being built.
    sys.modules[module.__name__] = module
    try:
        exec(compile(scheduler.script(), scheduler.SCRIPT_PATH, "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module


def write_fake_pebble(directory: Path, exit_code: int = 0) -> Path:
    """A `pebble` that appends its arguments (one line, tab-separated) to `calls` beside it."""
    calls = directory / "calls"
    fake = directory / "pebble"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"with open({str(calls)!r}, 'a') as f:\n"
        "    f.write('\\t'.join(sys.argv[1:]) + '\\n')\n"
        f"sys.stderr.write('refused\\n' if {exit_code} else '')\n"
        f"sys.exit({exit_code})\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return calls


# --- the builders -------------------------------------------------------------------------------


def test_paths_and_names() -> None:
    assert scheduler.SCRIPT_PATH == "/var/lib/postgresql/conf/backup-scheduler.py"
    assert scheduler.SCHEDULE_PATH == "/var/lib/postgresql/conf/backup-schedule.json"
    assert scheduler.SCRIPT_PATH.startswith(layout.CONF_DIR + "/")
    assert scheduler.NOTICE == "postgresql-k8s.local/backup-due"
    assert scheduler.SERVICE == "backup-scheduler"


def test_service_runs_the_script_as_the_workload_user() -> None:
    assert scheduler.service() == {
        "override": "replace",
        "summary": "Wakes the charm when a scheduled backup is due",
        "command": "/usr/bin/python3 -u /var/lib/postgresql/conf/backup-scheduler.py",
        "startup": "enabled",
        "user": "postgres",
        "group": "postgres",
    }


def test_schedule_file_is_stable_json() -> None:
    text = scheduler.schedule_file("0 1 * * 0", "")
    assert json.loads(text) == {"full": "0 1 * * 0", "incremental": ""}
    assert text == scheduler.schedule_file("0 1 * * 0", "")
    assert text.index('"full"') < text.index('"incremental"')


def test_script_is_the_cron_module_then_the_program() -> None:
    text = scheduler.script()
    assert text.startswith("#!/usr/bin/python3\n")
    assert Path(cron.__file__).read_text() in text
    assert text.endswith(scheduler.PROGRAM)
    assert f"SCHEDULE_PATH = {scheduler.SCHEDULE_PATH!r}" in text
    assert f"NOTICE = {scheduler.NOTICE!r}" in text
    compile(text, scheduler.SCRIPT_PATH, "exec")


def test_script_passes_the_linter() -> None:
    """PROGRAM is a string, out of reach of the project's lint run: check the assembled script."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff, "ruff is a dev dependency"
    result = subprocess.run(
        [ruff, "check", "--isolated", "--select", "F,E9,B,PLE", "--stdin-filename", "s.py", "-"],
        input=scheduler.script(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_script_imports_only_the_standard_library() -> None:
    tree = ast.parse(scheduler.script())
    modules = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    modules |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {module.split(".")[0] for module in modules} <= set(sys.stdlib_module_names)


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


def test_the_notice_the_program_sends_is_the_one_the_charm_reads(
    program: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = write_fake_pebble(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    program.notify("incremental", at("2025-01-05 01:00"))
    args = calls.read_text().splitlines()[0].split("\t")
    assert args[:3] == ["notify", "postgresql-k8s.local/backup-due", "kind=incremental"]
    data = dict(arg.split("=", 1) for arg in args[2:])
    assert scheduler.parse_notice(data) == ("incremental", at("2025-01-05 01:00"))


# --- the program's pieces -----------------------------------------------------------------------


def schedules(program: types.ModuleType, **expressions: str) -> dict[str, Any]:
    return {kind: program.Cron.parse(expression) for kind, expression in expressions.items()}


def test_load(program: types.ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(scheduler.schedule_file("0 1 * * sun", "0 1 * * mon-sat"))
    loaded = program.load(str(path))
    assert {kind: str(schedule) for kind, schedule in loaded.items()} == {
        "full": "0 1 * * sun",
        "incremental": "0 1 * * mon-sat",
    }
    for text, expected in [
        (scheduler.schedule_file("@daily", ""), {"full"}),
        (scheduler.schedule_file("", "  "), set()),
        ('{"incremental": "@hourly"}', {"incremental"}),
        ('{"full": null}', set()),
        ("{}", set()),
    ]:
        path.write_text(text)
        assert set(program.load(str(path))) == expected, text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "Expecting"),
        ("[]", "expected a JSON object"),
        ('{"full": 5}', "full: expected a cron expression, got 5"),
        ('{"weekly": "@weekly"}', "unknown backup kinds ['weekly']"),
        ('{"incremental": "61 * * * *"}', "incremental: minute '61'"),
        ('{"full": "0 0 31 2 *"}', "full: day-of-month: no selected month has day 31"),
    ],
)
def test_load_refuses_a_bad_file(
    program: types.ModuleType, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=r".") as caught:
        program.load(str(path))
    assert message in str(caught.value)


def test_due_fires_each_kind_once_in_its_window(program: types.ModuleType) -> None:
    both = schedules(program, full="0 1 * * sun", incremental="0 * * * *")
    # 2025-01-05 is a Sunday: at 01:00 both fall on the same minute, and only full fires.
    assert program.due(both, at("2025-01-05 00:59:40"), at("2025-01-05 01:00:05")) == [
        ("full", at("2025-01-05 01:00"))
    ]
    assert program.due(both, at("2025-01-05 01:00:05"), at("2025-01-05 01:00:35")) == []
    assert program.due(both, at("2025-01-05 01:59:50"), at("2025-01-05 02:00:00")) == [
        ("incremental", at("2025-01-05 02:00"))
    ]
    # The window is (last, now]: a fire exactly at `last` was already handled.
    assert program.due(both, at("2025-01-05 02:00:00"), at("2025-01-05 02:00:30")) == []


def test_due_after_a_long_sleep_asks_for_the_latest_fire_only(program: types.ModuleType) -> None:
    hourly = schedules(program, incremental="@hourly")
    assert program.due(hourly, at("2025-01-05 03:10"), at("2025-01-05 09:20")) == [
        ("incremental", at("2025-01-05 09:00"))
    ]


def test_due_with_different_minutes_fires_both(program: types.ModuleType) -> None:
    both = schedules(program, full="0 2 * * *", incremental="1 2 * * *")
    assert program.due(both, at("2025-01-05 01:59:59"), at("2025-01-05 02:01:00")) == [
        ("full", at("2025-01-05 02:00")),
        ("incremental", at("2025-01-05 02:01")),
    ]


def test_nothing_is_due_without_schedules(program: types.ModuleType) -> None:
    assert program.due({}, at("2025-01-05 00:00"), at("2026-01-05 00:00")) == []


def test_pause(program: types.ModuleType) -> None:
    daily = schedules(program, full="@daily")
    assert program.pause({}, at("2025-01-05 00:00"), at("2025-01-05 00:00")) == 30.0
    assert program.pause(daily, at("2025-01-05 12:00"), at("2025-01-05 12:00")) == 30.0
    assert program.pause(daily, at("2025-01-05 23:59:50"), at("2025-01-05 23:59:50")) == 10.0
    # Woken a hair early (sleep and the wall clock disagree): a short nap, never a busy loop.
    assert program.pause(daily, at("2025-01-05 23:59:50"), at("2025-01-06 00:00")) == 0.05


class StopLoopError(Exception):
    """Ends the program's endless loop from a fake sleep."""


class Clock:
    """A fake wall clock that advances only when the program sleeps; stops the loop when told."""

    def __init__(self, start: dt.datetime, steps: int) -> None:
        self.now = start
        self.steps = steps
        self.slept: list[float] = []
        self.on_sleep: Callable[[Clock], None] = lambda _clock: None

    def __call__(self) -> dt.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert 0 < seconds <= 30
        self.slept.append(seconds)
        if len(self.slept) >= self.steps:
            raise StopLoopError
        self.now += dt.timedelta(seconds=seconds)
        self.on_sleep(self)


def run(program: types.ModuleType, path: Path, clock: Clock) -> list[tuple[str, dt.datetime]]:
    fired: list[tuple[str, dt.datetime]] = []
    with pytest.raises(StopLoopError):
        program.run(
            str(path), clock=clock, sleep=clock.sleep, notifier=lambda *fire: fired.append(fire)
        )
    return fired


def test_run_fires_on_time_for_a_day(program: types.ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(scheduler.schedule_file("0 1 * * *", "*/15 * * * *"))
    clock = Clock(at("2025-01-05 00:00:10"), steps=24 * 3600)
    fired: list[tuple[str, dt.datetime]] = []

    def stop_after_a_day(clock: Clock) -> None:
        if clock.now >= at("2025-01-06 00:00:10"):
            raise StopLoopError

    clock.on_sleep = stop_after_a_day
    with pytest.raises(StopLoopError):
        program.run(
            str(path),
            clock=clock,
            sleep=clock.sleep,
            notifier=lambda kind, when: fired.append((kind, when, clock.now)),
        )
    assert fired[0] == ("incremental", at("2025-01-05 00:15"), at("2025-01-05 00:15"))
    assert ("full", at("2025-01-05 01:00"), at("2025-01-05 01:00")) in fired
    assert ("incremental", at("2025-01-05 01:00")) not in [fire[:2] for fire in fired]
    assert len(fired) == 24 * 4  # 95 incrementals and 1 full, each at its exact minute
    assert all(when == now for _, when, now in fired)
    assert len(clock.slept) < 24 * 3600 / 30 + 24 * 4 + 2  # sleeps in steps, not per second


def test_run_never_fires_what_was_due_before_it_started(
    program: types.ModuleType, tmp_path: Path
) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(scheduler.schedule_file("* * * * *", ""))
    assert run(program, path, Clock(at("2025-01-05 00:00:00"), steps=1)) == []
    assert run(program, path, Clock(at("2025-01-05 00:00:30"), steps=3)) == [
        ("full", at("2025-01-05 00:01"))
    ]


def test_run_rereads_a_changed_schedule(program: types.ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(scheduler.schedule_file("", ""))
    clock = Clock(at("2025-01-05 00:00:00"), steps=10)

    def change_at_one_minute(clock: Clock) -> None:
        if clock.now == at("2025-01-05 00:01:00"):
            path.write_text(scheduler.schedule_file("", "*/2 * * * *"))

    clock.on_sleep = change_at_one_minute
    assert run(program, path, clock) == [
        ("incremental", at("2025-01-05 00:02")),
        ("incremental", at("2025-01-05 00:04")),
    ]


def test_run_with_a_missing_file_schedules_nothing_until_it_appears(
    program: types.ModuleType, tmp_path: Path
) -> None:
    path = tmp_path / "schedule.json"
    clock = Clock(at("2025-01-05 00:00:00"), steps=6)

    def appear(clock: Clock) -> None:
        if clock.now == at("2025-01-05 00:01:00"):
            path.write_text(scheduler.schedule_file("*/2 * * * *", ""))

    clock.on_sleep = appear
    assert run(program, path, clock) == [("full", at("2025-01-05 00:02"))]


def test_run_survives_a_clock_set_back(program: types.ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(scheduler.schedule_file("0 * * * *", ""))
    clock = Clock(at("2025-01-05 00:59:50"), steps=8)

    def jump_back_once(clock: Clock) -> None:
        if clock.now == at("2025-01-05 01:00:30"):
            clock.now = at("2025-01-05 00:59:45")

    clock.on_sleep = jump_back_once
    # 01:00 comes twice by the wall clock, and fires once.
    assert run(program, path, clock) == [("full", at("2025-01-05 01:00"))]
    assert clock.now > at("2025-01-05 01:02")


def test_notify_failure_is_logged_and_the_loop_goes_on(
    program: types.ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls = write_fake_pebble(tmp_path, exit_code=1)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    program.notify("full", at("2025-01-05 01:00"))
    program.notify("full", at("2025-01-05 02:00"))
    assert len(calls.read_text().splitlines()) == 2
    err = capsys.readouterr().err
    assert (
        "full backup due at 2025-01-05T01:00:00+00:00: could not notify the charm: refused" in err
    )

    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    program.notify("full", at("2025-01-05 03:00"))
    assert "could not notify the charm" in capsys.readouterr().err


# --- the program as a process (no waiting for the clock) ----------------------------------------


@pytest.fixture
def script_file(tmp_path: Path) -> Path:
    path = tmp_path / "backup-scheduler.py"
    path.write_text(scheduler.script())
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "Expecting value"),
        ('{"full": "0 0 31 2 *"}', "never fires"),
        ('{"incremental": "* * * *"}', "incremental: expected 5 fields"),
    ],
)
def test_process_exits_with_a_clear_message_on_a_bad_file(
    script_file: Path, tmp_path: Path, text: str, message: str
) -> None:
    schedule = tmp_path / "schedule.json"
    schedule.write_text(text)
    result = subprocess.run(
        [sys.executable, "-u", str(script_file), str(schedule)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"backup-scheduler: {schedule}: ")
    assert message in result.stderr


def test_process_starts_and_reports_its_schedules(script_file: Path, tmp_path: Path) -> None:
    schedule = tmp_path / "schedule.json"
    schedule.write_text(scheduler.schedule_file("0 3 * * sun", "0 3 * * mon-sat"))
    with subprocess.Popen(
        [sys.executable, "-u", str(script_file), str(schedule)],
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        process.terminate()
    assert first_line == (
        f"backup-scheduler: {schedule}: schedules (UTC): full 0 3 * * sun, "
        "incremental 0 3 * * mon-sat\n"
    )
