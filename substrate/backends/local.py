"""The local substrate as a Backend: pods running a real Pebble, the Juju model, etcd and Services.

Each unit is a pod (network and mount namespaces) whose entrypoint is the Pebble-compatible
daemon; the charm's hooks run through ops.testing with the real `ops.pebble.Client` pointed at
that daemon. Patroni's Kubernetes DCS settings are translated to etcd by the daemon (environment
variables only); `<app>-primary`/`<app>-replicas` are HAProxy addresses that follow Patroni's roles.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ops

from substrate.backends import backend
from substrate.backends.backend import ActionFailedError, BackendError, Signal, Status, UnitInfo
from substrate.host import netns, pods
from substrate.juju import Model
from substrate.k8s import dcs, routing
from substrate.pebble import entrypoint

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
CONTAINER = "postgresql"
# Kubernetes gives a terminating pod 30 s before SIGKILL; Patroni's kill-delay is 30 s too.
GRACE_PERIOD = 40.0
# Juju's default is 5 minutes; scenarios want the charm to look around more often.
UPDATE_STATUS_INTERVAL = 15.0


def _load_postgresql_charm() -> tuple[type[ops.CharmBase], Path]:
    for sub in ("src", "lib"):
        path = str(REPO / sub)
        if path not in sys.path:
            sys.path.insert(0, path)
    module = importlib.import_module("charm")
    return module.PostgresqlK8sCharm, REPO


def _load_test_charm(name: str) -> Callable[[], tuple[type[ops.CharmBase], Path]]:
    """A loader for a charm under tests/charms/ (its src/charm.py, imported under its own name)."""

    def load() -> tuple[type[ops.CharmBase], Path]:
        root = REPO / "tests" / "charms" / name
        module_name = f"{name}_charm"
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, root / "src" / "charm.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        classes = [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, ops.CharmBase) and v is not ops.CharmBase
        ]
        return classes[0], root

    return load


# Charms the backend can deploy, by name: a loader returning (charm class, charm root).
CHARMS: dict[str, Callable[[], tuple[type[ops.CharmBase], Path]]] = {
    "postgresql-k8s": _load_postgresql_charm,
    "app-requirer": _load_test_charm("app_requirer"),
    "s3-provider": _load_test_charm("s3_provider"),
    "prometheus-consumer": _load_test_charm("prometheus_consumer"),
}


@dataclasses.dataclass
class _UnitPod:
    """A unit's pod and the Pebble running in it."""

    unit: str
    pod: pods.Pod
    pebble: entrypoint.PodPebble
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    watcher: threading.Thread | None = None

    @property
    def socket(self) -> Path:
        """The Pebble socket, as the host sees it."""
        return self.pebble.socket


class LocalBackend:
    """Runs the charm on this machine: one pod per unit, hooks by ops.testing, real workloads."""

    def __init__(
        self,
        model_name: str = "pgk8s",
        update_status_interval: float = UPDATE_STATUS_INTERVAL,
        default_config: Mapping[str, Any] | None = None,
    ):
        missing = netns.missing_host_tools() + dcs.missing_tools()
        if os.geteuid() != 0 or missing:
            raise BackendError(
                "the local substrate needs root and: "
                + (", ".join(missing) or "nothing else")
                + " (run tools/install-workload.sh)"
            )
        self.update_status_interval = update_status_interval
        # A pod "sees" the whole machine's memory; like a Kubernetes memory limit, cap what the
        # production profile sizes shared_buffers from, unless the caller says otherwise.
        self.default_config = dict(default_config or {"profile-limit-memory": 1024})
        self.substrate = pods.Substrate()
        self._pods: dict[str, _UnitPod] = {}
        self._events: queue.Queue[tuple[str, str, str]] = queue.Queue()
        self._last_tick = time.monotonic()
        self._apps: dict[str, str] = {}  # app -> charm name
        try:
            self.etcd = dcs.Etcd(self.substrate)
            self.etcd.start()
            self.router = routing.ServiceRouter(self.substrate, namespace=model_name)
            self.model = Model(
                model_name,
                root=self.substrate.run_dir / "juju",
                pebble_client_factory=self._pebble_client,
                address_factory=self._create_pod,
                auto_pebble_ready=False,
            )
        except BaseException:
            self.substrate.teardown()
            raise

    # -- pods and their Pebble ---------------------------------------------------------------

    def _create_pod(self, unit: str) -> str:
        """Address factory of the model: a new pod for the unit, with Pebble up; its IP."""
        app = unit.split("/", maxsplit=1)[0]
        name = unit.replace("/", "-")
        pod = self.substrate.add_pod(name, hostnames=(f"{name}.{app}-endpoints",))
        log = self.substrate.run_dir / f"pebble-{name}.log"
        try:
            pebble = entrypoint.start(pod, log, etcd_url=self.etcd.url)
        except entrypoint.PebbleStartError as e:
            raise BackendError(str(e)) from e
        unit_pod = _UnitPod(unit, pod, pebble)
        unit_pod.watcher = threading.Thread(
            target=self._watch, args=(unit_pod,), name=f"watch-{name}", daemon=True
        )
        unit_pod.watcher.start()
        self._pods[unit] = unit_pod
        return pod.ip

    def _pebble_client(self, unit: str, container: str) -> ops.pebble.Client:
        """The model's Pebble seam: the real client of the unit's pod (or one that cannot connect)."""
        unit_pod = self._pods.get(unit)
        path = str(unit_pod.socket) if unit_pod else str(self.substrate.run_dir / "no-pod.socket")
        return ops.pebble.Client(socket_path=path)

    def pebble(self, unit: str) -> ops.pebble.Client:
        """A Pebble client of the unit's workload container: the one the charm is given."""
        return ops.pebble.Client(socket_path=str(self._unit_pod(unit).socket))

    def _watch(self, unit_pod: _UnitPod) -> None:
        """Turn Pebble's custom notices and check transitions into charm events (via a queue)."""
        client = ops.pebble.Client(socket_path=str(unit_pod.socket), timeout=5)
        seen: dict[str, int] = {}
        checks: dict[str, ops.pebble.CheckStatus] = {}
        while not unit_pod.stop.wait(0.3):
            try:
                for notice in client.get_notices(
                    types=[ops.pebble.NoticeType.CUSTOM], users=ops.pebble.NoticesUsers.ALL
                ):
                    if seen.get(notice.key) != notice.occurrences:
                        seen[notice.key] = notice.occurrences
                        self._events.put(("notice", unit_pod.unit, notice.key))
                for check in client.get_checks():
                    before = checks.get(check.name, ops.pebble.CheckStatus.UP)
                    if check.status != before:
                        kind = (
                            "check-failed"
                            if check.status == ops.pebble.CheckStatus.DOWN
                            else "check-recovered"
                        )
                        self._events.put((kind, unit_pod.unit, check.name))
                    checks[check.name] = check.status
            except (ops.pebble.ConnectionError, ops.pebble.APIError, OSError):
                continue

    def _stop_pod(self, unit: str, graceful: bool, destroy_storage: bool = False) -> None:
        """Terminate a unit's pod: SIGTERM to Pebble and a grace period (or SIGKILL at once)."""
        unit_pod = self._pods.pop(unit, None)
        if unit_pod is None:
            return
        unit_pod.stop.set()
        if graceful:
            unit_pod.pebble.process.terminate(timeout=GRACE_PERIOD)
        self.substrate.delete_pod(unit_pod.pod.name, destroy_storage=destroy_storage)

    # -- the event pump ----------------------------------------------------------------------

    def _pump(self) -> None:
        """Deliver what Pebble reported, tick update-status, and keep Services in step."""
        while True:
            try:
                kind, unit, what = self._events.get_nowait()
            except queue.Empty:
                break
            if unit not in self._pods:
                continue
            # One Pebble per pod, as in a single-container pod: its events go to that container.
            container = self.model.containers(unit)[0]
            if kind == "notice":
                self.model.pebble_custom_notice(unit, container, what)
            elif kind == "check-failed":
                self.model.pebble_check_failed(unit, container, what)
            else:
                self.model.pebble_check_recovered(unit, container, what)
        if time.monotonic() - self._last_tick >= self.update_status_interval:
            self._last_tick = time.monotonic()
            self.model.update_status()
        self._sync_services()

    def _sync_services(self) -> None:
        """Route each role Service the charm created to the live pods of its application."""
        for app in self._apps:
            members = [up.pod.ip for unit, up in self._pods.items() if unit.split("/")[0] == app]
            for suffix, role in (("primary", "primary"), ("replicas", "replica")):
                name = f"{app}-{suffix}"
                if self.model.kube.get("Service", name, self.model.name) is not None:
                    self.router.set_service(name, members, role)

    # -- Backend -----------------------------------------------------------------------------

    def deploy(
        self,
        app: str,
        *,
        charm: str = "postgresql-k8s",
        units: int = 1,
        config: Mapping[str, Any] | None = None,
        trust: bool = True,
    ) -> None:
        """Deploy an application; its units' pods start with Pebble, then pebble-ready fires."""
        if charm not in CHARMS:
            raise BackendError(f"unknown charm {charm!r}: known are {', '.join(CHARMS)}")
        charm_class, root = CHARMS[charm]()
        self._apps[app] = charm
        cfg = {**self.default_config, **(config or {})} if charm == "postgresql-k8s" else config
        new = self.model.deploy(
            charm_class, app, charm_root=root, num_units=units, config=cfg, trust=trust
        )
        self._ready(new)

    def _ready(self, units: list[str]) -> None:
        for unit in units:
            if unit in self._pods:
                for container in self.model.containers(unit):
                    self.model.pebble_ready(unit, container)
        self._pump()

    def trust(self, app: str) -> None:
        """`juju trust <app> --scope=cluster`."""
        self.model.trust(app)
        self._pump()

    def add_unit(self, app: str, count: int = 1) -> None:
        """Scale up."""
        self._ready(self.model.add_unit(app, count))

    def remove_unit(self, *units: str, destroy_storage: bool = True) -> None:
        """Scale down: the units' hooks run (a departing primary hands over), then pods go."""
        self.model.remove_unit(*units, destroy_storage=destroy_storage)
        for unit in units:
            self._stop_pod(unit, graceful=True, destroy_storage=destroy_storage)
        self._pump()

    def integrate(self, a: str, b: str) -> None:
        """Relate two endpoints."""
        self.model.integrate(a, b)
        self._pump()

    def remove_relation(self, a: str, b: str) -> None:
        """Remove a relation."""
        self.model.remove_relation(a, b)
        self._pump()

    def config(self, app: str, values: Mapping[str, Any]) -> None:
        """Set config options."""
        self.model.config(app, dict(values))
        self._pump()

    def run_action(
        self, unit: str, action: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run an action; raise ActionFailedError with the charm's message if it failed."""
        result = self.model.run_action(unit, action, dict(params or {}))
        self._pump()
        if result.status != "completed":
            raise ActionFailedError(unit, action, result.message or "", result.results)
        return dict(result.results)

    def status(self) -> Status:
        """The model's status, as `juju status` would show it."""
        model_status = self.model.status()
        units: dict[str, UnitInfo] = {}
        apps: dict[str, tuple[str, str]] = {}
        for app in model_status.apps.values():
            apps[app.name] = (app.status, app.message)
            for unit in app.units.values():
                units[unit.name] = UnitInfo(
                    unit.name, unit.workload_status, unit.message, unit.leader, unit.address
                )
        return Status(units, apps)

    def wait_for(
        self, condition: Callable[[Status], bool], timeout: float = 300.0, what: str = ""
    ) -> Status:
        """Let the model run (notices, checks, update-status) until the condition holds."""
        deadline = time.monotonic() + timeout
        while True:
            self._pump()
            current = self.status()
            if condition(current):
                return current
            if time.monotonic() > deadline:
                raise backend.WaitTimeoutError(
                    f"timed out after {timeout:.0f} s waiting for {what or 'the condition'}: "
                    + "; ".join(
                        f"{u.name} {u.workload_status} {u.message}" for u in current.units.values()
                    )
                )
            time.sleep(0.5)

    def exec(self, unit: str, command: list[str], container: str = CONTAINER) -> str:
        """Run a command in the unit's pod as root; stdout."""
        return self._unit_pod(unit).pod.exec(command, timeout=120).stdout

    def write_file(
        self, unit: str, path: str, data: str | bytes, *, mode: int = 0o600, owner: str = "root"
    ) -> None:
        """Write a file in the unit's pod, as `pebble push` would: no content in any argv.

        The mode is set before the content is written; `owner` is a user (and its group).
        """
        self._unit_pod(unit).pod.write_file(path, data, mode=mode, owner=owner)

    def address(self, unit: str) -> str:
        """The unit's pod IP."""
        return self._unit_pod(unit).pod.ip

    def service_address(self, service: str) -> str:
        """The HAProxy address standing in for a Kubernetes Service."""
        return self.router.address(service)

    @property
    def host_address(self) -> str:
        """The host as every pod reaches it (the pods' gateway): where to listen for them."""
        return self.substrate.host_ip

    def add_host(self, name: str, ip: str) -> None:
        """Make `name` resolve to `ip` in every pod, present and future (their /etc/hosts).

        Kept when the Services' names are rewritten; for servers outside the model that pods
        must reach by name, such as an S3 endpoint whose certificate names it.
        """
        self.substrate.hosts.add(name, ip)

    def kill(self, unit: str, process: str, signal: Signal = Signal.SIGKILL) -> None:
        """Signal the unit's processes whose command name is `process` (e.g. patroni, postgres)."""
        pod = self._unit_pod(unit).pod
        hit = 0
        for pid in pod.pids():
            with contextlib.suppress(OSError):
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
                if process in (comm, os.path.basename(argv0)):
                    os.kill(pid, signal.value)
                    hit += 1
        if not hit:
            raise BackendError(f"no process named {process!r} in {unit}")

    def delete_pod(self, unit: str, recreate: bool = True, force: bool = False) -> None:
        """Delete a unit's pod (storage kept); Kubernetes recreates it unless `recreate` is false.

        `force` kills everything at once, as when the node under the pod dies.
        """
        self._stop_pod(unit, graceful=not force)
        if not recreate:
            self.model.mark_dead(unit)
            self._pump()
            return
        self.recreate_pod(unit)

    def recreate_pod(self, unit: str) -> None:
        """Start the unit's pod again (same name and storage, a new IP) and tell the model."""
        if unit in self._pods:
            raise BackendError(f"{unit} still has its pod")
        address = self._create_pod(unit)
        self.model.mark_alive(unit)
        self.model.restart_pod(unit, address=address)
        self._ready([unit])

    def disconnect(self, unit: str) -> None:
        """Cut the unit's pod off the network."""
        self._unit_pod(unit).pod.disconnect()

    def reconnect(self, unit: str) -> None:
        """Heal the cut."""
        self._unit_pod(unit).pod.reconnect()

    def teardown(self) -> None:
        """Stop everything, in parallel, and remove what the run created."""
        for unit_pod in self._pods.values():
            unit_pod.stop.set()
        with contextlib.suppress(Exception):
            self.router.teardown()
        self.substrate.teardown()
        self._pods.clear()

    def _unit_pod(self, unit: str) -> _UnitPod:
        try:
            return self._pods[unit]
        except KeyError:
            raise BackendError(f"{unit} has no pod") from None

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *_: object) -> None:
        self.teardown()
