"""Health checks (http, tcp, exec) run on their period, driven by perform/recover-check changes.

As in Pebble, a running check owns a "perform-check" change while it is up; reaching the
failure threshold errors that change (Juju's pebble-check-failed) and opens a "recover-check"
change, which completes when the check succeeds again (pebble-check-recovered).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import signal
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any

from substrate.pebble import changes, plan, procs, timeutil

logger = logging.getLogger(__name__)

DEFAULT_PERIOD, DEFAULT_TIMEOUT, DEFAULT_THRESHOLD = 10.0, 3.0, 3
_KIND_LABEL = {"http": "HTTP", "tcp": "TCP", "exec": "exec"}

# on_transition(check_name, "failed" | "recovered")
TransitionHook = Callable[[str, str], None]


class CheckError(Exception):
    """Raised for a bad checks request (unknown check name, bad action)."""


@dataclasses.dataclass(eq=False)
class _Check:
    name: str
    config: dict[str, Any]
    status: str = "up"
    successes: int = 0
    failures: int = 0
    task: changes.Task | None = None
    stop_event: threading.Event | None = None

    @property
    def kind(self) -> str:
        return next(kind for kind in ("http", "tcp", "exec") if kind in self.config)

    @property
    def threshold(self) -> int:
        return int(self.config.get("threshold", DEFAULT_THRESHOLD))

    def seconds(self, key: str, default: float) -> float:
        value = self.config.get(key)
        return timeutil.parse_duration(value) if value else default


class CheckManager:
    """Keeps one runner thread per active check, in step with the plan."""

    def __init__(
        self,
        *,
        change_store: changes.ChangeStore,
        procs_table: procs.ProcessTable,
        get_plan: Callable[[], plan.Plan],
        on_failed: Callable[[str], None],
        on_transition: TransitionHook | None,
        environment: Mapping[str, str],
    ) -> None:
        self._changes = change_store
        self._procs = procs_table
        self._plan = get_plan
        self._on_failed = on_failed
        self._on_transition = on_transition
        self._env = dict(environment)
        self._lock = threading.RLock()
        self._checks: dict[str, _Check] = {}

    # ---- lifecycle ----------------------------------------------------------------------

    def plan_changed(self) -> None:
        """Restart checks whose configuration changed, start new enabled ones, drop removed."""
        configs = self._plan().checks
        with self._lock:
            for name in set(self._checks) - set(configs):
                self._stop(self._checks.pop(name))
            for name, config in configs.items():
                old = self._checks.get(name)
                if old is not None and old.config == config:
                    continue
                was_running = old is not None and old.stop_event is not None
                if old is not None:
                    self._stop(old)
                check = self._checks[name] = _Check(name, copy.deepcopy(config))
                if was_running or config.get("startup", "enabled") != "disabled":
                    self._start(check)

    def replan(self) -> None:
        """Start the enabled checks that are not running."""
        with self._lock:
            for check in self._checks.values():
                if check.stop_event is None and check.config.get("startup") != "disabled":
                    self._start(check)

    def action(self, action: str, names: list[str]) -> list[str]:
        """POST /v1/checks start|stop; returns the checks whose state changed."""
        if action not in ("start", "stop"):
            raise CheckError(f'invalid action "{action}"')
        with self._lock:
            missing = [name for name in names if name not in self._checks]
            if missing or not names:
                raise CheckError(f"cannot find checks: {', '.join(missing) or '(none given)'}")
            changed: list[str] = []
            for name in names:
                check = self._checks[name]
                running = check.stop_event is not None
                if action == "start" and not running:
                    self._start(check)
                    changed.append(name)
                elif action == "stop" and running:
                    self._stop(check)
                    changed.append(name)
            return sorted(changed)

    def stop_all(self) -> None:
        """Stop every runner (daemon shutdown)."""
        with self._lock:
            for check in self._checks.values():
                self._stop(check)

    def _start(self, check: _Check) -> None:
        check.status, check.failures, check.successes = "up", 0, 0
        check.task = self._new_change(check, "perform-check", "Perform")
        check.stop_event = event = threading.Event()
        thread = threading.Thread(
            target=self._loop, args=(check, event), name=f"check-{check.name}", daemon=True
        )
        thread.start()

    def _stop(self, check: _Check) -> None:
        if check.stop_event is not None:
            check.stop_event.set()
            check.stop_event = None
        if check.task is not None and check.task.status == changes.DOING:
            self._changes.set_status(check.task, changes.UNDONE)
        check.task = None

    def _new_change(self, check: _Check, kind: str, verb: str) -> changes.Task:
        summary = f'{verb} {_KIND_LABEL[check.kind]} check "{check.name}"'
        change = self._changes.new_change(kind, summary)
        task = self._changes.add_task(change, kind, summary)
        task.data["check-name"] = check.name
        self._changes.set_status(task, changes.DOING)
        return task

    # ---- running ------------------------------------------------------------------------

    def _loop(self, check: _Check, stop: threading.Event) -> None:
        while not stop.wait(check.seconds("period", DEFAULT_PERIOD)):
            error = self._perform(check.config)
            with self._lock:
                if check.stop_event is stop:
                    self._record(check, error)

    def _record(self, check: _Check, error: str) -> None:
        if not error:
            check.failures = 0
            if check.status == "down":
                check.status, check.successes = "up", 1
                assert check.task is not None
                self._changes.set_status(check.task, changes.DONE)
                check.task = self._new_change(check, "perform-check", "Perform")
                self._transition(check.name, "recovered")
            else:
                check.successes += 1
            return
        check.failures += 1
        assert check.task is not None
        if check.status == "up" and check.failures >= check.threshold:
            check.status = "down"
            self._changes.set_status(check.task, changes.ERROR, error)
            check.task = self._new_change(check, "recover-check", "Recover")
            logger.info(
                'Check "%s" failure threshold %d hit, triggering action',
                check.name,
                check.threshold,
            )
            self._on_failed(check.name)
            self._transition(check.name, "failed")
        else:
            self._changes.log(check.task, "ERROR", error)

    def _transition(self, name: str, what: str) -> None:
        if self._on_transition is None:
            return
        try:
            self._on_transition(name, what)
        except Exception:
            logger.exception("check transition hook failed")

    def _perform(self, config: Mapping[str, Any]) -> str:
        """Run a check once; the error text, or "" on success."""
        timeout = timeutil.parse_duration(config.get("timeout") or DEFAULT_TIMEOUT)
        try:
            if "http" in config:
                return _http_check(config["http"], timeout)
            if "tcp" in config:
                return _tcp_check(config["tcp"], timeout)
            return self._exec_check(config["exec"], timeout)
        except Exception as e:
            return f"check error: {e}"

    def _exec_check(self, spec: Mapping[str, Any], timeout: float) -> str:
        context: Mapping[str, Any] = {}
        if spec.get("service-context"):
            context = self._plan().services.get(spec["service-context"], {})
        merged = {
            **context,
            **spec,
            "environment": {**context.get("environment", {}), **spec.get("environment", {})},
        }
        creds = procs.resolve(
            merged.get("user"), merged.get("user-id"), merged.get("group"), merged.get("group-id")
        )
        env = procs.child_environment(self._env, creds, merged["environment"])
        done = threading.Event()
        proc = self._procs.spawn(
            plan.command_argv(spec["command"]),
            creds=creds,
            env=env,
            cwd=merged.get("working-dir"),
            on_exit=lambda _p, _s: done.set(),
        )
        output: list[bytes] = []
        stdout = proc.stdout
        assert stdout is not None
        reader = threading.Thread(target=_drain, args=(stdout, output), daemon=True)
        reader.start()
        if not done.wait(timeout):
            procs.signal_group(proc.pid, signal.SIGKILL)
            return f"exec check timed out after {timeutil.format_duration(timeout)}"
        reader.join(1.0)
        if proc.returncode:
            tail = b"".join(output).decode("utf-8", "replace").strip().splitlines()[-5:]
            return f"exit status {proc.returncode}" + (f"; {' | '.join(tail)}" if tail else "")
        return ""

    # ---- status -------------------------------------------------------------------------

    def _info(self, check: _Check) -> dict[str, Any]:
        running = check.stop_event is not None and check.task is not None
        info: dict[str, Any] = {
            "name": check.name,
            "startup": check.config.get("startup") or "enabled",
            "status": check.status if running else "inactive",
            "successes": check.successes,
            "failures": check.failures,
            "threshold": check.threshold,
        }
        if check.config.get("level"):
            info["level"] = check.config["level"]
        if running:
            assert check.task is not None
            info["change-id"] = check.task.change.id
        return info

    def _selected(self, levels: set[str] | None, names: Iterable[str] | None) -> list[_Check]:
        wanted = set(names or ())
        return [
            check
            for name, check in sorted(self._checks.items())
            if (not wanted or name in wanted)
            and (levels is None or check.config.get("level") in levels)
        ]

    def info(
        self, level: str | None = None, names: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """GET /v1/checks entries, ordered by name."""
        with self._lock:
            levels = {level} if level else None
            return [self._info(check) for check in self._selected(levels, names)]

    def healthy(self, level: str | None = None, names: Iterable[str] | None = None) -> bool:
        """GET /v1/health: no selected running check is down ("ready" covers alive checks too)."""
        levels = {"alive": {"alive"}, "ready": {"alive", "ready"}}.get(level or "")
        with self._lock:
            return all(
                check.status != "down" or check.stop_event is None
                for check in self._selected(levels, names)
            )

    def refresh(self, name: str) -> tuple[dict[str, Any], str]:
        """POST /v1/checks/refresh: run a check now and record the result if it runs."""
        with self._lock:
            check = self._checks.get(name)
            if check is None:
                raise CheckError(f'cannot find check "{name}"')
            config = copy.deepcopy(check.config)
        error = self._perform(config)
        with self._lock:
            if check.stop_event is not None:
                self._record(check, error)
            return self._info(check), error


def _http_check(spec: Mapping[str, Any], timeout: float) -> str:
    url = spec["url"]
    if not url.startswith(("http://", "https://")):
        return f"unsupported URL scheme in {url!r}"
    request = urllib.request.Request(url, headers=dict(spec.get("headers", {})))  # noqa: S310 (scheme checked)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            response.read(1024)
            return ""
    except urllib.error.HTTPError as e:
        body = e.read(200).decode("utf-8", "replace").strip()
        return f"non-2xx status code {e.code}" + (f"; {body}" if body else "")
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return f"Get {url!r}: {reason}"


def _tcp_check(spec: Mapping[str, Any], timeout: float) -> str:
    host = spec.get("host") or "localhost"
    try:
        with socket.create_connection((host, int(spec["port"])), timeout=timeout):
            return ""
    except OSError as e:
        return f"dial tcp {host}:{spec['port']}: {e}"


def _drain(stream: IO[bytes], into: list[bytes]) -> None:
    with stream:
        into.append(stream.read())
