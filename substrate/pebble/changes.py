"""Changes and tasks: the asynchronous operations clients wait on, serialised as Pebble does."""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import threading
from collections.abc import Callable
from typing import Any

from substrate.pebble import timeutil

DO, DOING, DONE, ERROR, HOLD, UNDONE = "Do", "Doing", "Done", "Error", "Hold", "Undone"
_READY = {DONE, ERROR, HOLD, UNDONE}
_MAX_READY_CHANGES = 500

# Called as on_update(change_id, kind) whenever a change is spawned or its status changes.
UpdateHook = Callable[[str, str], None]


@dataclasses.dataclass(eq=False)
class Task:
    """One step of a change (start one service, run one command, ...)."""

    id: str
    kind: str
    summary: str
    change: Change
    status: str = DO
    log: list[str] = dataclasses.field(default_factory=list[str])
    error: str = ""
    data: dict[str, Any] = dataclasses.field(default_factory=dict[str, Any])
    spawn_time: datetime.datetime = dataclasses.field(default_factory=timeutil.now)
    ready_time: datetime.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """The task as the API serialises it."""
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "summary": self.summary,
            "status": self.status,
            "progress": {"label": "", "done": 1 if self.status in _READY else 0, "total": 1},
            "spawn-time": timeutil.format_time(self.spawn_time),
        }
        if self.log:
            out["log"] = list(self.log)
        if self.ready_time:
            out["ready-time"] = timeutil.format_time(self.ready_time)
        if self.data:
            out["data"] = dict(self.data)
        return out


@dataclasses.dataclass(eq=False)
class Change:
    """A group of tasks the client sees as one operation."""

    id: str
    kind: str
    summary: str
    tasks: list[Task] = dataclasses.field(default_factory=list[Task])
    services: set[str] = dataclasses.field(default_factory=set[str])
    spawn_time: datetime.datetime = dataclasses.field(default_factory=timeutil.now)
    ready_time: datetime.datetime | None = None
    last_status: str = DO

    @property
    def status(self) -> str:
        """Derived from the tasks, in Pebble's precedence order."""
        if not self.tasks:
            return DONE if self.ready_time else DO
        statuses = {task.status for task in self.tasks}
        for status in (DOING, DO, ERROR, UNDONE, DONE, HOLD):
            if status in statuses:
                return status
        return DONE

    @property
    def ready(self) -> bool:
        """Whether every task has finished one way or another."""
        return self.status in _READY

    @property
    def err(self) -> str:
        """Pebble's "cannot perform the following tasks" summary of failed tasks."""
        failed = [task for task in self.tasks if task.status == ERROR]
        if not failed:
            return ""
        lines = [f"- {task.summary} ({task.error})" for task in failed]
        return "cannot perform the following tasks:\n" + "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The change as the API serialises it."""
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "summary": self.summary,
            "status": self.status,
            "tasks": [task.to_dict() for task in self.tasks],
            "ready": self.ready,
            "spawn-time": timeutil.format_time(self.spawn_time),
        }
        if self.err:
            out["err"] = self.err
        if self.ready_time:
            out["ready-time"] = timeutil.format_time(self.ready_time)
        return out


class ChangeStore:
    """All changes, with a condition variable that wakes waiters when one becomes ready."""

    def __init__(self, on_update: UpdateHook | None = None) -> None:
        self._cond = threading.Condition()
        self._changes: dict[str, Change] = {}
        self._ids = itertools.count(1)
        self._on_update = on_update

    def new_change(self, kind: str, summary: str, services: set[str] | None = None) -> Change:
        """Create a change (its tasks are added with add_task)."""
        with self._cond:
            change = Change(id=str(next(self._ids)), kind=kind, summary=summary)
            change.services = set(services or ())
            self._changes[change.id] = change
            self._prune()
        self._notify(change)
        return change

    def add_task(self, change: Change, kind: str, summary: str) -> Task:
        """Append a task to a change."""
        with self._cond:
            task = Task(id=str(next(self._ids)), kind=kind, summary=summary, change=change)
            change.tasks.append(task)
            return task

    def finish_empty(self, change: Change) -> None:
        """Mark a change that has no tasks as done."""
        with self._cond:
            change.ready_time = timeutil.now()
        self._update(change)

    def set_status(self, task: Task, status: str, error: str = "") -> None:
        """Move a task to a new status; an error message goes to the task log too."""
        with self._cond:
            task.status = status
            if error:
                task.error = error
                task.log.append(timeutil.task_log_line("ERROR", error))
            if status in _READY:
                task.ready_time = timeutil.now()
        self._update(task.change)

    def log(self, task: Task, level: str, message: str) -> None:
        """Append a line to a task's log."""
        with self._cond:
            task.log.append(timeutil.task_log_line(level, message))
            del task.log[:-50]

    def _update(self, change: Change) -> None:
        with self._cond:
            status = change.status
            if change.ready and not change.ready_time:
                change.ready_time = timeutil.now()
            changed = status != change.last_status
            change.last_status = status
            self._cond.notify_all()
        if changed:
            self._notify(change)

    def _notify(self, change: Change) -> None:
        if self._on_update is not None:
            self._on_update(change.id, change.kind)

    def _prune(self) -> None:
        ready = [change for change in self._changes.values() if change.ready]
        for change in ready[: max(0, len(ready) - _MAX_READY_CHANGES)]:
            del self._changes[change.id]

    def get(self, change_id: str) -> Change | None:
        """The change with this ID, if it is still known."""
        with self._cond:
            return self._changes.get(change_id)

    def task(self, task_id: str) -> Task | None:
        """The task with this ID, if its change is still known."""
        with self._cond:
            for change in self._changes.values():
                for task in change.tasks:
                    if task.id == task_id:
                        return task
        return None

    def select(self, select: str, service: str | None) -> list[Change]:
        """Changes filtered as GET /v1/changes does (select=all|in-progress|ready, for=...)."""
        with self._cond:
            changes = list(self._changes.values())
        if select == "in-progress":
            changes = [change for change in changes if not change.ready]
        elif select == "ready":
            changes = [change for change in changes if change.ready]
        if service:
            changes = [change for change in changes if service in change.services]
        return changes

    def wait(self, change_id: str, timeout: float | None) -> Change | None:
        """Block until the change is ready or the timeout passes; None if it is unknown."""
        with self._cond:
            change = self._changes.get(change_id)
            if change is None:
                return None
            self._cond.wait_for(lambda: change.ready, timeout=timeout)
            return change


class TaskError(Exception):
    """Raised by a task body to fail its task; `log` lines go to the task log first."""

    def __init__(self, message: str, log: list[str] | None = None) -> None:
        super().__init__(message)
        self.log = log or []


@dataclasses.dataclass(frozen=True)
class Step:
    """A task, the function that performs it, and the tasks that must succeed before it."""

    task: Task
    run: Callable[[Task], None]
    after: tuple[Task, ...] = ()


def run_steps(store: ChangeStore, change: Change, steps: list[Step]) -> None:
    """Run steps in background threads, each once its predecessors are done.

    A step whose predecessor did not succeed is put on hold, as Pebble does within a lane;
    independent steps run in parallel.
    """
    if not steps:
        store.finish_empty(change)
        return
    finished = {step.task.id: threading.Event() for step in steps}

    def run(step: Step) -> None:
        try:
            for before in step.after:
                finished[before.id].wait()
            if any(before.status != DONE for before in step.after):
                store.set_status(step.task, HOLD)
                return
            store.set_status(step.task, DOING)
            try:
                step.run(step.task)
            except TaskError as e:
                for line in e.log:
                    store.log(step.task, "INFO", line)
                store.set_status(step.task, ERROR, str(e))
            except Exception as e:  # a bug must fail the task, not hang its waiters
                store.set_status(step.task, ERROR, f"internal error: {e!r}")
            else:
                store.set_status(step.task, DONE)
        finally:
            finished[step.task.id].set()

    for step in steps:
        threading.Thread(
            target=run, args=(step,), name=f"task-{step.task.id}", daemon=True
        ).start()
