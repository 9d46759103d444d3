"""What the unit tests share: fakes of the charm's outside world (Patroni's REST API, PostgreSQL
roles, Kubernetes) and builders of ops.testing states. Fixtures that install the fakes are in
conftest.py."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import json
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

import ops
import pytest
import requests
import yaml
from cryptography import x509
from ops import testing

import config
import k8s
from charms.postgresql_k8s.v0 import postgresql as pglib
from components import backups, restore, system_users
from peer_data import PeerAppData
from relations.s3 import S3State
from state import ClientRequests, ContainerFacts, Snapshot
from workload import internal_tls, layout, pgbackrest

APP = "postgresql-k8s"
UTC = datetime.timezone.utc

Ctx = testing.Context[Any]
Mounts = dict[str, testing.Mount]


# -- Patroni's REST API -------------------------------------------------------------------------


@dataclasses.dataclass
class FakePatroni:
    """Patroni 4's REST API: one cluster, answered alike at every member's URL.

    The charm's state-transition tests route PatroniClient._send to `respond` (the `patroni`
    fixture); the client's own tests put `respond` behind an HTTP server and reach it over the
    wire (test_patroni_client.py), so both speak to the same API.
    """

    members: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    reachable: bool = True
    # Every request that reached the API: (method, path, JSON body).
    calls: list[tuple[str, str, Any]] = dataclasses.field(default_factory=list)
    # Set: requests that change state must carry these (user, password), as Patroni's
    # restapi.authentication demands; None accepts anyone.
    credentials: tuple[str, str] | None = None
    refuse_switchover: bool = False
    # (method, path) -> answers (status, body) given first, before the API answers normally.
    queued: dict[tuple[str, str], list[tuple[int, Any]]] = dataclasses.field(default_factory=dict)
    # Called on every GET /cluster, to let a test change the cluster as time passes.
    on_cluster: Callable[[FakePatroni], None] | None = None

    def add_member(self, name: str, role: str, state: str | None = None, **extra: Any) -> None:
        """A member as /cluster lists it; replicas carry the replication fields Patroni 4 adds."""
        index = int(name.rsplit("-", 1)[1])
        host = f"10.1.0.{index + 10}"
        member: dict[str, Any] = {
            "name": name,
            "role": role,
            "state": state or ("running" if role == "leader" else "streaming"),
            "api_url": f"http://{host}:8008/patroni",
            "host": host,
            "port": 5432,
            "timeline": 1,
        }
        if role != "leader":
            lsn = "0/5000148"
            member |= {"receive_lag": 0, "receive_lsn": lsn, "replay_lag": 0, "replay_lsn": lsn}
            member |= {"lag": 0, "lsn": lsn}
        self.members.append(member | extra)

    def member(self, name: str) -> dict[str, Any]:
        return next(m for m in self.members if m["name"] == name)

    def writes(self, method: str | None = None) -> list[tuple[str, str, Any]]:
        return [c for c in self.calls if c[0] != "GET" and (method is None or c[0] == method)]

    def answer_next(self, method: str, path: str, *answers: tuple[int, Any]) -> None:
        """Give these answers to the next requests for method and path, then answer normally."""
        self.queued.setdefault((method, path), []).extend(answers)

    def respond(
        self, method: str, url: str, body: Any, auth: tuple[str, str] | None = None
    ) -> requests.Response:
        """Patroni's answer to a request for `url` (a member's API URL and the path)."""
        if not self.reachable:
            raise requests.ConnectionError("connection refused")
        path = "/" + url.split("/", 3)[3]
        self.calls.append((method, path, body))
        if queued := self.queued.get((method, path)):
            status, payload = queued.pop(0)
        elif method != "GET" and self.credentials is not None and auth != self.credentials:
            status, payload = 401, "not authenticated" if auth else "no auth header received"
        else:
            handler = getattr(self, f"_{method.lower()}_{path.strip('/').replace('/', '_')}", None)
            status, payload = handler(url, body) if handler else (404, "not found")
        response = requests.Response()
        response.status_code = status
        # Patroni answers its operations in plain text and its documents in JSON.
        if isinstance(payload, str):
            response._content, kind = payload.encode(), "text/plain"
        else:
            response._content, kind = json.dumps(payload).encode(), "application/json"
        response.headers["Content-Type"] = kind
        response.encoding = "utf-8"
        return response

    def _get_cluster(self, url: str, body: Any) -> tuple[int, Any]:
        if self.on_cluster is not None:
            self.on_cluster(self)
        return 200, {"members": self.members, "scope": APP}

    def _get_config(self, url: str, body: Any) -> tuple[int, Any]:
        return 200, self.config

    def _patch_config(self, url: str, body: Any) -> tuple[int, Any]:
        def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
            # Patroni's merge: nested objects merge, null deletes a key, anything else replaces.
            for key, value in patch.items():
                if value is None:
                    target.pop(key, None)
                elif isinstance(value, dict) and isinstance(target.get(key), dict):
                    merge(target[key], value)
                else:
                    target[key] = value

        merge(self.config, body)
        return 200, self.config

    def _post_restart(self, url: str, body: Any) -> tuple[int, Any]:
        host = url.split("//", 1)[1].split(":", 1)[0]
        member = next(m for m in self.members if m["host"] == host)
        if (body or {}).get("restart_pending") and not member.get("pending_restart"):
            return 503, "restart conditions are not satisfied"
        member.pop("pending_restart", None)
        return 200, "restarted successfully"

    def _post_switchover(self, url: str, body: Any) -> tuple[int, Any]:
        leader = next((m for m in self.members if m["role"] == "leader"), None)
        if leader is None or leader["name"] != body.get("leader"):
            return 412, "leader name does not match"
        candidate = next((m for m in self.members if m["name"] == body.get("candidate")), None)
        # The charm runs Patroni in synchronous mode: only a synchronous standby may take over.
        if self.refuse_switchover or candidate is None or candidate["role"] != "sync_standby":
            return 412, "candidate name does not match with sync_standby"
        leader["role"], candidate["role"] = "sync_standby", "leader"
        candidate["state"], leader["state"] = "running", "streaming"
        return 200, f'Successfully switched over to "{candidate["name"]}"'

    def _post_failover(self, url: str, body: Any) -> tuple[int, Any]:
        candidate = next((m for m in self.members if m["name"] == body.get("candidate")), None)
        if candidate is None:
            return 412, "failover is not possible: candidate is not a member"
        for member in self.members:
            if member["role"] == "leader":
                member["role"], member["state"] = "replica", "stopped"
        candidate["role"], candidate["state"] = "leader", "running"
        return 200, f'Successfully failed over to "{candidate["name"]}"'


def healthy_cluster(patroni: FakePatroni, leader: int = 0, sync: int = 1, units: int = 3) -> None:
    """Every unit a running member: one leader, one synchronous standby, the rest replicas."""
    for i in range(units):
        role = "leader" if i == leader else "sync_standby" if i == sync else "replica"
        patroni.add_member(f"{APP}-{i}", role)


# -- PostgreSQL and Kubernetes ------------------------------------------------------------------


@dataclasses.dataclass
class FakeDatabase:
    """PostgreSQL roles as the library would manage them on the primary."""

    passwords: dict[str, str] = dataclasses.field(default_factory=dict)
    hosts: list[str] = dataclasses.field(default_factory=list)
    fail: bool = False

    def __call__(self, *, primary_host: str, user: str, password: str, **_: Any) -> FakeDatabase:
        self.hosts.append(primary_host)
        return self

    def _check(self) -> None:
        if self.fail:
            raise pglib.PostgreSQLConnectionError("connection refused")

    def user_exists(self, user: str) -> bool:
        self._check()
        return user in self.passwords

    def create_user(self, user: str, password: str | None = None, **attrs: Any) -> None:
        self._check()
        if password is not None or user not in self.passwords:
            self.passwords[user] = password or ""
        # Like the library: every attribute is set, roles are only ever added.
        roles = (*self.attributes.get(user, {}).get("in_roles", ()), *attrs.get("in_roles", ()))
        self.attributes[user] = {**attrs, "in_roles": tuple(dict.fromkeys(roles))}

    def alter_user_password(self, user: str, password: str) -> None:
        self._check()
        self.passwords[user] = password

    def password_matches(self, user: str, password: str) -> bool:
        self._check()
        return self.passwords.get(user) == password

    # What client relations and extensions need.

    databases: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> owner
    attributes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    extensions: set[str] = dataclasses.field(default_factory=set)
    in_use: set[str] = dataclasses.field(default_factory=set)  # extensions with dependents
    dropped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    version: str = "16.4"

    def list_users(self) -> list[str]:
        self._check()
        return sorted(self.passwords)

    def create_database(self, database: str, owner: str, **_: Any) -> None:
        self._check()
        if self.databases.setdefault(database, owner) != owner:
            raise pglib.PostgreSQLCreateDatabaseError(f"{database} exists with another owner")

    def drop_user(self, user: str, *, reassign_owned_to: str) -> None:
        self._check()
        if self.passwords.pop(user, None) is not None:
            self.dropped.append((user, reassign_owned_to))

    def enable_extensions(self, extensions: dict[str, bool], databases: Any = None) -> None:
        self._check()
        if any(not on and name in self.in_use for name, on in extensions.items()):
            raise pglib.PostgreSQLExtensionInUseError("extension is in use")
        self.extensions |= {name for name, on in extensions.items() if on}
        self.extensions -= {name for name, on in extensions.items() if not on}

    def revoke_roles(self, user: str, roles: list[str]) -> None:
        self._check()
        attrs = self.attributes.get(user, {})
        attrs["in_roles"] = tuple(r for r in attrs.get("in_roles", ()) if r not in roles)

    def get_server_version(self) -> str:
        self._check()
        return self.version

    # What the archive-lag status reads: pg_stat_archiver's last archived WAL, the current WAL
    # file, and whether archiving fails; or an error the query raises.

    archiver: tuple[str | None, str, bool] = (None, "000000010000000000000001", False)
    query_error: Exception | None = None
    # Sessions of dropped users each member still has (host -> count), closed by a sweep.
    orphaned: dict[str, int] = dataclasses.field(default_factory=dict)
    swept: list[str] = dataclasses.field(default_factory=list)
    # Functions the backup role may execute ("GRANT EXECUTE ON FUNCTION <f> TO backup" seen).
    granted_functions: list[str] = dataclasses.field(default_factory=list)

    def grant_function_execute(self, user: str, functions: Any) -> list[str]:
        self._check()
        assert user == "backup", user
        granted = [f for f in functions if f not in self.granted_functions]
        self.granted_functions += granted
        return granted

    # When the last WAL file was archived (None: now).
    archived_at: datetime.datetime | None = None

    def get_archiver_status(self) -> pglib.ArchiverStatus:
        self._check()
        if self.query_error is not None:
            raise pglib.PostgreSQLError(f"cannot read pg_stat_archiver: {self.query_error}")
        last, current, failing = self.archiver
        now = datetime.datetime.now(datetime.timezone.utc)
        return pglib.ArchiverStatus(
            last_archived_wal=last,
            last_archived_time=None if failing else (self.archived_at or now),
            last_failed_wal=last if failing else None,
            last_failed_time=now if failing else None,
            current_wal=current,
            wal_segment_size=16 * 1024 * 1024,
        )

    # Roles someone else made (name -> RoleInfo), and the users whose sessions were ended.
    foreign_roles: dict[str, pglib.RoleInfo] = dataclasses.field(default_factory=dict)
    sessions_ended: list[str] = dataclasses.field(default_factory=list)

    def describe_role(self, role: str) -> pglib.RoleInfo | None:
        self._check()
        if role in self.foreign_roles:
            return self.foreign_roles[role]
        if role not in self.passwords:
            return None
        members = tuple(
            sorted(u for u, a in self.attributes.items() if role in a.get("in_roles", ()))
        )
        login = self.attributes.get(role, {}).get("login", True)
        return pglib.RoleInfo(can_login=login, superuser=False, members=members, admins=())

    def terminate_user_sessions(self, user: str) -> int:
        self._check()
        self.sessions_ended.append(user)
        return 1

    def terminate_orphaned_sessions(self) -> int:
        self._check()
        host = self.hosts[-1] if self.hosts else ""
        self.swept.append(host)
        return self.orphaned.pop(host, 0)


@dataclasses.dataclass
class FakeKubernetes:
    """The charm's Kubernetes calls, recorded."""

    missing: list[str] = dataclasses.field(default_factory=list)
    labelled: list[str] = dataclasses.field(default_factory=list)
    services_applied: int = 0
    fail: bool = False

    def missing_permissions(self) -> list[str]:
        return self.missing

    def label_pod(self, pod: str) -> None:
        if self.fail:
            raise k8s.KubernetesError("forbidden")
        self.labelled.append(pod)

    def apply_services(self) -> None:
        self.services_applied += 1


# -- ops.testing states ------------------------------------------------------------------------


def container(
    mounts: dict[str, testing.Mount], can_connect: bool = True, **kwargs: Any
) -> testing.Container:
    # Storage arrives root-owned; the charm hands it to the workload user with chown/chmod.
    kwargs.setdefault("execs", {testing.Exec(["chown"]), testing.Exec(["chmod"])})
    return testing.Container(layout.CONTAINER, can_connect=can_connect, mounts=mounts, **kwargs)


def system_secret() -> testing.Secret:
    return testing.Secret(
        tracked_content=system_users.initial_content(),
        owner="app",
        label=system_users.SECRET_LABEL,
    )


def peers(secret: testing.Secret | None, units: int = 3, **app_data: Any) -> testing.PeerRelation:
    data = {"system-users-secret": json.dumps(secret.id)} if secret else {}
    data |= {k: json.dumps(v) for k, v in app_data.items()}
    return testing.PeerRelation(
        "database-peers",
        local_app_data=data,
        peers_data={i: {} for i in range(1, units)},
    )


def deployed(image: Mounts, leader: bool = True, units: int = 3, **kwargs: Any) -> testing.State:
    """A unit of a deployed application: the system users' secret made, no other relation."""
    secret = system_secret()
    return testing.State(
        leader=leader,
        containers=[container(image)],
        relations=[peers(secret, units=units)],
        secrets=[secret],
        planned_units=units,
        **kwargs,
    )


def patroni_yml(ctx: Ctx, out: testing.State) -> dict[str, Any]:
    fs = out.get_container(layout.CONTAINER).get_filesystem(ctx)
    return yaml.safe_load((fs / layout.PATRONI_CONF.lstrip("/")).read_text())


def run_failing(ctx: Ctx, action: str, state: testing.State, **params: Any) -> str:
    """The message of an action that must fail."""
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action(action, params=params), state)
    return failed.value.message


# -- backups: the s3 relation, the members' TLS secret, pgBackRest's command lines -------------

S3_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
S3_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
S3_CA = internal_tls.generate("s3", ["s3.example.com"]).ca
# Every pgBackRest command the charm runs starts so (see workload.pgbackrest.command).
PGBACKREST = ["pgbackrest", f"--config={pgbackrest.CONF_FILE}", f"--stanza={APP}"]
# What the charm's probes get before the command name, to fail fast: stanza-create, and info
# (which reaches no database, and which pgBackRest refuses a --db-timeout).
PROBE = ["--io-timeout=15", "--db-timeout=15", "--protocol-timeout=30"]
INFO_PROBE = ["--io-timeout=15", "--protocol-timeout=30"]
_S3_SECRET_FIELDS = ("access-key", "secret-key")


def s3_fields(**changes: Any) -> dict[str, Any]:
    """What an s3 provider publishes, by the interface's field names; None drops a field."""
    fields: dict[str, Any] = {
        "bucket": "backups",
        "endpoint": "https://s3.example.com:9000",
        "region": "eu-west-1",
        "path": "/team/pg",
        "s3-uri-style": "path",
        "access-key": S3_ACCESS_KEY,
        "secret-key": S3_SECRET_KEY,
        "tls-ca-chain": [S3_CA],
    }
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


def s3_relation(**changes: Any) -> tuple[testing.Relation, testing.Secret]:
    """The provider's side as object-storage-charmlib lays it out: the key pair in a secret
    granted to the relation (its id in `secret-extra`), the other fields in the app databag."""
    fields = s3_fields(**changes)
    secret = testing.Secret(
        tracked_content={k: fields[k] for k in _S3_SECRET_FIELDS if fields.get(k)}
    )
    data = {"version": "1", "secret-extra": secret.id}
    for key, value in fields.items():
        if key not in _S3_SECRET_FIELDS:
            data[key] = value if isinstance(value, str) else json.dumps(value)
    relation = testing.Relation(
        "s3-parameters", remote_app_name="s3-integrator", remote_app_data=data
    )
    return relation, secret


def stanza_digest(**changes: Any) -> str:
    """What the leader records in `backup-stanza` once the stanza exists for these settings."""
    settings = pgbackrest.s3_settings(s3_fields(**changes))
    return backups.settings_digest(SimpleNamespace(app_name=APP), settings)  # type: ignore[arg-type]


@functools.cache
def _tls_content() -> dict[str, str]:
    tls = backups.make_tls(APP, "test-model")
    return {"ca-cert": tls.ca, "cert": tls.cert, "key": tls.key}


def tls_secret() -> testing.Secret:
    """The members' TLS secret as the leader made it earlier (ensure_tls's own content)."""
    return testing.Secret(
        tracked_content=dict(_tls_content()), owner="app", label=backups.TLS_SECRET_LABEL
    )


def backup_state(
    image: dict[str, testing.Mount],
    *,
    leader: bool = True,
    units: int = 3,
    s3: dict[str, Any] | str | None = "valid",
    stanza: bool = True,
    tls: bool = True,
    servers: bool = True,
    app_data: dict[str, Any] | None = None,
    unit_data: dict[str, str] | None = None,
    peers_data: dict[int, dict[str, str]] | None = None,
    execs: Iterable[testing.Exec] = (),
    service_statuses: dict[str, Any] | None = None,
    notices: Iterable[testing.Notice] = (),
    **kwargs: Any,
) -> testing.State:
    """A deployed unit with an s3-parameters relation.

    `s3`: "valid", a dict of changes to the valid fields, "unanswered" (related, nothing
    published yet) or None (not related). `stanza`: the leader created the stanza for these
    settings (archiving is on). `tls`: the leader made the members' TLS secret. `servers`: every
    unit, this one included, said in its peer databag that its pgBackRest server runs with these
    settings (what the leader waits for before it creates the stanza); `unit_data` and
    `peers_data` override it.
    """
    system = system_secret()
    secrets = [system]
    relations: list[testing.RelationBase] = []
    data = dict(app_data or {})
    changes = s3 if isinstance(s3, dict) else {}
    if s3 == "unanswered":
        relations.append(testing.Relation("s3-parameters", remote_app_name="s3-integrator"))
    elif s3 is not None:
        relation, secret = s3_relation(**changes)
        relations.append(relation)
        secrets.append(secret)
    if stanza:
        data.setdefault("backup-stanza", stanza_digest(**changes))
    if tls:
        secret = tls_secret()
        secrets.append(secret)
        data.setdefault("backup-tls-secret", secret.id)
    acks: dict[str, str] = {}
    if servers and tls and s3 not in (None, "unanswered"):
        # Invalid settings: no server runs with them.
        with contextlib.suppress(pgbackrest.InvalidS3SettingsError):
            acks[backups.SERVER_KEY] = stanza_digest(**changes)
    peer = peers(system, units=units, **data)
    if peers_data is None:
        peers_data = {i: dict(acks) for i in peer.peers_data}
    peer = dataclasses.replace(
        peer,
        local_unit_data={**peer.local_unit_data, **acks, **(unit_data or {})},
        peers_data=peers_data,
    )
    ctr = container(
        image,
        execs={testing.Exec(["chown"]), testing.Exec(["chmod"]), *execs},
        service_statuses=service_statuses or {},
        notices=list(notices),
    )
    return testing.State(
        leader=leader,
        containers=[ctr],
        relations=[peer, *relations],
        secrets=secrets,
        planned_units=units,
        **kwargs,
    )


def peer_app_data(state: testing.State) -> PeerAppData:
    """The peer application data as every unit reads it."""
    relation = state.get_relations("database-peers")[0]
    return PeerAppData.model_validate(
        {k: json.loads(v) for k, v in relation.local_app_data.items() if v}
    )


def peer_unit_data(state: testing.State) -> dict[str, str]:
    """This unit's databag in the peer relation."""
    return dict(state.get_relations("database-peers")[0].local_unit_data)


def info_json(*backups_: tuple[str, str, int], stanza: str = APP) -> str:
    """`pgbackrest info --output=json` for a stanza holding backups (label, type, stop epoch)."""
    listed = [
        {
            "label": label,
            "type": kind,
            "prior": None if kind == "full" else backups_[0][0],
            "timestamp": {"start": stop - 60, "stop": stop},
            "info": {"size": 23068672, "delta": 23068672, "repository": {"size": 2812118}},
            "archive": {"start": "000000010000000000000002", "stop": "000000010000000000000003"},
            "annotation": {"requested-by": "test"},
            "error": False,
        }
        for label, kind, stop in backups_
    ]
    return json.dumps(
        [
            {
                "name": stanza,
                "status": {
                    "code": 0 if listed else 2,
                    "message": "ok" if listed else "no valid backups",
                },
                "backup": listed,
                "archive": [
                    {"min": "000000010000000000000001", "max": "000000010000000000000009"}
                ],
                "db": [{"id": 1, "system-id": 7712505333743726970, "version": "16"}],
                "repo": [{"key": 1, "status": {"code": 0, "message": "ok"}}],
            }
        ]
    )


def tls_parts(content: dict[str, str]) -> tuple[str, str, str]:
    """The CA, the members' certificate and its key in the TLS secret, whatever its keys."""

    def is_ca(pem: str) -> bool:
        cert = x509.load_pem_x509_certificate(pem.encode())
        try:
            return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            return False

    certs = [v for v in content.values() if "BEGIN CERTIFICATE" in v]
    key = next(v for v in content.values() if "PRIVATE KEY" in v)
    return next(c for c in certs if is_ca(c)), next(c for c in certs if not is_ca(c)), key


def exec_timing_out_for_pgbackrest(
    err: str = "cannot perform the following tasks:\n- exec (timed out after 2m0s)",
) -> Any:
    """Container.exec where pgBackRest's commands fail as a Pebble change (by default: they run
    into Pebble's exec timeout), ops.pebble.ChangeError from wait_output; anything else runs as
    ops.testing does."""
    original = ops.Container.exec
    change = ops.pebble.Change.from_dict(
        {
            "id": "7",
            "kind": "exec",
            "summary": "Execute command",
            "status": "Error",
            "ready": True,
            "err": err,
            "spawn-time": "2026-11-26T03:00:00Z",
        }
    )

    class TimedOut:
        def wait_output(self) -> tuple[str, str]:
            raise ops.pebble.ChangeError(change.err or "", change)

    def exec_(self: ops.Container, command: list[str], **kwargs: Any) -> Any:
        if command[0] == "pgbackrest":
            return TimedOut()
        return original(self, command, **kwargs)

    return exec_


# -- restores: the phases the leader writes to the peer data ------------------------------------

RID = "ab12cd34"
# What a restore runs in the workload container besides pgBackRest.
WORKLOAD_EXECS = [testing.Exec(["patronictl"]), testing.Exec(["rm"]), testing.Exec(["sh"])]


def restore_data(
    phase: str, started: datetime.timedelta = datetime.timedelta(minutes=1), **extra: Any
) -> dict[str, Any]:
    """A restore's record in the peer data, in `phase`, started `started` ago."""
    moment = datetime.datetime.now(UTC) - started
    return {"id": RID, "phase": phase, "started": moment.isoformat(), **extra}


def configured(ctx: Ctx, image: Mounts, patroni: FakePatroni, **kwargs: Any) -> testing.State:
    """A unit as it was before the restore: configured, every enabled service running."""
    healthy_cluster(patroni)
    kwargs.setdefault("execs", WORKLOAD_EXECS)
    out = ctx.run(ctx.on.config_changed(), backup_state(image, **kwargs))
    statuses = out.get_container(layout.CONTAINER).service_statuses
    assert statuses[layout.SERVICE_POSTGRESQL] == ops.pebble.ServiceStatus.ACTIVE
    ctx.exec_history.clear()
    patroni.calls.clear()
    return out


def during(
    state: testing.State,
    restore_: dict[str, Any],
    *,
    acked_by_me: str | None = None,
    acked_by_peers: dict[int, dict[str, str]] | None = None,
    postgresql: ops.pebble.ServiceStatus | None = None,
    **changes: Any,
) -> testing.State:
    """The same unit once the leader wrote `restore_` to the peer data."""
    peer = state.get_relations("database-peers")[0]
    unit = dict(peer.local_unit_data)
    if acked_by_me is not None:
        unit[restore.STOPPED_KEY] = acked_by_me
    peer = dataclasses.replace(
        peer,
        local_app_data={**peer.local_app_data, "restore": json.dumps(restore_)},
        local_unit_data=unit,
        peers_data=acked_by_peers if acked_by_peers is not None else peer.peers_data,
    )
    others = [r for r in state.relations if r.endpoint != "database-peers"]
    ctr = state.get_container(layout.CONTAINER)
    if postgresql is not None:
        ctr = dataclasses.replace(
            ctr, service_statuses={**ctr.service_statuses, layout.SERVICE_POSTGRESQL: postgresql}
        )
    return dataclasses.replace(state, relations=[peer, *others], containers=[ctr], **changes)


# -- pure functions -----------------------------------------------------------------------------


def snapshot(**overrides: Any) -> Snapshot:
    """A pure snapshot of a healthy, related unit 0 (leader) for tests of pure functions."""
    values: dict[str, Any] = {
        "unit_name": f"{APP}/0",
        "app_name": APP,
        "namespace": "test-model",
        "is_leader": True,
        "planned_units": 3,
        "pod_ip": "10.1.0.10",
        "config": config.load_config({}),
        "config_error": None,
        "peers_related": True,
        "peer_data": PeerAppData(),
        "unit_data": {f"{APP}/{i}": {} for i in range(3)},
        "users_secret": None,
        "s3": S3State(related=False),
        "backup_tls": None,
        "container": ContainerFacts(can_connect=True, pg_major=16),
        "missing_permissions": (),
        "cluster": None,
        "clients": ClientRequests(),
    }
    values |= overrides
    if "parameters" not in values:
        cfg = values["config"]
        values["parameters"] = config.postgresql_parameters(cfg, None) if cfg else {}
    return Snapshot(**values)
