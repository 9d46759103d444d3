#!/usr/bin/env python3
"""A probe charm for the local Juju model's tests: every feature the model emulates, in small."""

from __future__ import annotations

import ops

TOKEN_LABEL = "token"
CONF = "/etc/probe/probe.conf"


class ProbeCharm(ops.CharmBase):
    """Writes data and secrets on relations, reads them back, and fails when asked to."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.container = self.unit.get_container("workload")
        on = self.on
        for event in (
            on.install, on.start, on.stop, on.remove, on.config_changed, on.update_status,
            on.upgrade_charm, on.leader_elected, on.data_storage_attached, on.data_storage_detaching,
            on.workload_pebble_ready, on.workload_pebble_custom_notice,
            on.workload_pebble_check_failed, on.workload_pebble_check_recovered, on.secret_remove,
            on.peers_relation_created, on.peers_relation_joined, on.peers_relation_departed,
            on.served_relation_joined, on.served_relation_changed, on.served_relation_departed,
            on.served_relation_broken, on.used_relation_created, on.used_relation_joined,
            on.used_relation_departed, on.used_relation_broken,
        ):  # fmt: skip
            framework.observe(event, self._on_any)
        framework.observe(on.peers_relation_changed, self._on_peers_changed)
        framework.observe(on.served_relation_created, self._on_served_created)
        framework.observe(on.used_relation_changed, self._on_used_changed)
        framework.observe(on.secret_changed, self._on_secret_changed)
        framework.observe(on.echo_action, self._on_echo)
        framework.observe(on.rotate_action, self._on_rotate)
        framework.observe(on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(on.collect_app_status, self._on_collect_app_status)

    def _maybe_fail(self, event: ops.EventBase) -> None:
        wanted = str(self.config.get("fail-on", ""))
        if wanted and wanted == event.handle.kind.replace("_", "-"):
            raise RuntimeError(f"asked to fail in {wanted}")

    def _on_any(self, event: ops.EventBase) -> None:
        self._maybe_fail(event)
        if isinstance(event, ops.InstallEvent):
            self.unit.add_secret({"unit": self.unit.name}, label="mine")
        if isinstance(event, ops.StorageAttachedEvent):
            (event.storage.location / "attached").write_text(self.unit.name)
        if isinstance(event, ops.PebbleReadyEvent):
            self.container.add_layer(
                "probe",
                {"services": {"probe": {"override": "replace", "command": "sleep inf",
                                        "startup": "enabled"}},
                 "checks": {"alive": {"override": "replace", "threshold": 2,
                                      "exec": {"command": "true"}}}},
                combine=True,
            )  # fmt: skip
            self.container.replan()
        if isinstance(event, ops.PebbleCustomNoticeEvent):
            self._unit_data()["notice"] = f"{event.notice.key}:{event.notice.last_data}"
        if isinstance(event, (ops.PebbleCheckFailedEvent, ops.PebbleCheckRecoveredEvent)):
            self._unit_data()["check"] = (
                f"{event.info.name}:{ops.pebble.CheckStatus(event.info.status).value}"
            )
        if isinstance(event, ops.SecretRemoveEvent):
            event.remove_revision()
        if isinstance(event, ops.ConfigChangedEvent):
            self._ping()
        self._reconcile()

    def _unit_data(self) -> ops.RelationDataContent:
        relation = self.model.get_relation("peers")
        assert relation is not None
        return relation.data[self.unit]

    def _reconcile(self) -> None:
        self.unit.set_ports(8080)
        greeting = str(self.config["greeting"])
        if self.container.can_connect():
            self.container.push(CONF, f"greeting={greeting}\n", make_dirs=True)
        relation = self.model.get_relation("peers")
        if relation is not None and self.unit.is_leader():
            relation.data[self.app]["greeting"] = greeting
            relation.data[self.app]["leader"] = self.unit.name

    def _on_peers_changed(self, event: ops.RelationChangedEvent) -> None:
        self._on_any(event)
        if event.unit is not None:
            self._ping()

    def _ping(self) -> None:
        if self.config["pingpong"]:
            data = self._unit_data()
            data["ping"] = str(int(data.get("ping", "0")) + 1)

    def _on_served_created(self, event: ops.RelationCreatedEvent) -> None:
        self._on_any(event)
        if not self.unit.is_leader():
            return
        try:
            secret = self.model.get_secret(label=TOKEN_LABEL)
        except ops.SecretNotFoundError:
            secret = self.app.add_secret({"token": "first"}, label=TOKEN_LABEL)
        secret.grant(event.relation)
        event.relation.data[self.app]["token-secret"] = str(secret.id)

    def _on_used_changed(self, event: ops.RelationChangedEvent) -> None:
        self._on_any(event)
        secret_id = event.relation.data[event.relation.app].get("token-secret")
        if secret_id:
            content = self.model.get_secret(id=secret_id, label="remote-token").get_content()
            event.relation.data[self.unit]["token-seen"] = content["token"]

    def _on_secret_changed(self, event: ops.SecretChangedEvent) -> None:
        self._on_any(event)
        content = event.secret.get_content(refresh=True)
        for relation in self.model.relations["used"]:
            relation.data[self.unit]["token-seen"] = content["token"]

    def _on_echo(self, event: ops.ActionEvent) -> None:
        if event.params["fail"]:
            event.log("about to fail")
            event.fail("asked to fail")
            return
        event.set_results({"out": event.params["text"] * event.params["times"]})

    def _on_rotate(self, event: ops.ActionEvent) -> None:
        secret = self.model.get_secret(label=TOKEN_LABEL)
        secret.set_content({"token": event.params["token"]})
        event.set_results({"revision": str(secret.get_info().revision)})

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        if not self.container.can_connect():
            event.add_status(ops.WaitingStatus("waiting for Pebble"))
        relation = self.model.get_relation("peers")
        peers = len(relation.units) if relation is not None else 0
        planned = self.app.planned_units()
        event.add_status(ops.ActiveStatus(f"{self.config['greeting']}; peers={peers}/{planned}"))

    def _on_collect_app_status(self, event: ops.CollectStatusEvent) -> None:
        event.add_status(ops.ActiveStatus(f"led by {self.unit.name}"))


if __name__ == "__main__":  # pragma: nocover
    ops.main(ProbeCharm)
