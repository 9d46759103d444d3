"""The small interface tier-3 scenarios are written against, implemented locally and on real Juju."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import Any, Protocol


class BackendError(Exception):
    """Raised when a backend cannot do what a scenario asked (the message says what and why)."""


class WaitTimeoutError(BackendError):
    """Raised by `wait_for` when the condition does not hold before the deadline."""


class ActionFailedError(BackendError):
    """Raised by `run_action` when the action failed; `message` is what the charm said."""

    def __init__(self, unit: str, action: str, message: str, results: Mapping[str, Any]):
        super().__init__(f"{action} on {unit} failed: {message}")
        self.message = message
        self.results = dict(results)


@dataclasses.dataclass(frozen=True)
class UnitInfo:
    """One unit as `juju status` shows it."""

    name: str
    workload_status: str  # active | blocked | waiting | maintenance | error | unknown
    message: str
    leader: bool
    address: str


@dataclasses.dataclass(frozen=True)
class Status:
    """The model's status: every unit of every application, and each application's status."""

    units: Mapping[str, UnitInfo]
    apps: Mapping[str, tuple[str, str]]  # app -> (status, message)

    def app_units(self, app: str) -> list[UnitInfo]:
        """The units of one application, by unit number."""
        units = [u for u in self.units.values() if u.name.split("/")[0] == app]
        return sorted(units, key=lambda u: int(u.name.split("/")[1]))

    def all_active(self, app: str, count: int | None = None) -> bool:
        """Every unit of the application is active (and there are `count` of them)."""
        units = self.app_units(app)
        if count is not None and len(units) != count:
            return False
        return bool(units) and all(u.workload_status == "active" for u in units)


class Signal(enum.Enum):
    """Signals the chaos verbs send."""

    SIGKILL = 9
    SIGTERM = 15
    SIGSTOP = 19
    SIGCONT = 18


class Backend(Protocol):
    """Deploy, integrate, act and observe, on whatever runs the charm."""

    def deploy(
        self,
        app: str,
        *,
        charm: str = "postgresql-k8s",
        units: int = 1,
        config: Mapping[str, Any] | None = None,
        trust: bool = True,
    ) -> None:
        """Deploy an application; `charm` names a charm the backend knows how to find."""
        ...

    def trust(self, app: str) -> None:
        """Grant the application cluster-scoped Kubernetes access (`juju trust --scope=cluster`)."""
        ...

    def add_unit(self, app: str, count: int = 1) -> None:
        """Scale an application up."""
        ...

    def remove_unit(self, *units: str, destroy_storage: bool = True) -> None:
        """Scale down by removing the named units (on Kubernetes: the highest ordinals)."""
        ...

    def integrate(self, a: str, b: str) -> None:
        """Relate two endpoints (`app` or `app:endpoint`)."""
        ...

    def remove_relation(self, a: str, b: str) -> None:
        """Remove the relation between two endpoints."""
        ...

    def config(self, app: str, values: Mapping[str, Any]) -> None:
        """Set config options of an application."""
        ...

    def run_action(
        self, unit: str, action: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run an action and return its results; raise ActionFailedError if it failed."""
        ...

    def status(self) -> Status:
        """The model's status now."""
        ...

    def wait_for(
        self, condition: Callable[[Status], bool], timeout: float = 300.0, what: str = ""
    ) -> Status:
        """Let the model run until `condition(status)` holds; raise WaitTimeoutError after timeout."""
        ...

    def exec(self, unit: str, command: list[str], container: str = "postgresql") -> str:
        """Run a command in a unit's workload container and return its stdout."""
        ...

    def address(self, unit: str) -> str:
        """The unit's pod IP."""
        ...

    def service_address(self, service: str) -> str:
        """Where a Kubernetes Service of the model (e.g. `postgresql-k8s-primary`) answers."""
        ...

    def kill(self, unit: str, process: str, signal: Signal = Signal.SIGKILL) -> None:
        """Send a signal to the processes of a unit whose command line contains `process`."""
        ...

    def delete_pod(self, unit: str, recreate: bool = True, force: bool = False) -> None:
        """Delete a unit's pod; Kubernetes recreates it (same storage) unless `recreate` is false.

        `force` kills the pod's processes at once (its node died) instead of a graceful stop.
        """
        ...

    def recreate_pod(self, unit: str) -> None:
        """Bring back a pod deleted with `recreate=False` (its node returned), same storage."""
        ...

    def disconnect(self, unit: str) -> None:
        """Cut a unit's pod off the network."""
        ...

    def reconnect(self, unit: str) -> None:
        """Heal a network cut."""
        ...

    def teardown(self) -> None:
        """Remove everything the backend created."""
        ...
