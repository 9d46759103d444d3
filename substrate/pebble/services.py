"""The service manager: each service's process and state machine, and the service changes.

States follow Pebble's: a start waits `okay_delay` (1 s) to see the process stay up; an exit
runs the on-success/on-failure action (restart with backoff, shutdown, ignore); a stop sends
SIGTERM to the process group and SIGKILL after the kill-delay.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from substrate.pebble import changes, logs, plan, procs, timeutil

logger = logging.getLogger(__name__)

INITIAL, STARTING, RUNNING = "initial", "starting", "running"
TERMINATING, KILLING, STOPPED, BACKOFF, EXITED = (
    "terminating",
    "killing",
    "stopped",
    "backoff",
    "exited",
)
_ACTIVE = {STARTING, RUNNING, TERMINATING, KILLING}
_REPORTED = {BACKOFF: "backoff", EXITED: "error", INITIAL: "inactive", STOPPED: "inactive"}

DEFAULT_KILL_DELAY = 5.0
DEFAULT_BACKOFF_DELAY = 0.5
DEFAULT_BACKOFF_FACTOR = 2.0
DEFAULT_BACKOFF_LIMIT = 30.0
SHUTDOWN_CODES = {"shutdown": None, "success-shutdown": 0, "failure-shutdown": 10}


class ServiceError(Exception):
    """Raised for a bad service request (unknown service, not running, bad signal)."""


@dataclasses.dataclass(eq=False)
class _Service:
    name: str
    config: dict[str, Any] = dataclasses.field(default_factory=dict[str, Any])
    state: str = INITIAL
    since: datetime.datetime = dataclasses.field(default_factory=timeutil.now)
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    log_seq: int = 0
    exit_code: int = 0
    backoff_num: int = 0
    backoff_delay: float = 0.0
    generation: int = 0
    restarting: bool = False
    pump: threading.Thread | None = None

    def seconds(self, key: str, default: float) -> float:
        value = self.config.get(key)
        return timeutil.parse_duration(value) if value else default


def _summary(verb: str, names: list[str]) -> str:
    if not names:
        return f"{verb} - no services"
    more = f" and {len(names) - 1} more" if len(names) > 1 else ""
    return f'{verb} service "{names[0]}"{more}'


class ServiceManager:
    """Runs the plan's services as child processes."""

    def __init__(
        self,
        *,
        procs_table: procs.ProcessTable,
        log_store: logs.LogStore,
        change_store: changes.ChangeStore,
        get_plan: Callable[[], plan.Plan],
        request_shutdown: Callable[[int], None],
        environment: Mapping[str, str],
        okay_delay: float = 1.0,
        fail_delay: float = 5.0,
        env_filter: Callable[[dict[str, str]], dict[str, str]] | None = None,
    ) -> None:
        self._env_filter = env_filter
        self._procs = procs_table
        self._logs = log_store
        self._changes = change_store
        self._plan = get_plan
        self._shutdown = request_shutdown
        self._env = dict(environment)
        self._okay_delay = okay_delay
        self._fail_delay = fail_delay
        self._cond = threading.Condition(threading.RLock())
        self._services: dict[str, _Service] = {}

    # ---- status -------------------------------------------------------------------------

    def info(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """GET /v1/services entries, ordered by name."""
        current = self._plan().services
        wanted = set(names) if names else set(current)
        result: list[dict[str, Any]] = []
        with self._cond:
            for name in sorted(wanted & set(current)):
                svc = self._services.get(name) or _Service(name)
                result.append(
                    {
                        "name": name,
                        "startup": current[name].get("startup") or "disabled",
                        "current": _REPORTED.get(svc.state, "active"),
                        "current-since": timeutil.format_time(svc.since),
                    }
                )
        return result

    def _transition(self, svc: _Service, state: str) -> None:
        if _REPORTED.get(state, "active") != _REPORTED.get(svc.state, "active"):
            svc.since = timeutil.now()
        svc.state = state
        self._cond.notify_all()

    # ---- process lifecycle --------------------------------------------------------------

    def _spawn(self, svc: _Service) -> None:
        config = svc.config
        try:
            argv = plan.command_argv(config["command"])
            creds = procs.resolve(
                config.get("user"),
                config.get("user-id"),
                config.get("group"),
                config.get("group-id"),
            )
            env = procs.child_environment(self._env, creds, config.get("environment", {}))
            if self._env_filter is not None:
                env = self._env_filter(env)
            svc.log_seq = self._logs.last_seq()
            proc = self._procs.spawn(
                argv,
                creds=creds,
                env=env,
                cwd=config.get("working-dir"),
                on_exit=lambda p, status: self._on_exit(svc, p, status),
            )
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            raise changes.TaskError(f"cannot start service: {e}") from e
        svc.generation += 1
        svc.proc, svc.started = proc, time.monotonic()
        assert proc.stdout is not None
        svc.pump = self._logs.pump(svc.name, proc.stdout)
        logger.info('Service "%s" starting: %s', svc.name, config["command"])

    def _on_exit(self, svc: _Service, proc: subprocess.Popen[bytes], status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        with self._cond:
            if svc.proc is not proc:
                return
            svc.proc, svc.exit_code = None, code if code >= 0 else -1
            if svc.state in (TERMINATING, KILLING):
                if svc.restarting:
                    svc.restarting = False
                    self._backoff(svc, "on-check-failure", "restart")
                else:
                    self._transition(svc, STOPPED)
            elif svc.state in (STARTING, RUNNING):
                self._exited(svc, code)
            self._cond.notify_all()

    def _exited(self, svc: _Service, code: int) -> None:
        field = "on-success" if code == 0 else "on-failure"
        action = svc.config.get(field) or "restart"
        logger.info('Service "%s" stopped unexpectedly with code %d', svc.name, svc.exit_code)
        if action == "ignore":
            self._transition(svc, STOPPED if svc.state == RUNNING else EXITED)
        elif action in SHUTDOWN_CODES:
            self._transition(svc, EXITED)
            fixed = SHUTDOWN_CODES[action]
            self._shutdown(fixed if fixed is not None else (0 if code == 0 else 10))
        else:
            self._backoff(svc, field, action)

    def _backoff(self, svc: _Service, field: str, action: str) -> None:
        limit = svc.seconds("backoff-limit", DEFAULT_BACKOFF_LIMIT)
        if time.monotonic() - svc.started >= limit:
            svc.backoff_num = 0
        svc.backoff_num += 1
        if svc.backoff_num == 1:
            svc.backoff_delay = svc.seconds("backoff-delay", DEFAULT_BACKOFF_DELAY)
        else:
            factor = float(svc.config.get("backoff-factor", DEFAULT_BACKOFF_FACTOR))
            svc.backoff_delay = min(svc.backoff_delay * factor, limit)
        svc.generation += 1
        self._transition(svc, BACKOFF)
        logger.info(
            'Service "%s" %s action is "%s", waiting ~%s before restart (backoff %d)',
            svc.name, field, action, timeutil.format_duration(svc.backoff_delay), svc.backoff_num,
        )  # fmt: skip
        timer = threading.Timer(svc.backoff_delay, self._backoff_restart, (svc, svc.generation))
        timer.daemon = True
        timer.start()

    def _backoff_restart(self, svc: _Service, generation: int) -> None:
        with self._cond:
            if svc.state != BACKOFF or svc.generation != generation:
                return
            try:
                self._spawn(svc)
            except changes.TaskError as e:
                logger.warning('Service "%s" %s', svc.name, e)
                svc.started = time.monotonic()
                self._backoff(svc, "on-failure", "restart")
                return
            self._transition(svc, RUNNING)

    def _terminate(self, svc: _Service) -> None:
        assert svc.proc is not None
        procs.signal_group(svc.proc.pid, signal.SIGTERM)
        self._transition(svc, TERMINATING)

    def _kill_after(self, svc: _Service, proc: subprocess.Popen[bytes], delay: float) -> bool:
        """Wait `delay` for the process to exit, then SIGKILL its group; True once it exited."""
        with self._cond:
            if self._cond.wait_for(lambda: svc.proc is not proc, timeout=delay):
                return True
            logger.info('Service "%s" did not stop after SIGTERM, sending SIGKILL', svc.name)
            procs.signal_group(proc.pid, signal.SIGKILL)
            self._transition(svc, KILLING)
            return self._cond.wait_for(lambda: svc.proc is not proc, timeout=self._fail_delay)

    # ---- task bodies --------------------------------------------------------------------

    def start_one(self, name: str) -> None:
        """Start a service and wait to see it stay up (a start task's body)."""
        with self._cond:
            svc = self._services.setdefault(name, _Service(name))
            if svc.state in (STARTING, RUNNING):
                return
            if svc.state in (TERMINATING, KILLING):
                raise changes.TaskError("cannot start service while terminating")
            svc.config = copy.deepcopy(self._plan().services[name])
            svc.backoff_num, svc.restarting = 0, False
            self._spawn(svc)
            self._transition(svc, STARTING)
            proc = svc.proc
            self._cond.wait_for(
                lambda: svc.proc is not proc or svc.state != STARTING, timeout=self._okay_delay
            )
            if svc.proc is proc and svc.state == STARTING:
                self._transition(svc, RUNNING)
                return
            if svc.state in (TERMINATING, KILLING, STOPPED):
                raise changes.TaskError("cannot start service: stopped while starting")
            pump, since = svc.pump, svc.log_seq
        if pump is not None:
            pump.join(0.5)  # let the last lines of output in
        output = self._logs.tail(name, since)
        log = ["Most recent service output:\n" + "\n".join(f"    {line}" for line in output)]
        raise changes.TaskError(
            f"cannot start service: exited quickly with code {svc.exit_code}",
            log if output else [],
        )

    def stop_one(self, name: str) -> None:
        """Stop a service: SIGTERM, then SIGKILL after the kill-delay (a stop task's body)."""
        with self._cond:
            svc = self._services.get(name)
            if svc is None or svc.state in (INITIAL, STOPPED):
                return
            if svc.state in (EXITED, BACKOFF):
                svc.generation += 1
                self._transition(svc, STOPPED)
                return
            svc.restarting = False
            if svc.state in (STARTING, RUNNING):
                self._terminate(svc)
            proc = svc.proc
            assert proc is not None
        deadline = time.monotonic() + svc.seconds("kill-delay", DEFAULT_KILL_DELAY)
        if not self._kill_after(svc, proc, svc.seconds("kill-delay", DEFAULT_KILL_DELAY)):
            raise changes.TaskError("process still running after SIGKILL")
        self._reap_group(proc.pid, deadline)

    def _reap_group(self, pgid: int, deadline: float) -> None:
        """Give processes left in the group until the kill deadline, then SIGKILL them."""
        while procs.group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        procs.signal_group(pgid, signal.SIGKILL)

    # ---- changes ------------------------------------------------------------------------

    def _steps(
        self, change: changes.Change, kind: str, names: list[str], preds: Mapping[str, set[str]],
        after: tuple[changes.Task, ...] = (),
    ) -> list[changes.Step]:  # fmt: skip
        body = self.start_one if kind == "start" else self.stop_one
        verb = "Start" if kind == "start" else "Stop"
        tasks: dict[str, changes.Task] = {}
        steps: list[changes.Step] = []
        for name in names:
            task = self._changes.add_task(change, kind, f'{verb} service "{name}"')
            tasks[name] = task
            before = after + tuple(tasks[p] for p in sorted(preds.get(name, ())) if p in tasks)
            steps.append(changes.Step(task, lambda _t, n=name: body(n), before))
        return steps

    def action(self, action: str, names: list[str]) -> changes.Change:
        """POST /v1/services: start, stop, restart, replan or autostart; returns the change."""
        current = self._plan()
        if action in ("start", "stop", "restart") and not names:
            raise ServiceError(f"must specify services for {action} action")
        if action == "autostart":
            names = [n for n, s in current.services.items() if s.get("startup") == "enabled"]
            if not names:
                raise ServiceError("no default services")
        if action == "replan":
            return self._replan(current)
        if action not in ("start", "stop", "restart", "autostart"):
            raise ServiceError(f'action "{action}" is unsupported')
        try:
            stops = plan.stop_order(current, names) if action in ("stop", "restart") else ([], {})
            starts = plan.start_order(current, names) if action != "stop" else ([], {})
        except plan.LayerError as e:
            raise ServiceError(str(e)) from e
        if action == "restart":
            stops = ([n for n in stops[0] if n in names], stops[1])
        return self._launch(action, names, stops, starts)

    def _replan(self, current: plan.Plan) -> changes.Change:
        with self._cond:
            changed = [
                name
                for name, svc in self._services.items()
                if svc.state in (*_ACTIVE, BACKOFF) and svc.config != current.services.get(name)
            ]
        enabled = [n for n, s in current.services.items() if s.get("startup") == "enabled"]
        names = sorted({*changed, *enabled})
        stops = plan.stop_order(current, changed) if changed else ([], {})
        stops = ([n for n in stops[0] if n in changed], stops[1])
        starts = plan.start_order(current, names) if names else ([], {})
        return self._launch("replan", names, stops, starts)

    def _launch(
        self, kind: str, names: list[str], stops: tuple[list[str], Mapping[str, set[str]]],
        starts: tuple[list[str], Mapping[str, set[str]]],
    ) -> changes.Change:  # fmt: skip
        verb = kind.capitalize()
        change = self._changes.new_change(kind, _summary(verb, names), {*stops[0], *starts[0]})
        stop_steps = self._steps(change, "stop", stops[0], stops[1])
        barrier = tuple(step.task for step in stop_steps)
        start_steps = self._steps(change, "start", starts[0], starts[1], barrier)
        changes.run_steps(self._changes, change, stop_steps + start_steps)
        return change

    # ---- signals, checks, shutdown ------------------------------------------------------

    def send_signal(self, sig_name: str, names: list[str]) -> None:
        """POST /v1/signals: signal each named service's own process, as Pebble does.

        Not its process group: the children a service starts (Patroni's helpers) keep running.
        """
        try:
            sig = procs.signal_number(sig_name)
        except ValueError as e:
            raise ServiceError(str(e)) from e
        if not names:
            raise ServiceError("must specify one or more services")
        current = self._plan().services
        with self._cond:
            for name in names:
                svc = self._services.get(name)
                if name not in current:
                    raise ServiceError(f'service "{name}" does not exist')
                if svc is None or svc.proc is None or svc.state not in (STARTING, RUNNING):
                    raise ServiceError(f'cannot send signal to "{name}": service is not running')
            for name in names:
                proc = self._services[name].proc
                assert proc is not None
                os.kill(proc.pid, sig)

    def check_failed(self, check: str) -> None:
        """Apply each service's on-check-failure action for a check that went down."""
        with self._cond:
            for svc in list(self._services.values()):
                action = svc.config.get("on-check-failure", {}).get(check, "ignore")
                if action in SHUTDOWN_CODES:
                    logger.info('Service "%s" on-check-failure action is "%s"', svc.name, action)
                    fixed = SHUTDOWN_CODES[action]
                    self._shutdown(10 if fixed is None else fixed)
                elif action == "restart" and svc.state in (STARTING, RUNNING) and svc.proc:
                    logger.info('Service "%s" on-check-failure action is "restart"', svc.name)
                    svc.restarting = True
                    self._terminate(svc)
                    delay = svc.seconds("kill-delay", DEFAULT_KILL_DELAY)
                    threading.Thread(
                        target=self._kill_after, args=(svc, svc.proc, delay), daemon=True
                    ).start()

    def stop_all(self) -> None:
        """Stop every service in parallel, each with its own kill-delay."""
        with self._cond:
            names = [n for n, s in self._services.items() if s.state != STOPPED]
        threads = [threading.Thread(target=self._stop_quietly, args=(n,)) for n in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _stop_quietly(self, name: str) -> None:
        try:
            self.stop_one(name)
        except changes.TaskError as e:
            logger.warning('Cannot stop service "%s": %s', name, e)
