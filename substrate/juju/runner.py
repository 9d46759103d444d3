"""Runs one hook of one unit through ops.testing, with the model's seams in place."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import ops
from ops import testing
from scenario.errors import UncaughtCharmError

from substrate.juju import commit, seams, state_builder
from substrate.juju.records import ActionResult, Application, Dispatch, Hook, Unit
from substrate.juju.world import World

PebbleClientFactory = Callable[[str, str], "ops.pebble.Client | None"]
KubeClientFactory = Callable[..., Any]


class _UnitContext(testing.Context[ops.CharmBase]):
    """A Context whose container and storage roots are the unit's own, kept by the model."""

    def __init__(
        self,
        charm: type[ops.CharmBase],
        pod_roots: dict[str, Path],
        storage_roots: dict[tuple[str, int], Path],
        **kwargs: Any,
    ):
        super().__init__(charm, **kwargs)
        self._pod_roots = pod_roots
        self._storage_roots = storage_roots

    def _get_container_root(self, container_name: str) -> Path:
        return self._pod_roots.get(container_name) or super()._get_container_root(container_name)

    def _get_storage_root(self, name: str, index: int) -> Path:
        path = self._storage_roots.get((name, index))
        if path is None:
            return super()._get_storage_root(name, index)
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclasses.dataclass(frozen=True)
class HookOutcome:
    """How a hook went and, for an action, what `juju run` reports."""

    dispatch: Dispatch
    action: ActionResult | None = None


def hook_name(world: World, unit: Unit, hook: Hook) -> str:
    """Juju's name for the hook (`<endpoint>-relation-joined`, `<container>-pebble-ready`...)."""
    if hook.relation_id is not None:
        return f"{world.relation(hook.relation_id).sides[unit.app].name}-{hook.kind}"
    if hook.storage is not None:
        return f"{hook.storage}-{hook.kind}"
    if hook.container is not None:
        return f"{hook.container}-{hook.kind}"
    if hook.action is not None:
        return f"{hook.action.name}-action"
    return hook.kind


class Runner:
    """Runs hooks for a World, with the substrate's Pebble clients and a Kubernetes stand-in."""

    def __init__(
        self,
        world: World,
        pebble_client_factory: PebbleClientFactory | None,
        kube_client_factory: Callable[[Application], KubeClientFactory | None],
        juju_version: str,
    ):
        self.world = world
        self.pebble_client_factory = pebble_client_factory
        self.kube_client_factory = kube_client_factory
        self.juju_version = juju_version

    def run(self, unit: Unit, hook: Hook) -> HookOutcome:
        """Run the hook; its output is committed only if it succeeded (as Juju commits)."""
        world, app = self.world, self.world.apps[unit.app]
        dispatch = Dispatch(unit.name, hook_name(world, unit, hook), hook.remote, hook.relation_id)
        _before(world, unit, hook)
        clients = self._clients(unit, app)
        state = state_builder.build(world, app, unit, clients, hook)
        pod_roots = {c: unit.pod_root / c for c, client in clients.items() if client is None}
        meta = app.metadata
        hook_seams = seams.HookSeams(
            unit.name,
            clients,
            pod_roots,
            app.virtual_root,
            lambda: ops.CharmMeta(meta.meta, meta.actions, meta.config),
            kube_client=self.kube_client_factory(app),
        )
        with self._context(app, unit, pod_roots) as ctx:
            event, hook_seams.env = state_builder.event(ctx, state, hook)
            failure: str | None = None
            try:
                with seams.active(hook_seams):
                    out = ctx.run(event, state)
            except testing.ActionFailed as e:  # event.fail(): a failed action, not a failed hook
                out, failure = cast("testing.State", e.state), e.message
            except UncaughtCharmError as e:
                error = e.__cause__ or e
                failed = dataclasses.replace(dispatch, ok=False, error=error)
                if hook.action is None:
                    return HookOutcome(failed)
                result = ActionResult(hook.action.id, "failed", {}, str(error), [], error)
                return HookOutcome(failed, result)
            commit.HookCommit(world, app, unit, hook_seams).apply(state, out)
            result = None
            if hook.action is not None:
                status = "failed" if failure is not None else "completed"
                results, logs = dict(ctx.action_results or {}), list(ctx.action_logs)
                result = ActionResult(hook.action.id, status, results, failure or "", logs)
        _after(world, unit, hook)
        return HookOutcome(dispatch, result)

    def _context(self, app: Application, unit: Unit, pod_roots: dict[str, Path]) -> _UnitContext:
        meta = app.metadata
        return _UnitContext(
            app.charm,
            pod_roots,
            {(s.name, s.index): s.path for s in unit.storage.values()},
            meta=meta.meta,
            actions=meta.actions,
            config=meta.config,
            charm_root=app.virtual_root,
            juju_version=self.juju_version,
            app_name=app.name,
            unit_id=unit.number,
            app_trusted=app.trust,
        )

    def _clients(self, unit: Unit, app: Application) -> dict[str, ops.pebble.Client | None]:
        factory = self.pebble_client_factory
        return {
            c: factory(unit.name, c) if factory is not None else None
            for c in app.metadata.containers
        }


# -- what Juju changes as a hook starts and once it succeeded ------------------------------


def _before(world: World, unit: Unit, hook: Hook) -> None:
    relation = world.relations.get(hook.relation_id) if hook.relation_id is not None else None
    if relation is not None:
        view = relation.views.setdefault(unit.name, [])
        if hook.kind == "relation-created":
            relation.created.add(unit.name)
        elif hook.kind == "relation-joined" and hook.remote and hook.remote not in view:
            view.append(hook.remote)
        elif hook.kind == "relation-departed" and hook.remote in view:
            view.remove(hook.remote)
    if hook.kind == "pebble-ready" and hook.container in unit.containers:
        unit.containers[hook.container].up = True


def _after(world: World, unit: Unit, hook: Hook) -> None:
    if hook.kind == "relation-broken" and hook.relation_id is not None:
        relation = world.relations.get(hook.relation_id)
        if relation is not None:
            relation.created.discard(unit.name)
            relation.views.pop(unit.name, None)
            relation.unit_data.pop(unit.name, None)
            if relation.dying and not relation.created:
                del world.relations[relation.id]
    if hook.after is not None:
        hook.after()
