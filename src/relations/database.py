"""The `database` relation (postgresql_client): requests in, responses out, through dpcharmlibs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from typing import Any

import ops
import pydantic
from dpcharmlibs import interfaces

logger = logging.getLogger(__name__)

RELATION = "database"
# Fields an old (V0) requirer that never asked for secrets reads from the databag in clear.
_PLAIN_FIELDS = ("username", "password", "uris", "read-only-uris", "tls", "tls-ca")


@dataclasses.dataclass(frozen=True)
class ClientRequest:
    """One database request of a requirer, exactly as it sent it (nothing validated yet)."""

    relation_id: int
    app: str
    version: str  # "v0" (one request in the databag) or "v1" (a list of requests)
    request_id: str | None
    salt: str
    database: str
    extra_user_roles: str | None
    extensions: str | None
    wants_secrets: bool
    model: interfaces.RequirerCommonModel = dataclasses.field(compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class RelationProblem:
    """Why a relation's databag cannot be served at all."""

    relation_id: int
    app: str
    message: str


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What a requirer is told for one request."""

    username: str
    password: str
    database: str
    endpoints: str
    read_only_endpoints: str
    uris: str
    read_only_uris: str
    version: str
    tls: bool = False
    tls_ca: str | None = None


def _extra(model: pydantic.BaseModel, key: str) -> str | None:
    extra: dict[str, Any] = model.model_extra or {}
    value = extra.get(key)
    return None if value is None else str(value)


def _request(
    relation: ops.Relation, version: str, model: interfaces.RequirerCommonModel, secrets: bool
) -> ClientRequest:
    return ClientRequest(
        relation_id=relation.id,
        app=relation.app.name,
        version=version,
        request_id=model.request_id,
        salt=model.salt,
        database=model.resource,
        extra_user_roles=model.extra_user_roles,
        extensions=_extra(model, "extensions"),
        wants_secrets=secrets,
        model=model,
    )


def _read_relation(model: ops.Model, relation: ops.Relation) -> list[ClientRequest]:
    repository = interfaces.OpsRelationRepository(model, relation, component=relation.app)
    data = repository.get_data() or {}
    if not data:
        return []
    if data.get("version", "v0") == "v0":
        v0 = interfaces.build_model(repository, interfaces.RequirerDataContractV0)
        if not v0.resource:
            return []  # nothing requested yet (e.g. only requested-secrets)
        wants = bool(data.get("requested-secrets"))
        return [_request(relation, "v0", v0, wants)]
    v1 = interfaces.build_model(
        repository, interfaces.RequirerDataContractV1[interfaces.RequirerCommonModel]
    )
    return [_request(relation, "v1", request, True) for request in v1.requests]


def read_requests(model: ops.Model) -> tuple[list[ClientRequest], list[RelationProblem]]:
    """Every request on every `database` relation, and the relations whose data is unreadable.

    Only the leader may read the requirers' application databags it answers.
    """
    requests: list[ClientRequest] = []
    problems: list[RelationProblem] = []
    for relation in model.relations[RELATION]:
        try:
            requests += _read_relation(model, relation)
        except (pydantic.ValidationError, ValueError, TypeError, json.JSONDecodeError) as e:
            logger.warning("unreadable request on relation %d: %s", relation.id, e)
            problems.append(
                RelationProblem(relation.id, relation.app.name, "the request is malformed")
            )
        except (interfaces.DataInterfacesError, ops.ModelError) as e:
            logger.warning("cannot read the request on relation %d: %s", relation.id, e)
            problems.append(
                RelationProblem(relation.id, relation.app.name, "its secrets cannot be read")
            )
    return requests, problems


def _response(request: ClientRequest, creds: Credentials) -> interfaces.ResourceProviderModel:
    return interfaces.ResourceProviderModel(
        salt=request.salt,
        request_id=request.request_id,
        resource=creds.database,
        username=creds.username,
        password=creds.password,
        endpoints=creds.endpoints,
        read_only_endpoints=creds.read_only_endpoints,
        uris=creds.uris,
        read_only_uris=creds.read_only_uris,
        version=creds.version,
        tls=creds.tls,
        tls_ca=creds.tls_ca or None,
    )


_Interface = interfaces.OpsRelationRepositoryInterface[interfaces.ResourceProviderModel]
_ContractV1 = interfaces.DataContractV1[interfaces.ResourceProviderModel]


def request_key(request: ClientRequest) -> str:
    """A stable key for one request: its relation and, for V1, its request id."""
    return f"{request.relation_id}/{request.request_id or ''}"


def answer_digest(request: ClientRequest, creds: Credentials) -> str:
    """A digest of the answer, so that an unchanged answer is never written twice."""
    text = json.dumps([request.version, request.wants_secrets, dataclasses.asdict(creds)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _record_request(relation: ops.Relation, app: ops.Application, request: ClientRequest) -> None:
    """Keep the request being answered in our databag's `data`.

    The library's requirer side reads it to tell which of its requests were answered.
    """
    # exclude_unset: a V0 request has no salt of its own, the model draws a random one.
    dumped = request.model.model_dump(
        mode="json", exclude={"data"}, exclude_none=True, exclude_unset=True
    )
    stored = json.loads(relation.data[app].get("data", "{}") or "{}")
    current = stored.get(request.request_id) if request.request_id else stored
    if current != dumped:
        interfaces.store_new_data(relation, app, dumped, short_uuid=request.request_id)


def publish(
    model: ops.Model, request: ClientRequest, creds: Credentials, last_digest: str | None
) -> str:
    """Answer one request (leader only) unless the same answer was given; its digest."""
    digest = answer_digest(request, creds)
    relation = model.get_relation(RELATION, request.relation_id)
    if relation is None or digest == last_digest:
        return digest
    _record_request(relation, model.app, request)
    if request.version == "v0" and not request.wants_secrets:
        _publish_plain(relation, model.app, creds)
        return digest
    interface = _Interface(model, RELATION)
    wanted = _response(request, creds)
    if request.version == "v0":
        wanted.request_id = None
        interface.write_model(relation.id, wanted, context={"version": "v0"})
        # V0 requirers read the database name from `database`, not `resource`.
        relation.data[model.app]["database"] = creds.database
        return digest
    contract = interface.build_model(relation.id, _ContractV1)
    for index, existing in enumerate(contract.requests):
        if existing.request_id == request.request_id:
            contract.requests[index].update(wanted)
            break
    else:
        contract.requests.append(wanted)
    interface.write_model(relation.id, contract)
    return digest


def _publish_plain(relation: ops.Relation, app: ops.Application, creds: Credentials) -> None:
    """An old requirer that never asked for secrets reads every field from the databag."""
    fields = {
        "database": creds.database,
        "endpoints": creds.endpoints,
        "read-only-endpoints": creds.read_only_endpoints,
        "version": creds.version,
        "username": creds.username,
        "password": creds.password,
        "uris": creds.uris,
        "read-only-uris": creds.read_only_uris,
        "tls": "True" if creds.tls else "False",
        "tls-ca": creds.tls_ca or "",
    }
    relation.data[app].update({k: v for k, v in fields.items() if v or k not in _PLAIN_FIELDS})
