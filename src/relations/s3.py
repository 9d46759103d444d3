"""The `s3-parameters` relation (interface s3): the S3 connection info, typed and validated."""

from __future__ import annotations

import dataclasses
import logging

import ops
from object_storage import S3Requirer

from workload import pgbackrest

logger = logging.getLogger(__name__)

RELATION = "s3-parameters"


@dataclasses.dataclass(frozen=True)
class S3State:
    """What the relation gives: nothing, settings, or why they cannot be used."""

    related: bool
    settings: pgbackrest.S3Settings | None = None
    error: str | None = None


def requirer(charm: ops.CharmBase) -> S3Requirer:
    """The library's requirer side; its events say when the connection info changes."""
    return S3Requirer(charm, RELATION)


def read(s3: S3Requirer, model: ops.Model) -> S3State:
    """The S3 settings from the relation, validated; the error names the setting at fault."""
    relation = model.get_relation(RELATION)
    if relation is None:
        return S3State(related=False)
    try:
        info = dict(s3.get_storage_connection_info(relation))
    except (ops.ModelError, ValueError, KeyError) as e:
        logger.warning("cannot read the S3 connection info: %s", e)
        return S3State(related=True, error="the s3-parameters relation data cannot be read")
    if not info.get("access-key") or not info.get("secret-key"):
        return S3State(related=True)  # the provider has not answered yet
    try:
        return S3State(related=True, settings=pgbackrest.s3_settings(info))
    except pgbackrest.InvalidS3SettingsError as e:
        return S3State(related=True, error=f"s3-parameters: {e}")
