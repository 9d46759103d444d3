"""Kubernetes objects: the labels Patroni selects member pods by, and the role Services."""

from __future__ import annotations

import logging

import ops

import k8s
from components import Component, Io
from state import Ready, Snapshot

logger = logging.getLogger(__name__)


class Kubernetes(Component):
    """Pod labels on every unit, the `<app>-primary` and `<app>-replicas` Services from the leader."""

    def unit_step(self, s: Snapshot, r: Ready, io: Io) -> Snapshot:
        """Label this unit's pod; the leader also applies the Services (server-side apply)."""
        try:
            io.kubernetes.label_pod(s.member)
            if s.is_leader:
                io.kubernetes.apply_services()
        except k8s.KubernetesError as e:
            logger.warning("Kubernetes objects incomplete, retried on the next event: %s", e)
        return s

    def unit_statuses(self, s: Snapshot) -> list[ops.StatusBase]:
        """Blocked until the operator trusts the application."""
        if s.missing_permissions:
            return [ops.BlockedStatus(f"run `juju trust {s.app_name} --scope=cluster`")]
        return []
