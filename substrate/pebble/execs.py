"""POST /v1/exec: a command run as a task whose stdio travels over websockets.

The client connects "control", "stdio" and (unless stderr is combined) "stderr" websockets to
/v1/tasks/{task-id}/websocket/{id}. The command starts once they are connected; its output is
sent as binary messages ended by a {"command":"end"} text message, and its exit code is stored
in the task's data ("exit-code"), where ops reads it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from typing import IO, Any

from substrate.pebble import changes, procs, timeutil
from substrate.pebble.websocket import OP_BINARY, OP_TEXT, WebSocket

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
CLOSE_GRACE = 10.0


class ExecError(Exception):
    """Raised for an exec request that cannot be started (HTTP 400)."""


class Session:
    """One exec: its process, its websockets, and the task reporting its outcome."""

    def __init__(
        self,
        store: changes.ChangeStore,
        table: procs.ProcessTable,
        task: changes.Task,
        spec: dict[str, Any],
    ) -> None:
        self._store = store
        self._table = table
        self.task = task
        self._spec = spec
        self._names = (
            ("control", "stdio", "stderr") if spec["split-stderr"] else ("control", "stdio")
        )
        self._cond = threading.Condition()
        self._sockets: dict[str, WebSocket] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = threading.Event()
        self._exited = threading.Event()
        self._status = 0
        self._pumps: list[threading.Thread] = []

    def attach(self, name: str, ws: WebSocket) -> bool:
        """Register a websocket connection; False if the name is unknown or taken."""
        with self._cond:
            if name not in self._names or name in self._sockets:
                return False
            self._sockets[name] = ws
            self._cond.notify_all()
            return True

    def serve(self, name: str, ws: WebSocket) -> None:
        """Read one websocket until it closes (runs in its HTTP handler thread)."""
        handler = {"stdio": self._stdin_message, "control": self._control_message}.get(name)
        while (message := ws.recv()) is not None:
            if handler is not None:
                handler(*message)

    def _stdin_message(self, opcode: int, payload: bytes) -> None:
        self._started.wait()
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        try:
            if opcode == OP_BINARY:
                proc.stdin.write(payload)
                proc.stdin.flush()
            elif opcode == OP_TEXT and json.loads(payload).get("command") == "end":
                proc.stdin.close()
        except (OSError, ValueError):
            pass

    def _control_message(self, opcode: int, payload: bytes) -> None:
        if opcode != OP_TEXT:
            return
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(payload)
            if message.get("command") == "signal":
                self._started.wait()
                if self._proc is not None and not self._exited.is_set():
                    os.kill(self._proc.pid, procs.signal_number(message["signal"]["name"]))

    def abort(self) -> None:
        """Kill the command (POST /v1/changes/{id} action=abort)."""
        if self._proc is not None and not self._exited.is_set():
            procs.signal_group(self._proc.pid, signal.SIGKILL)

    def run(self) -> None:
        """The task body: wait for the websockets, run the command, report the exit code."""
        with self._cond:
            connected = self._cond.wait_for(
                lambda: len(self._sockets) == len(self._names), CONNECT_TIMEOUT
            )
        if not connected:
            self._started.set()
            self._finish(error="timed out waiting for websocket connections")
            return
        try:
            self._spawn()
        except (OSError, subprocess.SubprocessError) as e:
            self._started.set()
            self._finish(error=f"cannot start command: {e}")
            return
        timeout = self._spec["timeout"]
        timed_out = not self._exited.wait(timeout)
        if timed_out:
            assert self._proc is not None
            procs.signal_group(self._proc.pid, signal.SIGKILL)
            self._exited.wait()
        for pump in self._pumps:
            pump.join(2.0)
        if self._proc is not None and self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        if timed_out:
            self._finish(error=f"timed out after {timeutil.format_duration(timeout or 0)}")
        else:
            self.task.data["exit-code"] = procs.exit_code(self._status)
            self._finish()

    def _spawn(self) -> None:
        spec = self._spec
        stderr = subprocess.PIPE if spec["split-stderr"] else subprocess.STDOUT

        def exited(_proc: subprocess.Popen[bytes], status: int) -> None:
            self._status = status
            self._exited.set()

        try:
            self._proc = self._table.spawn(
                spec["argv"], creds=spec["creds"], env=spec["env"], cwd=spec["working-dir"],
                on_exit=exited, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
            )  # fmt: skip
        finally:
            self._started.set()
        self._pumps = [self._pump(self._proc.stdout, self._sockets["stdio"])]
        if spec["split-stderr"]:
            self._pumps.append(self._pump(self._proc.stderr, self._sockets["stderr"]))

    @staticmethod
    def _pump(stream: IO[bytes] | None, ws: WebSocket) -> threading.Thread:
        def run() -> None:
            assert stream is not None
            with stream:
                while chunk := stream.read1(64 * 1024):  # type: ignore[attr-defined]
                    try:
                        ws.send_binary(chunk)
                    except OSError:
                        break

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def _finish(self, error: str = "") -> None:
        # Output ends before the task does: ops stops reading at "end", then reads the change.
        for name in ("stdio", "stderr"):
            if name in self._sockets:
                with contextlib.suppress(OSError):
                    self._sockets[name].send_text('{"command":"end"}')
        if error:
            self._store.set_status(self.task, changes.ERROR, error)
        else:
            self._store.set_status(self.task, changes.DONE)
        timer = threading.Timer(CLOSE_GRACE, self._shutdown_sockets)
        timer.daemon = True
        timer.start()

    def _shutdown_sockets(self) -> None:
        for ws in self._sockets.values():
            ws.shutdown()


class ExecManager:
    """Creates exec changes and routes websocket connections to their sessions."""

    def __init__(
        self,
        store: changes.ChangeStore,
        table: procs.ProcessTable,
        environment: Mapping[str, str],
        service_config: Callable[[str], Mapping[str, Any] | None],
        *,
        env_filter: Callable[[dict[str, str]], dict[str, str]] | None = None,
    ) -> None:
        self._store = store
        # The same rewrite services get (the substrate's DCS translation): a command such as
        # `patronictl` run with a service's environment must see what that service sees.
        self._env_filter = env_filter
        self._table = table
        self._env = dict(environment)
        self._service_config = service_config
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def _resolve(self, body: Mapping[str, Any]) -> dict[str, Any]:
        argv = body.get("command")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ExecError("must specify command")
        context: Mapping[str, Any] = {}
        if body.get("service-context"):
            context = self._service_config(body["service-context"]) or {}
            if not context:
                raise ExecError(f'service "{body["service-context"]}" does not exist')
        merged = {**context, **{k: v for k, v in body.items() if v is not None}}
        try:
            creds = procs.resolve(
                merged.get("user"),
                merged.get("user-id"),
                merged.get("group"),
                merged.get("group-id"),
            )
        except procs.IdentityError as e:
            raise ExecError(str(e)) from e
        extra: dict[str, str] = {
            **context.get("environment", {}),
            **(body.get("environment") or {}),
        }
        env = procs.child_environment(self._env, creds, extra)
        if self._env_filter is not None:
            env = self._env_filter(env)
            extra = self._env_filter(extra)  # what the response reports, as rewritten
        cwd = merged.get("working-dir") or _home(
            creds.uid if creds.uid is not None else os.getuid()
        )
        if "/" not in argv[0] and shutil.which(argv[0], path=env.get("PATH")) is None:
            raise ExecError(f'cannot find executable "{argv[0]}"')
        timeout = timeutil.parse_duration(body["timeout"]) if body.get("timeout") else None
        shown = {**({"HOME": env["HOME"]} if "HOME" in env else {}), **extra}
        return {"argv": list(argv), "creds": creds, "env": env, "working-dir": cwd, "timeout": timeout,
                "split-stderr": bool(body.get("split-stderr")), "shown-env": shown}  # fmt: skip

    def start(self, body: Mapping[str, Any]) -> tuple[changes.Change, dict[str, Any]]:
        """Validate the request and create the exec change; the result tells the task ID."""
        spec = self._resolve(body)
        summary = f'Execute command "{spec["argv"][0]}"'
        change = self._store.new_change("exec", summary)
        task = self._store.add_task(change, "exec", summary)
        self._store.set_status(task, changes.DOING)
        session = Session(self._store, self._table, task, spec)
        with self._lock:
            self._sessions[task.id] = session
        threading.Thread(
            target=self._run, args=(session,), name=f"exec-{task.id}", daemon=True
        ).start()
        return change, {
            "task-id": task.id,
            "environment": spec["shown-env"],
            "working-dir": spec["working-dir"],
        }

    def _run(self, session: Session) -> None:
        try:
            session.run()
        finally:
            timer = threading.Timer(CLOSE_GRACE, self._forget, (session.task.id,))
            timer.daemon = True
            timer.start()

    def _forget(self, task_id: str) -> None:
        with self._lock:
            self._sessions.pop(task_id, None)

    def session(self, task_id: str) -> Session | None:
        """The live session of a task."""
        with self._lock:
            return self._sessions.get(task_id)


def _home(uid: int) -> str:
    try:
        home = pwd.getpwuid(uid).pw_dir
    except KeyError:
        return "/"
    return home if os.path.isdir(home) else "/"
