"""Client applications from the leader: users, databases, pg_hba rollout, then credentials."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import urllib.parse
from collections.abc import Collection, Mapping, Sequence

import ops
import psycopg

import client_policy
import cluster
import config
import system_users
from charms.postgresql_k8s.v0 import postgresql as pglib
from relations import database
from state import PeerAppData, State
from workload import layout, patroni

logger = logging.getLogger(__name__)

SECRET_LABEL = "client-users"  # noqa: S105 (a label, not a password)
UNIT_DIGEST_KEY = "client-rules-digest"
# How long the leader waits, in one hook, for every member to admit a new user: Patroni
# re-reads patroni.yml (and so pg_hba) at its next loop, at most loop_wait later.
ADMIT_TIMEOUT = patroni.LOOP_WAIT + 5.0
_LOGIN_TIMEOUT = 3


@dataclasses.dataclass(frozen=True)
class Cluster:
    """What the leader knows of the cluster for this pass."""

    db: pglib.PostgreSQL
    status: patroni.ClusterStatus
    version: str


def _secret_key(user: str) -> str:
    return user.replace("_", "-")


def _passwords(model: ops.Model, users: Collection[str]) -> dict[str, str]:
    """Each current client user's password, generating missing ones and forgetting old ones.

    They live in one application-owned secret, made when the first client arrives.
    """
    try:
        secret = model.get_secret(label=SECRET_LABEL)
    except ops.SecretNotFoundError:
        if not users:
            return {}
        secret = model.app.add_secret(
            {"created": "yes"}, label=SECRET_LABEL, description="client users' passwords"
        )
    content = secret.get_content(refresh=True)
    wanted = {"created": "yes"}
    for user in users:
        key = _secret_key(user)
        wanted[key] = content.get(key) or system_users.generate_password()
    if wanted != content:
        secret.set_content(wanted)
    return {user: wanted[_secret_key(user)] for user in users}


def grant_digest(plan: client_policy.ClientPlan) -> str:
    """A digest of what a plan grants, so that unchanged grants are not re-applied each hook."""
    text = json.dumps(
        [plan.database, plan.owner, plan.createdb, plan.createrole, plan.superuser, plan.roles]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _ensure(
    db: pglib.PostgreSQL, plan: client_policy.ClientPlan, password: str, granted: str | None
) -> str:
    """Owner role, database and user of one plan, with its attributes and roles; its digest.

    An existing user with the right password and the same grants as last time is left alone.
    """
    digest = grant_digest(plan)
    exists = db.user_exists(plan.user)
    matches = exists and db.password_matches(plan.user, password)
    if matches and granted == digest:
        return digest
    db.create_user(plan.owner, None, login=False)
    db.create_database(plan.database, plan.owner)
    db.create_user(
        plan.user,
        None if matches else password,
        createdb=plan.createdb,
        createrole=plan.createrole,
        superuser=plan.superuser,
        in_roles=(plan.owner, *plan.roles),
    )
    if exists:  # roles the requirer no longer asks for
        db.revoke_roles(plan.user, sorted(client_policy.PREDEFINED_ROLES - set(plan.roles)))
    return digest


def _stale_users(
    db: pglib.PostgreSQL, relation_ids: Collection[int], keep: Collection[str]
) -> list[str]:
    """Client users the charm made for relations that are gone."""
    stale: list[str] = []
    for user in db.list_users():
        relation_id = client_policy.relation_of_user(user)
        if relation_id is not None and relation_id not in relation_ids and user not in keep:
            stale.append(user)
    return stale


def _admits(host: str, plan: client_policy.ClientPlan, password: str) -> bool:
    try:
        with psycopg.connect(
            host=host,
            port=layout.PORT_POSTGRESQL,
            user=plan.user,
            password=password,
            dbname=plan.database,
            connect_timeout=_LOGIN_TIMEOUT,
        ):
            return True
    except psycopg.Error:
        return False


def wait_admitted(
    hosts: Sequence[str],
    plans: Sequence[client_policy.ClientPlan],
    passwords: Mapping[str, str],
    timeout: float = ADMIT_TIMEOUT,
) -> set[str]:
    """Users that every host lets log in with their password, polling up to `timeout`."""
    pending = {(p.user, host) for p in plans for host in hosts}
    by_user = {p.user: p for p in plans}
    deadline = time.monotonic() + timeout
    while pending:
        for user, host in sorted(pending):
            if _admits(host, by_user[user], passwords[user]):
                pending.discard((user, host))
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    refused = {user for user, _ in pending}
    return {p.user for p in plans} - refused


def _service(state: State, suffix: str) -> str:
    return (
        f"{state.app_name}-{suffix}.{state.namespace}.svc.cluster.local:{layout.PORT_POSTGRESQL}"
    )


def credentials(
    state: State, cluster: Cluster, plan: client_policy.ClientPlan, password: str
) -> database.Credentials:
    """What a requirer is told: the primary Service, and the replicas one while replicas stream."""
    primary = _service(state, "primary")
    has_replicas = any(m.is_healthy and not m.is_leader for m in cluster.status.members)
    read_only = _service(state, "replicas") if has_replicas else primary
    quoted = urllib.parse.quote(password, safe="")

    def uri(endpoint: str) -> str:
        return f"postgresql://{plan.user}:{quoted}@{endpoint}/{plan.database}"

    return database.Credentials(
        username=plan.user,
        password=password,
        database=plan.database,
        endpoints=primary,
        read_only_endpoints=read_only,
        uris=uri(primary),
        read_only_uris=uri(read_only),
        version=cluster.version,
    )


@dataclasses.dataclass
class Outcome:
    """What one pass decided: peer data to save and the problems to show."""

    rules: list[tuple[str, str]]
    admitted: list[str]
    problems: dict[str, str]
    granted: dict[str, str]  # user -> digest of its grants
    published: dict[str, str]  # request key -> digest of the answer


def _plans(
    requests: Sequence[database.ClientRequest],
    enabled_extensions: Collection[str],
    superuser_apps: Collection[str],
    problems: dict[str, str],
    provider: str,
) -> list[client_policy.ClientPlan]:
    plans: list[client_policy.ClientPlan] = []
    for request in requests:
        try:
            plans.append(client_policy.plan(request, enabled_extensions, superuser_apps, provider))
        except client_policy.RequestRefusedError as e:
            problems[str(request.relation_id)] = f"{request.app}: {e}"
    return plans


def acked_everywhere(state: State, status: patroni.ClusterStatus, digest: str) -> bool:
    """Whether every running member's unit has rendered the rules with this digest."""
    units: dict[str, ops.Unit] = {}
    if state.peers is not None:
        units = {layout.member_name(u.name): u for u in state.peers.units}
    for member in status.members:
        if not member.is_healthy:
            continue
        if member.name == state.member:
            acked = state.peer_unit_data.get(UNIT_DIGEST_KEY)
        elif member.name in units and state.peers is not None:
            acked = state.peers.data[units[member.name]].get(UNIT_DIGEST_KEY)
        else:
            return False
        if acked != digest:
            return False
    return True


def reconcile(
    model: ops.Model,
    state: State,
    cluster: Cluster,
    enabled_extensions: Collection[str],
    superuser_apps: Collection[str],
    *,
    departing: bool,
) -> Outcome:
    """Leader: create what valid requests need, drop what gone relations had, publish when safe."""
    requests, unreadable = database.read_requests(model)
    problems = {str(p.relation_id): f"{p.app}: {p.message}" for p in unreadable}
    plans = _plans(requests, enabled_extensions, superuser_apps, problems, state.app_name)
    passwords = _passwords(model, sorted({p.user for p in plans}))
    ready: list[client_policy.ClientPlan] = []
    granted: dict[str, str] = {}
    for plan in plans:
        try:
            previous = state.peer_data.client_granted.get(plan.user)
            granted[plan.user] = _ensure(cluster.db, plan, passwords[plan.user], previous)
            ready.append(plan)
        except pglib.PostgreSQLError as e:
            problems[str(plan.request.relation_id)] = f"{plan.request.app}: {e}"
    if not departing:
        _drop_gone(cluster.db, state.peer_data, model, {p.user for p in plans})
    rules = sorted({(p.database, p.user) for p in ready})
    admitted = set(state.peer_data.client_admitted) & {user for _, user in rules}
    waiting = [p for p in ready if p.user not in admitted]
    if waiting and acked_everywhere(state, cluster.status, client_policy.rules_digest(rules)):
        hosts = [m.host for m in cluster.status.members if m.is_healthy]
        admitted |= wait_admitted(hosts, waiting, passwords)
    published: dict[str, str] = {}
    for plan in ready:
        if plan.user in admitted:
            key = database.request_key(plan.request)
            creds = credentials(state, cluster, plan, passwords[plan.user])
            last = state.peer_data.client_published.get(key)
            published[key] = database.publish(model, plan.request, creds, last)
    return Outcome(rules, sorted(admitted), problems, granted, published)


# Sessions whose role is gone. The primary's are closed when the user is dropped; a replica
# receives the DROP ROLE through replication, which leaves its sessions open.
_ORPHANED_SESSIONS = (
    "SELECT count(pg_terminate_backend(a.pid)) FROM pg_stat_activity a"
    " WHERE a.backend_type = 'client backend' AND a.usesysid IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = a.usesysid)"
)


def close_orphaned_sessions(state: State, status: patroni.ClusterStatus | None) -> int:
    """Every unit: end the sessions, on its own member, of users that no longer exist."""
    member = status.member(state.member) if status else None
    if member is None or not member.is_healthy or state.passwords is None or not state.pod_ip:
        return 0
    password = state.passwords[layout.SystemUser.OPERATOR]
    db = pglib.PostgreSQL(
        primary_host=state.pod_ip, user=layout.SystemUser.OPERATOR.value, password=password
    )
    try:
        with db.connect() as conn:
            row = conn.execute(_ORPHANED_SESSIONS).fetchone()
    except (pglib.PostgreSQLError, psycopg.Error) as e:
        logger.info("cannot look for sessions of dropped users yet: %s", e)
        return 0
    closed = int(row[0]) if row else 0
    if closed:
        logger.info("closed %d session(s) of dropped users", closed)
    return closed


def _drop_gone(
    db: pglib.PostgreSQL, peer_data: PeerAppData, model: ops.Model, keep: Collection[str]
) -> None:
    relation_ids = {r.id for r in model.relations[database.RELATION]}
    databases = {user: db_name for db_name, user in peer_data.client_rules}
    for user in _stale_users(db, relation_ids, keep):
        heir = (
            client_policy.owner_role(databases[user])
            if user in databases
            else layout.SystemUser.OPERATOR.value
        )
        logger.info("relation gone: dropping %s (its objects go to %s)", user, heir)
        try:
            db.drop_user(user, reassign_owned_to=heir)
        except pglib.PostgreSQLError as e:
            logger.warning("cannot drop %s yet: %s", user, e)


def reconcile_databases(
    model: ops.Model,
    state: State,
    db: pglib.PostgreSQL,
    status: patroni.ClusterStatus,
    cfg: config.CharmConfig,
) -> dict[str, object]:
    """Leader: extensions from config, then every client request; the peer data to save."""
    enabled = config.enabled_extensions(cfg)
    applied, error = cluster.reconcile_extensions(
        db, enabled, frozenset(state.peer_data.extensions_applied)
    )
    outcome = reconcile(
        model,
        state,
        Cluster(db, status, db.get_server_version()),
        applied & enabled,
        cfg.superuser_apps,
        departing=state.departing or state.planned_units == 0,
    )
    return {
        "extensions_applied": sorted(applied),
        "extensions_error": error,
        "client_rules": outcome.rules,
        "client_admitted": outcome.admitted,
        "client_problems": outcome.problems,
        "client_granted": outcome.granted,
        "client_published": outcome.published,
    }
