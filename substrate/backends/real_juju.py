"""The tier-3 `Backend` on a real Juju model on Kubernetes, through `jubilant`.

Verbs map onto one `jubilant.Juju` call each (deploy, add-unit, integrate, config, run, status,
wait, ssh) except where Kubernetes needs more:

- remove_unit: Juju on Kubernetes cannot remove a named unit; it scales the StatefulSet, which
  removes the highest ordinals. Named units are accepted only if they are the highest ones, and
  the application is then scaled to what is left (`juju scale-application`).
- delete_pod, disconnect, reconnect: Juju has no verb for these, so they go to `kubectl`
  (the current kube context must be the cluster that hosts the model; the model's namespace is
  the model's name).
- service_address: a Service's cluster DNS name, which only resolves inside the cluster; a caller
  outside it needs `kubectl port-forward` or a route to the cluster network.

Anything the CLI refuses surfaces as `BackendError` with Juju's or kubectl's own message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import subprocess
from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jubilant

from substrate.backends.backend import (
    ActionFailedError,
    BackendError,
    Signal,
    Status,
    UnitInfo,
    WaitTimeoutError,
)

logger = logging.getLogger(__name__)

_CONFIG_TYPES = (bool, int, float, str)
_ERE_SPECIAL = frozenset(".[]()*+?{}|^$\\")
_POLICY_PREFIX = "substrate-disconnect-"


def convert_status(status: jubilant.Status) -> Status:
    """The backend-neutral view of `juju status --format json` as jubilant parsed it."""
    units: dict[str, UnitInfo] = {}
    apps: dict[str, tuple[str, str]] = {}
    for app_name, app in status.apps.items():
        apps[app_name] = (app.app_status.current or "unknown", app.app_status.message)
        for unit_name, unit in app.units.items():
            units[unit_name] = UnitInfo(
                name=unit_name,
                workload_status=unit.workload_status.current or "unknown",
                message=unit.workload_status.message,
                leader=unit.leader,
                address=unit.address or unit.public_address,
            )
    return Status(units=units, apps=apps)


def pod_name(unit: str) -> str:
    """The pod a unit of a sidecar charm runs in: `app/3` runs in `app-3`."""
    app, number = _split_unit(unit)
    return f"{app}-{number}"


def _split_unit(unit: str) -> tuple[str, int]:
    app, sep, number = unit.rpartition("/")
    if not sep or not app or not number.isdigit():
        raise BackendError(f"{unit!r} is not a unit name (app/N)")
    return app, int(number)


def pkill_pattern(text: str) -> str:
    """An extended regex matching `text` literally but not the command line that carries it.

    `juju ssh` on Kubernetes runs the command through `sh -c`, whose own command line holds the
    pattern: bracketing one letter (`[p]atroni`) keeps that shell from matching itself.
    """
    escaped = ["\\" + c if c in _ERE_SPECIAL else c for c in text]
    for i, c in enumerate(text):
        if c.isalnum():
            escaped[i] = f"[{c}]"
            break
    return "".join(escaped)


def _describe(status: Status | None) -> str:
    if status is None:
        return "no status was read"
    lines = [f"{app}: {current} {message!r}" for app, (current, message) in status.apps.items()]
    lines += [
        f"{u.name}: {u.workload_status} {u.message!r}{' (leader)' if u.leader else ''}"
        for u in status.units.values()
    ]
    return "last status:\n  " + "\n  ".join(lines)


@contextlib.contextmanager
def _cli_errors(what: str) -> Generator[None, None, None]:
    """Turn a failed Juju command into a BackendError that carries Juju's message."""
    try:
        yield
    except jubilant.CLIError as e:
        detail = (e.stderr or e.stdout or "").strip()
        raise BackendError(f"{what}: juju exited {e.returncode}: {detail}") from e


class JujuBackend:
    """`substrate.backends.backend.Backend` on a Juju model on Kubernetes.

    Args:
        juju: A `jubilant.Juju` bound to the model, or the model's name.
        charm_paths: Charm name (as scenarios pass it to `deploy`) to a packed `.charm` file.
            A charm not listed here is deployed from Charmhub by name.
        resources: Charm name to its resources, e.g.
            `{"postgresql-k8s": {"postgresql-image": "ghcr.io/...:16"}}` (local charms need
            their OCI images named here).
        kubectl: The kubectl command for the cluster that hosts the model, e.g.
            `("microk8s", "kubectl")` or `("kubectl", "--context", "ci")`.
        network_policies: Implement disconnect/reconnect with a deny-all NetworkPolicy on the
            unit's pod. Only meaningful if the cluster's CNI enforces NetworkPolicy (Calico,
            Cilium); off by default, where those verbs raise BackendError.
        kill_container: The container `kill` signals processes in.
        action_timeout: Seconds `run_action` waits for an action (Juju's default is 60).
        wait_delay: Seconds between status reads in `wait_for`.
        wait_successes: How many status reads in a row must satisfy a `wait_for` condition
            (more than one rides out the brief "active" between two hooks).
        cluster_domain: The cluster's DNS domain, for `service_address`.
    """

    def __init__(
        self,
        juju: jubilant.Juju | str,
        charm_paths: Mapping[str, str] | None = None,
        resources: Mapping[str, Mapping[str, str]] | None = None,
        *,
        kubectl: Sequence[str] = ("kubectl",),
        network_policies: bool = False,
        kill_container: str = "postgresql",
        action_timeout: float | None = 600.0,
        wait_delay: float = 1.0,
        wait_successes: int = 3,
        cluster_domain: str = "cluster.local",
    ):
        self.juju = jubilant.Juju(model=juju) if isinstance(juju, str) else juju
        self.charm_paths = dict(charm_paths or {})
        self.resources = {k: dict(v) for k, v in (resources or {}).items()}
        self.kubectl = tuple(kubectl)
        self.network_policies = network_policies
        self.kill_container = kill_container
        self.action_timeout = action_timeout
        self.wait_delay = wait_delay
        self.wait_successes = wait_successes
        self.cluster_domain = cluster_domain
        self._owned_model: str | None = None
        self._deployed: list[str] = []
        self._policies: set[str] = set()  # units cut off by disconnect
        self._namespace: str | None = None

    @classmethod
    def new_model(
        cls,
        model: str,
        charm_paths: Mapping[str, str] | None = None,
        resources: Mapping[str, Mapping[str, str]] | None = None,
        *,
        juju: jubilant.Juju | None = None,
        cloud: str | None = None,
        **options: Any,
    ) -> JujuBackend:
        """Add a model and return a backend on it; `teardown` destroys the model.

        `juju` may carry settings such as `cli_binary`; `options` are the constructor's.
        """
        juju = juju if juju is not None else jubilant.Juju()
        with _cli_errors(f"add model {model}"):
            juju.add_model(model, cloud)
        backend = cls(juju, charm_paths, resources, **options)
        backend._owned_model = model
        return backend

    # Deploy and scale.

    def deploy(
        self,
        app: str,
        *,
        charm: str = "postgresql-k8s",
        units: int = 1,
        config: Mapping[str, Any] | None = None,
        trust: bool = True,
    ) -> None:
        """Deploy `charm` (a packed file from `charm_paths`, else from Charmhub) as `app`."""
        source: str = charm
        if charm in self.charm_paths:
            path = Path(self.charm_paths[charm])
            if not path.is_file():
                raise BackendError(f"the {charm} charm is not packed: {path} does not exist")
            source = str(path.absolute())
        with _cli_errors(f"deploy {app}"):
            self.juju.deploy(
                source,
                app,
                num_units=units,
                config=_config_values(config) if config else None,
                trust=trust,
                resources=self.resources.get(charm),
            )
        self._deployed.append(app)

    def trust(self, app: str) -> None:
        """`juju trust <app> --scope=cluster`."""
        self.juju.trust(app, scope="cluster")

    def add_unit(self, app: str, count: int = 1) -> None:
        """Scale up by `count` units (Kubernetes gives them the next ordinals)."""
        with _cli_errors(f"add {count} unit(s) to {app}"):
            self.juju.add_unit(app, num_units=count)

    def remove_unit(self, *units: str, destroy_storage: bool = True) -> None:
        """Scale down by removing the named units, which must be each application's highest.

        Juju on Kubernetes removes units by scaling the StatefulSet, which always removes the
        highest ordinals, so naming any other unit is refused rather than removing the wrong one.

        `destroy_storage` cannot be honoured either way: Juju refuses `--destroy-storage` on
        Kubernetes models, and Kubernetes keeps a StatefulSet's volume claims on scale-down, so
        a unit added back at the same ordinal may find its old volume.
        """
        if not units:
            raise BackendError("remove_unit needs at least one unit")
        wanted: dict[str, set[int]] = {}
        for unit in units:
            app, number = _split_unit(unit)
            wanted.setdefault(app, set()).add(number)
        status = self._juju_status()
        targets: dict[str, int] = {}
        for app, numbers in wanted.items():
            if app not in status.apps:
                raise BackendError(f"remove_unit: there is no application {app!r}")
            present = sorted(_split_unit(u)[1] for u in status.apps[app].units)
            missing = sorted(numbers - set(present))
            if missing:
                raise BackendError(
                    f"remove_unit: {', '.join(f'{app}/{n}' for n in missing)} does not exist"
                )
            highest = present[len(present) - len(numbers) :]
            if sorted(numbers) != highest:
                asked = ", ".join(f"{app}/{n}" for n in sorted(numbers))
                removable = ", ".join(f"{app}/{n}" for n in highest)
                raise BackendError(
                    f"remove_unit: cannot remove {asked}: on Kubernetes Juju scales the "
                    f"StatefulSet down, which removes the highest ordinals ({removable})"
                )
            targets[app] = len(present) - len(numbers)
        for app, scale in targets.items():
            with _cli_errors(f"scale {app} to {scale}"):
                self.juju.cli("scale-application", app, str(scale))

    # Relations and config.

    def integrate(self, a: str, b: str) -> None:
        """Relate two endpoints (`app` or `app:endpoint`)."""
        with _cli_errors(f"integrate {a} {b}"):
            self.juju.integrate(a, b)

    def remove_relation(self, a: str, b: str) -> None:
        """Remove the relation between two endpoints."""
        with _cli_errors(f"remove relation {a} {b}"):
            self.juju.remove_relation(a, b)

    def config(self, app: str, values: Mapping[str, Any]) -> None:
        """Set config options of an application."""
        with _cli_errors(f"config {app}"):
            self.juju.config(app, _config_values(values))

    # Actions and observation.

    def run_action(
        self, unit: str, action: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run an action, wait for it, and return its results.

        Raises ActionFailedError with the charm's failure message (or the hook's stderr) if
        the task did not complete; BackendError if the unit or action does not exist.
        """
        try:
            with _cli_errors(f"run {action} on {unit}"):
                task = self.juju.run(
                    unit,
                    action,
                    dict(params) if params is not None else None,
                    wait=self.action_timeout,
                )
        except jubilant.TaskError as e:
            failed = e.task
            message = failed.message or failed.stderr.strip() or f"task {failed.status}"
            raise ActionFailedError(unit, action, message, failed.results) from e
        except ValueError as e:
            raise BackendError(f"run {action} on {unit}: {e}") from e
        except TimeoutError as e:
            raise BackendError(
                f"run {action} on {unit}: no result within {self.action_timeout}s"
            ) from e
        if not task.success:  # jubilant raises on failure; keep the contract if that changes
            message = task.message or task.stderr.strip() or f"task {task.status}"
            raise ActionFailedError(unit, action, message, task.results)
        return dict(task.results)

    def status(self) -> Status:
        """The model's status now."""
        return convert_status(self._juju_status())

    def wait_for(
        self, condition: Callable[[Status], bool], timeout: float = 300.0, what: str = ""
    ) -> Status:
        """Poll `juju status` until `condition` holds `wait_successes` reads in a row."""
        last: list[Status] = []

        def ready(status: jubilant.Status) -> bool:
            converted = convert_status(status)
            last[:] = [converted]
            return condition(converted)

        try:
            with _cli_errors(f"wait for {what or 'condition'}"):
                final = self.juju.wait(
                    ready,
                    delay=self.wait_delay,
                    timeout=timeout,
                    successes=self.wait_successes,
                )
        except TimeoutError as e:
            raise WaitTimeoutError(
                f"timed out after {timeout}s waiting for {what or 'condition'}; "
                + _describe(last[0] if last else None)
            ) from e
        return convert_status(final)

    def exec(self, unit: str, command: list[str], container: str = "postgresql") -> str:
        """Run a command in a unit's container (`juju ssh --container`) and return its stdout.

        Juju runs it as `sh -c '<words joined by spaces>'`, so the words are shell-quoted here.
        A non-zero exit raises BackendError with the command's output.
        """
        if not command:
            raise BackendError("exec needs a command")
        with _cli_errors(f"exec {shlex.join(command)} in {unit} ({container})"):
            return self.juju.ssh(unit, shlex.join(command), container=container)

    def address(self, unit: str) -> str:
        """The unit's pod IP, as `juju status` reports it."""
        info = self.status().units.get(unit)
        if info is None:
            raise BackendError(f"address: there is no unit {unit!r}")
        if not info.address:
            raise BackendError(f"address: {unit} has no address yet (its pod is not running)")
        return info.address

    def service_address(self, service: str) -> str:
        """The Service's cluster DNS name, `<service>.<model>.svc.<cluster domain>`.

        It resolves only inside the cluster: a caller outside must run in a pod, have a route
        to the cluster network, or `kubectl port-forward svc/<service>` and use localhost.
        """
        return f"{service}.{self.namespace()}.svc.{self.cluster_domain}"

    def namespace(self) -> str:
        """The Kubernetes namespace of the model, which is the model's short name."""
        if self._namespace is None:
            if self.juju.model:
                self._namespace = self.juju.model.split(":")[-1].split("/")[-1]
            else:
                self._namespace = self._juju_status().model.name
        return self._namespace

    # Chaos.

    def kill(self, unit: str, process: str, signal: Signal = Signal.SIGKILL) -> None:
        """Signal the processes whose command line contains `process`, in `kill_container`.

        Uses `pkill -f` in the container; BackendError if nothing matched (pkill exits 1) or
        the container has no pkill.
        """
        if not process:
            raise BackendError("kill needs a process to match")
        signal_name = signal.name.removeprefix("SIG")
        argv = ["pkill", "--signal", signal_name, "-f", pkill_pattern(process)]
        logger.info("kill: %s in %s (%s)", shlex.join(argv), unit, self.kill_container)
        with _cli_errors(
            f"kill -{signal_name} {process!r} in {unit} ({self.kill_container}); "
            "pkill exits 1 if no process matched"
        ):
            self.juju.ssh(unit, shlex.join(argv), container=self.kill_container)

    def delete_pod(self, unit: str, recreate: bool = True, force: bool = False) -> None:
        """`kubectl delete pod`: the StatefulSet recreates it with the same volumes.

        `force` deletes it without a grace period (`--grace-period=0 --force`), the nearest
        Kubernetes has to the node under it dying. `recreate=False` is refused: a StatefulSet
        always recreates a deleted pod, and keeping it away means scaling down, which Juju sees
        as removing the unit (use remove_unit).
        """
        if not recreate:
            raise BackendError(
                f"delete_pod({unit}, recreate=False): a Kubernetes StatefulSet always recreates "
                "a deleted pod; only scaling down keeps it away, which is remove_unit"
            )
        argv = ["delete", "pod", pod_name(unit), "--namespace", self.namespace()]
        if force:
            argv += ["--grace-period=0", "--force"]
        logger.info("delete_pod: %s", shlex.join(argv))
        self._kubectl(*argv)

    def recreate_pod(self, unit: str) -> None:
        """Refused: Kubernetes recreates deleted pods itself, so none is ever left deleted."""
        raise BackendError(
            f"recreate_pod({unit}): on Kubernetes the StatefulSet recreates a deleted pod by "
            "itself; delete_pod(recreate=False) is not supported on real Juju"
        )

    def disconnect(self, unit: str) -> None:
        """Cut the unit's pod off the network with a deny-all NetworkPolicy (if enabled).

        Needs a CNI that enforces NetworkPolicy; the unit agent loses the controller too, as a
        real partition would. Connections already open may survive on some CNIs.
        """
        pod = self._policy_pod(unit, "disconnect")
        policy = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": _POLICY_PREFIX + pod, "namespace": self.namespace()},
            "spec": {
                "podSelector": {"matchLabels": {"statefulset.kubernetes.io/pod-name": pod}},
                "policyTypes": ["Ingress", "Egress"],
            },
        }
        self._kubectl("apply", "--filename", "-", stdin=json.dumps(policy))
        self._policies.add(unit)

    def reconnect(self, unit: str) -> None:
        """Remove the NetworkPolicy that `disconnect` created."""
        pod = self._policy_pod(unit, "reconnect")
        self._kubectl(
            "delete",
            "networkpolicy",
            _POLICY_PREFIX + pod,
            "--namespace",
            self.namespace(),
            "--ignore-not-found",
        )
        self._policies.discard(unit)

    def teardown(self) -> None:
        """Remove what this backend created: its model, or else its network policies and apps."""
        if self._owned_model is not None:
            with _cli_errors(f"destroy model {self._owned_model}"):
                self.juju.destroy_model(self._owned_model, destroy_storage=True, force=True)
            self._owned_model = None
            self._deployed.clear()
            self._policies.clear()
            return
        for unit in sorted(self._policies):
            self.reconnect(unit)
        if self._deployed:
            with _cli_errors(f"remove {', '.join(self._deployed)}"):
                self.juju.remove_application(*self._deployed, destroy_storage=True, force=True)
            self._deployed.clear()

    # Helpers.

    def _juju_status(self) -> jubilant.Status:
        with _cli_errors("status"):
            return self.juju.status()

    def _policy_pod(self, unit: str, verb: str) -> str:
        if not self.network_policies:
            raise BackendError(
                f"{verb} needs a network policy tool: not supported on real Juju unless the "
                "cluster's CNI enforces NetworkPolicy and the backend is built with "
                "network_policies=True"
            )
        return pod_name(unit)

    def _kubectl(self, *args: str, stdin: str | None = None) -> str:
        argv = [*self.kubectl, *args]
        try:
            done = subprocess.run(
                argv, input=stdin, capture_output=True, text=True, check=False, timeout=300
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BackendError(f"{shlex.join(argv)}: {e}") from e
        if done.returncode != 0:
            raise BackendError(
                f"{shlex.join(argv)} exited {done.returncode}: {done.stderr.strip()}"
            )
        return done.stdout


def _config_values(values: Mapping[str, Any]) -> dict[str, jubilant.ConfigValue]:
    """Config values as Juju takes them; anything but a scalar is a scenario bug."""
    converted: dict[str, jubilant.ConfigValue] = {}
    for key, value in values.items():
        if not isinstance(value, _CONFIG_TYPES):
            raise BackendError(
                f"config {key}={value!r}: Juju config values are str, int, float or bool"
            )
        converted[key] = value
    return converted
