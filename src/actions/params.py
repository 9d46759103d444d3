"""Action parameters as typed models, so that a bad value fails the action and changes nothing.

Juju checks the actions' schema too; the charm does not rely on it.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import ops
import pydantic

from workload import layout

_CONFIG = pydantic.ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

Model = TypeVar("Model", bound=pydantic.BaseModel)
SystemUserName = Literal["operator", "replication", "rewind", "monitoring", "backup", "patroni"]


class PasswordParams(pydantic.BaseModel):
    """get-password and set-password."""

    model_config = _CONFIG

    username: SystemUserName = "operator"
    password: str | None = None

    @property
    def user(self) -> layout.SystemUser:
        """The system user named."""
        return layout.SystemUser(self.username)


class PromoteParams(pydantic.BaseModel):
    """promote-to-primary."""

    model_config = _CONFIG

    scope: Literal["unit"] = "unit"
    force: bool = False


class BackupParams(pydantic.BaseModel):
    """create-backup."""

    model_config = _CONFIG

    type: Literal["full", "differential", "incremental"] = "full"


class RestoreParams(pydantic.BaseModel):
    """restore: exactly one of the three is checked by the action itself."""

    model_config = _CONFIG

    backup_id: str = pydantic.Field("", alias="backup-id", max_length=64)
    restore_to_time: str = pydantic.Field("", alias="restore-to-time", max_length=64)
    latest: bool = False


def parse(event: ops.ActionEvent, model: type[Model]) -> Model | None:
    """The action's parameters as `model`, or None after failing the action saying why."""
    try:
        return model.model_validate(dict(event.params))
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "parameters"
        event.fail(f"invalid parameter {where}: {first['msg']}")
        return None
