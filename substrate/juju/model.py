"""The local Juju model: deploy, integrate, configure, run actions and read status, hook by hook.

One `Model` is one Juju model, i.e. one Kubernetes namespace. Commands change the model and
queue the hooks Juju would run; `settle()` (called by every command unless `auto_settle` is
off) runs them one at a time, in the order they were queued, until no unit has anything left.
Each hook is the charm's own code run by `ops.testing` (see runner and seams).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
import uuid as uuid_module
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import ops
import yaml

from substrate.juju import lifecycle, metadata, status
from substrate.juju.errors import InvalidCommandError, JujuModelError
from substrate.juju.kube import FakeKube
from substrate.juju.records import (
    ActionRequest,
    ActionResult,
    Application,
    Dispatch,
    Hook,
    RelationRecord,
)
from substrate.juju.runner import KubeClientFactory, PebbleClientFactory, Runner
from substrate.juju.scheduler import Scheduler
from substrate.juju.view import ModelView
from substrate.juju.world import World

# Written once per application from charmcraft.yaml, for code that reads them from the charm dir.
_GENERATED = ("metadata.yaml", "config.yaml", "actions.yaml")


def sequential_addresses(prefix: str = "10.1") -> Callable[[str], str]:
    """An address factory giving each new pod the next IP: `<prefix>.0.10`, `.0.11`, ..."""
    counter = itertools.count()

    def address(_: str) -> str:
        n = next(counter)
        return f"{prefix}.{n // 240}.{10 + n % 240}"

    return address


class Model(ModelView):
    """One Juju model (one Kubernetes namespace) whose hooks run the charms' own code.

    Args:
        name: the model's name, which is also the namespace the charms see.
        root: where storage, pod filesystems and charm directories live (a temporary
            directory, removed by `close()`, when not given).
        pebble_client_factory: `(unit, container) -> ops.pebble.Client | None`, called for
            each container at each hook; a client makes the charm's `Container` calls go to
            it (a real Pebble), None keeps ops.testing's in-memory Pebble.
        address_factory: `unit -> IP` for each new pod (default 10.1.0.10, .11, ...).
        kube: the Kubernetes stand-in the charms' lightkube clients act on.
        kube_client_factory: `(app, trusted, namespace) -> client`, to hand the charms another
            lightkube stand-in than `kube`.
        patch_lightkube: whether `lightkube.Client` is replaced during hooks at all.
        auto_pebble_ready: queue `<container>-pebble-ready` right after `start` (default: only
            with the in-memory Pebble; a substrate with real Pebbles calls `pebble_ready()`).
        auto_settle: every command runs the hooks it queued before returning.
        juju_version: the Juju version the charms see.
        max_hooks, max_repeats: the loop guard of `settle()`: hooks in one settle, and runs of
            the same hook on the same unit for the same remote, before QuiescenceError.
    """

    def __init__(
        self,
        name: str = "test-model",
        *,
        root: Path | None = None,
        uuid: str | None = None,
        pebble_client_factory: PebbleClientFactory | None = None,
        address_factory: Callable[[str], str] | None = None,
        kube: FakeKube | None = None,
        kube_client_factory: Callable[[str, bool, str], Any] | None = None,
        patch_lightkube: bool = True,
        auto_pebble_ready: bool | None = None,
        auto_settle: bool = True,
        juju_version: str = "3.6.14",
        max_hooks: int = 2000,
        max_repeats: int = 50,
    ):
        self._own_root = root is None
        root = Path(tempfile.mkdtemp(prefix="juju-model-")) if root is None else Path(root)
        root.mkdir(parents=True, exist_ok=True)
        self.kube = kube if kube is not None else FakeKube()
        self._world = World(name, uuid or str(uuid_module.uuid4()), root, self.kube)
        self._address_factory = address_factory or sequential_addresses()
        self._kube_client_factory = kube_client_factory
        self._patch_lightkube = patch_lightkube
        self.auto_pebble_ready = (
            pebble_client_factory is None if auto_pebble_ready is None else auto_pebble_ready
        )
        self.auto_settle = auto_settle
        self._runner = Runner(self._world, pebble_client_factory, self._kube_client, juju_version)
        self._scheduler = Scheduler(self._world, self._runner, max_hooks, max_repeats)
        self._actions: dict[str, ActionResult] = {}

    def close(self) -> None:
        """Remove the model's directory if the model created it."""
        if self._own_root:
            shutil.rmtree(self._world.root, ignore_errors=True)

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- applications and units -------------------------------------------------------------

    def deploy(
        self,
        charm: type[ops.CharmBase],
        app: str | None = None,
        *,
        charm_root: Path | str,
        num_units: int = 1,
        config: Mapping[str, Any] | None = None,
        trust: bool = False,
        images: Mapping[str, Path] | None = None,
        execs: Mapping[str, Iterable[Any]] | None = None,
    ) -> list[str]:
        """Deploy a charm; returns the new units' names.

        `images` seeds each container's filesystem (in-memory Pebble only) from a host directory,
        as the OCI image would; `execs` are ops.testing `Exec` mocks per container.
        """
        meta = metadata.load(Path(charm_root))
        name = app or meta.name
        if name in self._world.apps:
            raise InvalidCommandError(f"application {name!r} already exists")
        values = meta.validate_config(config or {})
        application = Application(
            name=name,
            charm=charm,
            charm_root=Path(charm_root),
            metadata=meta,
            virtual_root=self._virtual_root(name, Path(charm_root)),
            trust=trust,
            config={k: v for k, v in values.items() if v is not None},
            images={k: Path(v) for k, v in (images or {}).items()},
            execs={k: frozenset(v) for k, v in (execs or {}).items()},
        )
        self._world.apps[name] = application
        for endpoint in meta.peers:
            relation = RelationRecord(
                self._next_relation_id(), endpoint.interface, {name: endpoint}, {name: {}}
            )
            self._world.relations[relation.id] = relation
        return self.add_unit(name, num_units) if num_units else []

    def _virtual_root(self, app: str, charm_root: Path) -> Path:
        """The charm directory hooks run in: the real one linked, plus its generated metadata."""
        root = self._world.root / "charms" / app
        shutil.rmtree(root, ignore_errors=True)  # an application of the same name was removed
        root.mkdir(parents=True)
        for entry in charm_root.iterdir():
            if entry.name not in _GENERATED:
                (root / entry.name).symlink_to(entry.resolve())
        meta = metadata.load(charm_root)
        for name, content in zip(_GENERATED, (meta.meta, meta.config, meta.actions), strict=True):
            (root / name).write_text(yaml.safe_dump(content))
        return root

    def add_unit(self, app: str, num_units: int = 1) -> list[str]:
        """Scale up; returns the new units' names (numbers are never reused)."""
        application = self._world.app(app)
        units = lifecycle.add_units(
            self._world, application, num_units, self._address_factory, self.auto_pebble_ready
        )
        self._maybe_settle()
        return [u.name for u in units]

    def remove_unit(self, *units: str, destroy_storage: bool = False) -> None:
        """Scale down; storage stays on the host unless `destroy_storage`."""
        for name in units:
            unit = self._world.unit(name)
            if not unit.dying:
                lifecycle.remove_unit(self._world, unit, destroy_storage)
        self._maybe_settle()

    def remove_application(self, app: str, *, destroy_storage: bool = False) -> None:
        """Remove an application: its relations break, then every unit goes."""
        application = self._world.app(app)
        for relation in self._world.relations_of(app):
            if not relation.is_peer and not relation.dying:
                lifecycle.remove_relation(self._world, relation)
        for unit in application.sorted_units():
            if not unit.dying:
                lifecycle.remove_unit(self._world, unit, destroy_storage)
        self.settle()
        if not application.units:
            for relation in self._world.relations_of(app):
                del self._world.relations[relation.id]
            self._world.secrets.forget_app(app)
            del self._world.apps[app]

    def mark_dead(self, unit: str) -> None:
        """The unit's agent is gone: its hooks wait and, if it led, another unit leads."""
        lifecycle.set_alive(self._world, self._world.unit(unit), alive=False)
        self._maybe_settle()

    def mark_alive(self, unit: str) -> None:
        """The unit's agent is back: queued hooks run again."""
        lifecycle.set_alive(self._world, self._world.unit(unit), alive=True)
        self._maybe_settle()

    def restart_pod(self, unit: str, *, address: str | None = None) -> None:
        """The unit's pod was recreated: stop, then upgrade-charm, config-changed, start.

        Storage is kept; the in-memory containers start afresh; `address` is the new pod IP.
        """
        lifecycle.restart_pod(self._world, self._world.unit(unit), address, self.auto_pebble_ready)
        self._maybe_settle()

    # -- relations --------------------------------------------------------------------------

    def integrate(self, app1: str, app2: str) -> int:
        """Relate two applications (`app` or `app:endpoint`); returns the relation id."""
        (a, ea), (b, eb) = self._match_endpoints(app1, app2)
        for relation in self._world.relations.values():
            if not relation.dying and relation.sides.get(a) == ea and relation.sides.get(b) == eb:
                raise InvalidCommandError(f"relation {a}:{ea.name} {b}:{eb.name} already exists")
        relation = RelationRecord(
            self._next_relation_id(), ea.interface, {a: ea, b: eb}, {a: {}, b: {}}
        )
        lifecycle.integrate(self._world, relation)
        self._maybe_settle()
        return relation.id

    def _match_endpoints(
        self, first: str, second: str
    ) -> tuple[tuple[str, metadata.Endpoint], tuple[str, metadata.Endpoint]]:
        def candidates(spec: str) -> tuple[str, list[metadata.Endpoint]]:
            app, _, endpoint = spec.partition(":")
            eps = self._world.app(app).metadata.endpoints
            found = [e for e in eps.values() if e.role != "peer" and endpoint in ("", e.name)]
            if endpoint and not found:
                raise InvalidCommandError(f"application {app!r} has no endpoint {endpoint!r}")
            return app, found

        (a, left), (b, right) = candidates(first), candidates(second)
        pairs = [
            (x, y) for x in left for y in right
            if x.interface == y.interface and {x.role, y.role} == {"provides", "requires"}
        ]  # fmt: skip
        if len(pairs) != 1:
            what = "no" if not pairs else "ambiguous"
            raise InvalidCommandError(f"{what} matching endpoints between {first} and {second}")
        return (a, pairs[0][0]), (b, pairs[0][1])

    def remove_relation(self, app1: str | int, app2: str | None = None) -> None:
        """Remove a relation, by id or by its two applications (`app` or `app:endpoint`)."""
        if isinstance(app1, int):
            relation = self._world.relation(app1)
        else:
            assert app2 is not None, "name both applications, or give a relation id"
            relation = self._world.relation(self.relation_id(app1, app2))
        lifecycle.remove_relation(self._world, relation)
        self._maybe_settle()

    def _next_relation_id(self) -> int:
        relation_id = self._world.next_relation_id
        self._world.next_relation_id += 1
        return relation_id

    # -- config, trust, ticks ---------------------------------------------------------------

    def config(
        self, app: str, values: Mapping[str, Any] | None = None, *, reset: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Set (None or `reset` restores the default) and return an application's config.

        Values are checked against charmcraft.yaml as `juju config` does (InvalidConfigError,
        nothing changed); config-changed runs on every unit only if something changed.
        """
        application = self._world.app(app)
        updates = application.metadata.validate_config(
            {**dict(values or {}), **dict.fromkeys(reset)}
        )
        before = application.effective_config()
        for key, value in updates.items():
            if value is None:
                application.config.pop(key, None)
            else:
                application.config[key] = value
        if application.effective_config() != before:
            self._enqueue_all(application, "config-changed")
            self._maybe_settle()
        return application.effective_config()

    def trust(self, app: str, trusted: bool = True) -> None:
        """`juju trust` (or `--remove`): the charm may use the Kubernetes API; config-changed runs."""
        application = self._world.app(app)
        if application.trust != trusted:
            application.trust = trusted
            self._enqueue_all(application, "config-changed")
            self._maybe_settle()

    def update_status(self) -> list[Dispatch]:
        """One update-status tick on every unit; failed hooks are retried first."""
        for application in self._world.apps.values():
            self._enqueue_all(application, "update-status")
        return self.settle()

    def run_hook(self, unit: str, kind: str) -> list[Dispatch]:
        """Queue a unit-level hook (`update-status`, `config-changed`...) on one unit; settle.

        As Juju's per-unit timer fires update-status, or as it re-runs config-changed when
        nothing changed (after an agent restart); returns every hook that ran.
        """
        self._world.enqueue(self._world.unit(unit), kind)
        return self.settle()

    def _enqueue_all(self, application: Application, kind: str) -> None:
        for unit in application.sorted_units():
            if not unit.dying:
                self._world.enqueue(unit, kind)

    # -- Pebble, as the substrate reports it -------------------------------------------------

    def containers(self, unit: str) -> list[str]:
        """The names of the unit's workload containers (from its charm's metadata)."""
        return sorted(self._world.unit(unit).containers)

    def pebble_ready(self, unit: str, container: str) -> None:
        """The container's Pebble is up: `<container>-pebble-ready`."""
        record = self._container(unit, container)
        record.up = True
        self._world.enqueue(self._world.unit(unit), "pebble-ready", container=container)
        self._maybe_settle()

    def pebble_custom_notice(
        self, unit: str, container: str, key: str, data: Mapping[str, str] | None = None
    ) -> None:
        """A custom notice (`pebble notify <key>`): `<container>-pebble-custom-notice`.

        With a real Pebble the notice must exist there; the in-memory one records it here.
        """
        record = self._container(unit, container)
        if self._in_memory(unit, container):
            lifecycle.record_notice(record, key, data)
        self._world.enqueue(
            self._world.unit(unit), "pebble-custom-notice", container=container, notice_key=key
        )
        self._maybe_settle()

    def pebble_check_failed(self, unit: str, container: str, check: str) -> None:
        """A Pebble check reached its failure threshold: `<container>-pebble-check-failed`."""
        self._pebble_check(unit, container, check, ops.pebble.CheckStatus.DOWN)

    def pebble_check_recovered(self, unit: str, container: str, check: str) -> None:
        """A failed Pebble check passes again: `<container>-pebble-check-recovered`."""
        self._pebble_check(unit, container, check, ops.pebble.CheckStatus.UP)

    def _pebble_check(
        self, unit: str, container: str, check: str, status_: ops.pebble.CheckStatus
    ) -> None:
        record = self._container(unit, container)
        if self._in_memory(unit, container):
            lifecycle.set_check(record, check, status_)
        kind = (
            "pebble-check-failed"
            if status_ == ops.pebble.CheckStatus.DOWN
            else "pebble-check-recovered"
        )
        self._world.enqueue(self._world.unit(unit), kind, container=container, check=check)
        self._maybe_settle()

    def _in_memory(self, unit: str, container: str) -> bool:
        """Whether the container uses ops.testing's in-memory Pebble (no client from the substrate)."""
        factory = self._runner.pebble_client_factory
        return factory is None or factory(unit, container) is None

    # -- actions ----------------------------------------------------------------------------

    def run_action(
        self, unit: str, action: str, params: Mapping[str, Any] | None = None
    ) -> ActionResult:
        """`juju run <unit> <action>`: params checked against the action's schema, defaults filled.

        Raises InvalidActionError where Juju would refuse the command; a charm that fails the
        action or raises gives a `failed` result (the unit is not put in error).
        """
        target = self._world.unit(unit)
        if not target.alive:
            raise InvalidCommandError(f"unit {unit} is not running (its agent is dead)")
        application = self._world.apps[target.app]
        filled = application.metadata.action_params(action, params or {})
        self._maybe_settle()
        self._world.next_action_id += 1
        request = ActionRequest(str(self._world.next_action_id), action, filled)
        outcome = self._scheduler.run(target, Hook(seq=-1, kind="action", action=request))
        assert outcome.action is not None
        self._actions[request.id] = outcome.action
        self._maybe_settle()
        return outcome.action

    # -- running hooks ----------------------------------------------------------------------

    def settle(self) -> list[Dispatch]:
        """Run queued hooks until the model is quiet; returns what ran.

        A unit whose hook fails is in error: the hook stays at the head of its queue and is
        retried once by the next settle (Juju retries failed hooks), so nothing behind it runs.
        Raises QuiescenceError when hooks keep triggering each other.
        """
        return self._scheduler.settle()

    def wait(
        self,
        ready: Callable[[status.ModelStatus], bool],
        *,
        timeout: float = 120.0,
        delay: float = 1.0,
        error: Callable[[status.ModelStatus], bool] | None = None,
    ) -> status.ModelStatus:
        """Tick update-status every `delay` seconds until `ready(status)`, like `juju wait`.

        Meant for real workloads that change on their own (a cluster bootstrapping): the ticks
        are Juju's periodic update-status. Raises TimeoutError, or JujuModelError as soon as
        `error(status)` holds.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.settle()
            current = self.status()
            if error is not None and error(current):
                raise JujuModelError(f"the model reached an error state: {current}")
            if ready(current):
                return current
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the model was not ready after {timeout}s: {current}")
            time.sleep(delay)
            self.update_status()

    def _maybe_settle(self) -> None:
        if self.auto_settle:
            self.settle()

    def _kube_client(self, app: Application) -> KubeClientFactory | None:
        if not self._patch_lightkube:
            return None
        custom, kube, default_ns = self._kube_client_factory, self.kube, self._world.name

        def client(*_: Any, namespace: str | None = None, **kwargs: Any) -> Any:
            ns = namespace or default_ns
            if custom is not None:
                return custom(app.name, app.trust, ns)
            return kube.client(app=app.name, trusted=app.trust, namespace=ns, **kwargs)

        return client
