"""Kubernetes objects the charm owns: role Services, the pod labels Patroni needs, and an RBAC probe."""

from __future__ import annotations

import dataclasses
import logging

import lightkube
import lightkube.core.exceptions
import lightkube.models.authorization_v1 as authz_models
import lightkube.models.core_v1 as core_models
import lightkube.models.meta_v1 as meta_models
import lightkube.resources.authorization_v1 as authz
import lightkube.resources.core_v1 as core

from workload import layout

logger = logging.getLogger(__name__)

# What the charm and Patroni's Kubernetes DCS do with the API: (verb, resource).
REQUIRED_ACCESS: tuple[tuple[str, str], ...] = (
    ("patch", "pods"),
    ("list", "pods"),
    ("watch", "pods"),
    ("create", "configmaps"),
    ("patch", "configmaps"),
    ("list", "configmaps"),
    ("watch", "configmaps"),
    ("delete", "configmaps"),
    ("create", "services"),
    ("patch", "services"),
)


class KubernetesError(Exception):
    """Raised when the Kubernetes API refuses or fails a call the charm needs."""


@dataclasses.dataclass(frozen=True)
class Selector:
    """Labels Patroni reads and writes on member pods."""

    scope: str

    @property
    def member_labels(self) -> dict[str, str]:
        """Labels every member pod carries, so Patroni lists exactly this cluster's pods."""
        return {"application": "patroni", "cluster-name": self.scope}

    def role_labels(self, role: str) -> dict[str, str]:
        """Selector of the pods in one role (`primary` or `replica`), as Patroni labels them."""
        return {**self.member_labels, "role": role}


class Kubernetes:
    """The charm's Kubernetes API calls for one application in one namespace."""

    def __init__(self, app_name: str, namespace: str, client: lightkube.Client | None = None):
        self.app_name = app_name
        self.namespace = namespace
        self.selector = Selector(app_name)
        self._client = client

    @property
    def client(self) -> lightkube.Client:
        """The lightkube client, created on first use (in-cluster credentials)."""
        if self._client is None:
            self._client = lightkube.Client(namespace=self.namespace, field_manager=self.app_name)
        return self._client

    def missing_permissions(self) -> list[str]:
        """`verb resource` pairs the charm's service account may not do (empty when trusted)."""
        missing: list[str] = []
        for verb, resource in REQUIRED_ACCESS:
            review = authz.SelfSubjectAccessReview(
                spec=authz_models.SelfSubjectAccessReviewSpec(
                    resourceAttributes=authz_models.ResourceAttributes(
                        namespace=self.namespace, verb=verb, resource=resource
                    )
                )
            )
            try:
                result = self.client.create(review)
            except lightkube.core.exceptions.ApiError as e:
                raise KubernetesError(f"access review failed: {e.status.message}") from e
            if result.status is None or not result.status.allowed:
                missing.append(f"{verb} {resource}")
        return missing

    def role_service(self, role: str) -> core.Service:
        """The `<app>-primary` or `<app>-replicas` Service, selecting on Patroni's role label."""
        name = f"{self.app_name}-{'primary' if role == 'primary' else 'replicas'}"
        return core.Service(
            metadata=meta_models.ObjectMeta(
                name=name,
                namespace=self.namespace,
                labels={"app.kubernetes.io/name": self.app_name},
            ),
            spec=core_models.ServiceSpec(
                selector=self.selector.role_labels(role),
                ports=[
                    core_models.ServicePort(
                        name="postgresql",
                        port=layout.PORT_POSTGRESQL,
                        targetPort=layout.PORT_POSTGRESQL,
                    )
                ],
                type="ClusterIP",
            ),
        )

    def apply_services(self) -> None:
        """Create or update both role Services (server-side apply: unchanged means no write)."""
        for role in ("primary", "replica"):
            try:
                self.client.apply(self.role_service(role), force=True)
            except lightkube.core.exceptions.ApiError as e:
                raise KubernetesError(f"cannot apply Service: {e.status.message}") from e

    def label_pod(self, pod_name: str) -> None:
        """Give a member's pod the labels Patroni's Kubernetes DCS selects members by."""
        patch: dict[str, object] = {"metadata": {"labels": self.selector.member_labels}}
        try:
            self.client.patch(core.Pod, pod_name, patch, namespace=self.namespace)  # pyright: ignore[reportUnknownMemberType]
        except lightkube.core.exceptions.ApiError as e:
            raise KubernetesError(f"cannot label pod {pod_name}: {e.status.message}") from e
