"""Applies the goal to this unit's container and, from the leader, to the Patroni cluster."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import ops
import psycopg

import config
import config_options
from charms.postgresql_k8s.v0 import postgresql as pglib
from state import State
from workload import layout, patroni, pebble, system

logger = logging.getLogger(__name__)

# How long the leader waits for a restarted member to stream again before the next one.
RESTART_SETTLE_TIMEOUT = 120.0
_DIR_MODE = 0o700


class WorkloadNotReadyError(Exception):
    """Raised when the container lacks what the workload needs (no PostgreSQL in the image)."""


class Workload:
    """This unit's `postgresql` container: files and Pebble plan, compare before write."""

    def __init__(self, container: ops.Container):
        self.container = container

    def pg_major(self) -> int:
        """The PostgreSQL major version the image ships (read from the image, not a constant)."""
        try:
            entries = [f.name for f in self.container.list_files(layout.PG_BASE_DIR)]
        except (ops.pebble.APIError, ops.pebble.ConnectionError) as e:
            raise WorkloadNotReadyError(f"no PostgreSQL in the image: {e}") from e
        major = system.newest_major(entries)
        if major is None:
            raise WorkloadNotReadyError(f"no PostgreSQL version under {layout.PG_BASE_DIR}")
        return major

    def _read(self, path: str) -> str | None:
        try:
            with self.container.pull(path) as f:
                return f.read()
        except (ops.pebble.PathError, ops.pebble.APIError):
            return None

    def memory_bytes(self) -> int | None:
        """The memory available to PostgreSQL in this container."""
        return system.memory_limit_bytes(
            self._read("/sys/fs/cgroup/memory.max"), self._read("/proc/meminfo")
        )

    def ensure_dirs(self) -> None:
        """Create the workload's directories, or take them over, owned by the workload user.

        Storage mounts arrive owned by root (Kubernetes volumes without an fsGroup), so an
        existing directory with another owner or mode is handed to the workload user.
        """
        for path in layout.WORKLOAD_DIRS:
            self.ensure_dir(path)

    def ensure_dir(self, path: str) -> None:
        """One directory owned by the workload user, mode 0700 (created or taken over)."""
        if not self.container.exists(path):
            self.container.make_dir(
                path,
                make_parents=True,
                permissions=_DIR_MODE,
                user=layout.WORKLOAD_USER,
                group=layout.WORKLOAD_GROUP,
            )
            return
        info = self.container.list_files(path, itself=True)[0]
        if info.user != layout.WORKLOAD_USER or info.permissions != _DIR_MODE:
            owner = f"{layout.WORKLOAD_USER}:{layout.WORKLOAD_GROUP}"
            self.container.exec(["chown", owner, path]).wait()
            self.container.exec(["chmod", f"{_DIR_MODE:o}", path]).wait()

    def write(self, path: str, content: str, mode: int = 0o600) -> bool:
        """Write a file owned by the workload user if its content differs; True if written."""
        if self._read(path) == content:
            return False
        self.container.push(
            path,
            content,
            make_dirs=True,
            permissions=mode,
            user=layout.WORKLOAD_USER,
            group=layout.WORKLOAD_GROUP,
        )
        return True

    def apply_layer(self, layer: ops.pebble.LayerDict) -> bool:
        """Merge the layer into the plan and replan if the plan changed; True if it did."""
        before = self.container.get_plan().to_dict()
        self.container.add_layer(layout.CONTAINER, layer, combine=True)
        if self.container.get_plan().to_dict() == before:
            return False
        self.container.replan()
        return True

    def is_running(self, service: str) -> bool:
        """Whether Pebble reports the service as running."""
        services = self.container.get_services(service)
        return service in services and services[service].is_running()

    def reload_patroni(self) -> None:
        """Make Patroni re-read patroni.yml (SIGHUP needs no REST credentials)."""
        self.container.send_signal("SIGHUP", layout.SERVICE_POSTGRESQL)


def patroni_settings(
    state: State,
    pg_major: int,
    memory_bytes: int | None,
    archive_command: str = "/bin/true",
    restore_command: str | None = None,
) -> patroni.PatroniSettings:
    """The unit's Patroni settings derived from the snapshot; config and passwords must be set."""
    assert state.config is not None and state.passwords is not None and state.pod_ip is not None
    return patroni.PatroniSettings(
        scope=state.app_name,
        member=state.member,
        connect_host=state.pod_ip,
        pg_major=pg_major,
        passwords=state.passwords,
        parameters=config.postgresql_parameters(state.config, memory_bytes),
        synchronous_node_count=config.synchronous_node_count(state.config, state.planned_units),
        # Alone, a strict primary would wait forever for a standby that cannot exist.
        synchronous_mode_strict=state.config.synchronous_mode_strict and state.planned_units > 1,
        # Kubernetes scales down by removing the highest ordinals.
        departing=state.departing,
        # Names were validated by the leader; quoting keeps pg_hba keywords (all, replication,
        # sameuser, ...) from taking their special meaning.
        client_rules=tuple(
            patroni.HbaRule(f'"{db}"', f'"{user}"') for db, user in state.peer_data.client_rules
        ),
        archive_command=archive_command,
        restore_command=restore_command,
    )


def reconcile_files(workload: Workload, settings: patroni.PatroniSettings) -> bool:
    """Render patroni.yml, the role-change callback and the exporter's password file."""
    workload.ensure_dirs()
    changed = workload.write(layout.PATRONI_CONF, patroni.dump(patroni.render(settings)))
    if changed:
        logger.info("patroni.yml changed")
    workload.write(layout.ROLE_CHANGE_SCRIPT, patroni.role_change_script(), mode=0o755)
    workload.write(
        pebble.PASSWORD_FILE_MONITORING, settings.passwords[layout.SystemUser.MONITORING]
    )
    return changed


def reconcile_layer(
    workload: Workload,
    state: State,
    config_changed: bool,
    metrics: bool,
    extra_services: Mapping[str, ops.pebble.ServiceDict] | None = None,
) -> None:
    """Apply the Pebble layer; a changed patroni.yml alone is a reload, not a restart."""
    assert state.pod_ip is not None
    env = patroni.dcs_environment(state.app_name, state.namespace, state.pod_ip)
    layer = pebble.postgresql_layer(env, metrics_enabled=metrics, extra_services=extra_services)
    replanned = workload.apply_layer(layer)
    if config_changed and not replanned and workload.is_running(layout.SERVICE_POSTGRESQL):
        workload.reload_patroni()


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


def reconcile_dynamic_config(
    client: patroni.PatroniClient, settings: patroni.PatroniSettings
) -> bool:
    """PATCH Patroni's cluster-wide config where it differs from the goal; True if patched."""
    patch = _differences(client.get_config(), patroni.dynamic_config(settings))
    if not patch:
        return False
    logger.info("updating Patroni's dynamic config: %s", sorted(patch))
    client.patch_config(patch)
    return True


# What pgBackRest needs beyond its roles (pg_read_all_settings, pg_checkpoint) to back up from a
# primary or a standby: no superuser. Constant identifiers only.
BACKUP_FUNCTIONS = (
    "pg_catalog.pg_backup_start(text, boolean)",
    "pg_catalog.pg_backup_stop(boolean)",
    "pg_catalog.pg_switch_wal()",
    "pg_catalog.pg_create_restore_point(text)",
)


def reconcile_system_roles(db: pglib.PostgreSQL, passwords: dict[layout.SystemUser, str]) -> None:
    """Create the monitoring and backup roles (Patroni creates the others) or fix their passwords."""
    roles = {
        layout.SystemUser.MONITORING: ["pg_monitor"],
        layout.SystemUser.BACKUP: ["pg_read_all_settings", "pg_checkpoint"],
    }
    for user, in_roles in roles.items():
        password = passwords[user]
        if not db.user_exists(user.value):
            db.create_user(user.value, password, in_roles=in_roles)
        elif not db.password_matches(user.value, password):
            db.alter_user_password(user.value, password)
    _grant_backup_functions(db)


def _grant_backup_functions(db: pglib.PostgreSQL) -> None:
    """EXECUTE on the backup functions for the backup role, only where it is missing.

    A GRANT rewrites the catalog row even when nothing changes.
    """
    user = layout.SystemUser.BACKUP.value
    try:
        with db.connect() as conn:
            for function in BACKUP_FUNCTIONS:
                row = conn.execute(
                    "SELECT has_function_privilege(%s, %s, 'EXECUTE')", (user, function)
                ).fetchone()
                if not (row and row[0]):
                    conn.execute(f"GRANT EXECUTE ON FUNCTION {function} TO {user}")  # constants
    except psycopg.Error as e:
        raise pglib.PostgreSQLError(f"cannot grant the backup functions to {user}: {e}") from None


def reconcile_extensions(
    db: pglib.PostgreSQL, enabled: frozenset[str], applied: frozenset[str]
) -> tuple[frozenset[str], str]:
    """Create enabled extensions in every database (template1 too) and drop disabled ones.

    Only extensions the charm enabled are ever dropped, never with CASCADE: one with dependent
    objects stays, and the error names the option. Returns what is now applied and the error.
    """
    if enabled == applied:
        return applied, ""
    wanted = dict.fromkeys(enabled, True) | dict.fromkeys(applied - enabled, False)
    try:
        db.enable_extensions(wanted)
    except pglib.PostgreSQLExtensionInUseError as e:
        options = ", ".join(config_options.extension_option(n) for n in sorted(applied - enabled))
        return applied, f"cannot disable {options}: objects depend on it ({e})"
    except pglib.PostgreSQLExtensionError as e:
        options = ", ".join(config_options.extension_option(n) for n in sorted(enabled - applied))
        return applied, f"cannot enable {options}: {e}"
    return enabled, ""


def rolling_restart(
    client: patroni.PatroniClient, settle_timeout: float = RESTART_SETTLE_TIMEOUT
) -> list[str]:
    """Restart members whose PostgreSQL reports pending_restart: replicas first, primary last.

    One member at a time, each back to healthy before the next; nothing happens while the
    cluster is unhealthy. Returns the members restarted.
    """
    status = client.cluster()
    pending = [m for m in status.members if m.pending_restart]
    if not pending or not status.healthy:
        return []
    restarted: list[str] = []
    for member in sorted(pending, key=lambda m: m.is_leader):
        logger.info("restarting %s for pending parameters", member.name)
        client.for_member(member.api_url).restart(pending_only=True)
        restarted.append(member.name)
        name = member.name

        def back(s: patroni.ClusterStatus, name: str = name) -> bool:
            found = s.member(name)
            return found is not None and found.is_healthy and not found.pending_restart

        client.wait_for(back, timeout=settle_timeout)
    return restarted


def hand_over(
    client: patroni.PatroniClient, status: patroni.ClusterStatus, staying: int, timeout: float
) -> None:
    """This primary is leaving: switch over to a synchronous standby that stays.

    On scale-down Kubernetes removes the highest ordinals, so a standby numbered at or above
    the new scale is leaving too and is not a candidate. Right after a switchover Patroni may
    not have made any staying member synchronous yet: wait (bounded) for one, since only a
    synchronous standby may take over without losing acknowledged writes.
    """
    assert status.leader is not None
    leaving = status.leader.name

    def stays(member: patroni.Member) -> bool:
        return int(member.name.rsplit("-", 1)[1]) < staying

    def candidate(s: patroni.ClusterStatus) -> patroni.Member | None:
        return next((m for m in s.sync_standbys if m.is_healthy and stays(m)), None)

    if not any(stays(m) for m in status.members if not m.is_leader):
        return  # nobody stays to take over (scale to one, or to zero)
    try:
        status = client.wait_for(lambda s: candidate(s) is not None, timeout=timeout)
        chosen = candidate(status)
        assert chosen is not None
        client.switchover(leaving, chosen.name)
    except patroni.PatroniError as e:
        logger.warning("switchover before stop failed: %s", e)
