"""Writes a goal: this unit's container (files, directories, Pebble plan) and Patroni's dynamic config.

Compare before write everywhere: applying the same goal twice writes nothing and restarts nothing.
"""

from __future__ import annotations

import glob
import logging
import posixpath
from collections.abc import Mapping
from typing import Any, cast

import ops

import goal
from workload import layout, patroni, patroni_client

logger = logging.getLogger(__name__)

_DIR_MODE = 0o700


class UnsafePathError(Exception):
    """Raised when a directory the charm owns is a symbolic link: it never writes through one.

    Root in the workload container following a link the workload user made could hand any
    file of the container to that user.
    """


class Workload:
    """This unit's `postgresql` container, seen as files and a Pebble plan."""

    def __init__(self, container: ops.Container):
        self.container = container

    def read(self, path: str) -> str | None:
        """A file's text, or None if it does not exist."""
        try:
            with self.container.pull(path) as f:
                return f.read()
        except (ops.pebble.PathError, ops.pebble.APIError):
            return None

    def entry(self, path: str) -> ops.pebble.FileInfo | None:
        """What is at `path` itself, a link included; None if nothing.

        Pebble's `list_files(path, itself=True)` follows a link (it stats), so the path is
        looked up in its parent's listing, which describes each entry as it is (lstat).
        """
        parent, name = posixpath.split(path)
        try:
            found = self.container.list_files(parent, pattern=glob.escape(name))
        except ops.pebble.APIError as e:
            if e.code != 404:
                raise
            return None
        return found[0] if found else None

    def ensure_dir(self, path: str) -> None:
        """One directory owned by the workload user, mode 0700 (created or taken over).

        Storage mounts arrive owned by root (Kubernetes volumes without an fsGroup), so an
        existing directory with another owner or mode is handed to the workload user.
        """
        info = self.entry(path)
        if info is None:
            self.container.make_dir(
                path,
                make_parents=True,
                permissions=_DIR_MODE,
                user=layout.WORKLOAD_USER,
                group=layout.WORKLOAD_GROUP,
            )
            return
        # A link root made (the image's, a storage mount's) is trusted; one anyone else made is not.
        if info.type == ops.pebble.FileType.SYMLINK and info.user_id != 0:
            raise UnsafePathError(path)
        if info.user != layout.WORKLOAD_USER or info.permissions != _DIR_MODE:
            owner = f"{layout.WORKLOAD_USER}:{layout.WORKLOAD_GROUP}"
            self.container.exec(["chown", owner, path]).wait()
            self.container.exec(["chmod", f"{_DIR_MODE:o}", path]).wait()

    def write(self, path: str, file: goal.File) -> bool:
        """Write a file owned by the workload user unless it is already right; True if written.

        Right is the content, the mode and the owner: a key made readable by others, or handed
        to another user, is written again (Pebble replaces the file, never writes through a link).
        """
        info = self.entry(path)
        if info is not None:
            right = (
                info.type == ops.pebble.FileType.FILE
                and (info.user, info.group) == (layout.WORKLOAD_USER, layout.WORKLOAD_GROUP)
                and info.permissions == file.mode
            )
            if right and self.read(path) == file.content:
                return False
        self.container.push(
            path,
            file.content,
            make_dirs=True,
            permissions=file.mode,
            user=layout.WORKLOAD_USER,
            group=layout.WORKLOAD_GROUP,
        )
        return True

    def apply_layer(self, layer: ops.pebble.LayerDict) -> bool:
        """Merge the layer into the plan and replan if the plan changed; True if it did.

        Every service and check is `override: replace`, so the plan already holds the layer when
        each of them is there as the layer defines it: then nothing is sent at all.
        """
        before = self.container.get_plan()
        wanted = ops.pebble.Layer(layer)
        if _holds(before, wanted):
            return False
        self.container.add_layer(layout.CONTAINER, layer, combine=True)
        if self.container.get_plan().to_dict() == before.to_dict():
            return False
        self.container.replan()
        return True

    def stop_disabled(self, layer: ops.pebble.LayerDict) -> None:
        """Stop the layer's disabled services that still run.

        A replan starts what is enabled and restarts what changed, whatever its startup says:
        disabling a service (the scheduler on a unit that lost leadership) does not stop it.
        """
        disabled = [
            n for n, svc in layer.get("services", {}).items() if svc.get("startup") == "disabled"
        ]
        if not disabled:
            return
        running = [
            n for n, info in self.container.get_services(*disabled).items() if info.is_running()
        ]
        if running:
            logger.info("stopping disabled services: %s", running)
            self.container.stop(*running)

    def is_running(self, service: str) -> bool:
        """Whether Pebble reports the service as running."""
        services = self.container.get_services(service)
        return service in services and services[service].is_running()


def _holds(plan: ops.pebble.Plan, layer: ops.pebble.Layer) -> bool:
    """Whether every service and check of the layer is in the plan exactly as defined."""
    services = all(
        name in plan.services and plan.services[name].to_dict() == service.to_dict()
        for name, service in layer.services.items()
    )
    checks = all(
        name in plan.checks and plan.checks[name].to_dict() == check.to_dict()
        for name, check in layer.checks.items()
    )
    return services and checks


def apply_unit(workload: Workload, unit: goal.UnitGoal) -> None:
    """Write the unit goal; a changed patroni.yml alone is a reload, not a restart.

    While the goal holds the unit (a restore), the plan is left as it is.
    """
    for path in (*layout.WORKLOAD_DIRS, *unit.dirs):
        workload.ensure_dir(path)
    changed = {path for path, file in unit.files.items() if workload.write(path, file)}
    for path in unit.absent:
        workload.container.remove_path(path, recursive=True)  # nothing to do if it is gone
    if patroni.CONF_PATH in changed:
        logger.info("patroni.yml changed")
    if unit.hold:
        return
    replanned = workload.apply_layer(unit.layer)
    workload.stop_disabled(unit.layer)
    # A replan restarts only the services whose definition changed (the exporter's, say), so a
    # changed patroni.yml is always a reload: SIGHUP makes Patroni re-read it (pg_hba included)
    # and needs no REST credentials (a rotated REST password is in the file it re-reads).
    # Pebble signals the service's own process only: Patroni's helpers in its process group (the
    # postmaster launcher, a custom bootstrap, pg_basebackup) would die of a SIGHUP.
    if patroni.CONF_PATH in changed and workload.is_running(layout.SERVICE_POSTGRESQL):
        workload.container.send_signal("SIGHUP", layout.SERVICE_POSTGRESQL)
    if unit.replan and not replanned:
        workload.container.replan()


def _differences(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The PATCH that turns `current` into `desired` for the keys the charm owns."""
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        if isinstance(value, Mapping):
            inner = current.get(key)
            existing: Mapping[str, Any] = (
                cast("Mapping[str, Any]", inner) if isinstance(inner, Mapping) else {}
            )
            wanted = cast("Mapping[str, Any]", value)
            sub = _differences(existing, wanted)
            if key == "parameters":
                # Parameters the user unset are removed (null deletes a key in Patroni's merge).
                sub |= {k: None for k in existing if k not in wanted}
            if sub:
                patch[key] = sub
        elif current.get(key) != value:
            patch[key] = value
    return patch


def apply_cluster(client: patroni_client.PatroniClient, cluster: goal.ClusterGoal) -> bool:
    """Leader: PATCH Patroni's dynamic config where it differs from the goal; True if patched."""
    patch = _differences(client.get_config(), cluster.dynamic)
    if not patch:
        return False
    logger.info("updating Patroni's dynamic config: %s", sorted(patch))
    client.patch_config(patch)
    return True
