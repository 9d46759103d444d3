#!/usr/bin/env python3
"""A test S3 provider: publishes the connection info from its config on every relation."""

from __future__ import annotations

from typing import Any

import ops
from object_storage import S3Provider

RELATION = "s3-credentials"
_FIELDS = ("bucket", "path", "endpoint", "region", "s3-uri-style", "access-key", "secret-key")


class S3ProviderCharm(ops.CharmBase):
    """Answers every requirer with what its config says."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.provider = S3Provider(self, RELATION)
        framework.observe(self.provider.on.storage_connection_info_requested, self._publish)
        framework.observe(self.on.config_changed, self._publish)
        framework.observe(self.on.collect_unit_status, self._on_status)

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {f: str(self.config.get(f, "")) for f in _FIELDS}
        info = {k: v for k, v in info.items() if v}
        if ca := str(self.config.get("tls-ca-chain", "")):
            info["tls-ca-chain"] = [ca]  # the library encodes the list
        return info

    def _publish(self, _: ops.EventBase) -> None:
        if not self.unit.is_leader():
            return
        for relation in self.model.relations[RELATION]:
            if self.provider.is_protocol_ready(relation):
                self.provider.set_storage_connection_info(relation.id, self._info())

    def _on_status(self, event: ops.CollectStatusEvent) -> None:
        event.add_status(ops.ActiveStatus())


if __name__ == "__main__":  # pragma: nocover
    ops.main(S3ProviderCharm)
