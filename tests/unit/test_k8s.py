"""The charm's Kubernetes calls: role Services, pod labels and the RBAC probe, on a fake client."""

from __future__ import annotations

from typing import Any
from unittest import mock

import httpx
import lightkube
import lightkube.core.exceptions
import lightkube.models.authorization_v1 as authz_models
import lightkube.resources.authorization_v1 as authz
import lightkube.resources.core_v1 as core
import pytest

import k8s
from workload import patroni

APP = "postgresql-k8s"
NAMESPACE = "prod"


def api_error(
    code: int = 403, message: str = "forbidden by RBAC"
) -> lightkube.core.exceptions.ApiError:
    """A real ApiError, built the way lightkube builds it from the API server's answer."""
    request = httpx.Request("POST", "https://kubernetes.default.svc/api/v1/namespaces/prod/pods")
    response = httpx.Response(
        code,
        request=request,
        json={
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "Forbidden",
            "code": code,
        },
    )
    return lightkube.core.exceptions.ApiError(request=request, response=response)


class FakeClient:
    """Records the calls the charm makes; answers access reviews from a set of denied pairs."""

    def __init__(self, denied: set[tuple[str, str]] | None = None, error: Exception | None = None):
        self.denied = denied or set()
        self.error = error
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))
        if self.error:
            raise self.error

    def create(self, obj: Any, **kwargs: Any) -> Any:
        self._record("create", obj, **kwargs)
        attributes = obj.spec.resourceAttributes
        allowed = (attributes.verb, attributes.resource) not in self.denied
        return authz.SelfSubjectAccessReview(
            spec=obj.spec, status=authz_models.SubjectAccessReviewStatus(allowed=allowed)
        )

    def apply(self, obj: Any, **kwargs: Any) -> Any:
        self._record("apply", obj, **kwargs)
        return obj

    def patch(self, *args: Any, **kwargs: Any) -> Any:
        self._record("patch", *args, **kwargs)
        return None


def kube(client: Any) -> k8s.Kubernetes:
    return k8s.Kubernetes(APP, NAMESPACE, client=client)


# Role Services


@pytest.mark.parametrize(("role", "name"), [("primary", "-primary"), ("replica", "-replicas")])
def test_role_service(role: str, name: str):
    service = kube(FakeClient()).role_service(role)
    assert service.metadata is not None
    assert service.metadata.name == APP + name
    assert service.metadata.namespace == NAMESPACE
    assert service.metadata.labels == {"app.kubernetes.io/name": APP}
    assert service.spec is not None
    assert service.spec.selector == {
        "application": "patroni",
        "cluster-name": APP,
        "role": role,
    }
    assert service.spec.type == "ClusterIP"
    assert service.spec.ports is not None
    assert [(p.name, p.port, p.targetPort) for p in service.spec.ports] == [
        ("postgresql", 5432, 5432)
    ]


def test_role_selectors_match_patroni_label_values():
    # Patroni writes these values on the pods (dcs_environment's LEADER/FOLLOWER label values).
    env = patroni.dcs_environment(APP, NAMESPACE, "10.0.0.1")
    services = kube(FakeClient())
    primary = services.role_service("primary").spec
    replicas = services.role_service("replica").spec
    assert primary is not None
    assert replicas is not None
    assert primary.selector is not None
    assert replicas.selector is not None
    assert primary.selector["role"] == env["PATRONI_KUBERNETES_LEADER_LABEL_VALUE"]
    assert replicas.selector["role"] == env["PATRONI_KUBERNETES_FOLLOWER_LABEL_VALUE"]


def test_apply_services_uses_server_side_apply_for_both_roles():
    client = FakeClient()
    kube(client).apply_services()
    assert [name for name, _, _ in client.calls] == ["apply", "apply"]
    applied = [args[0] for _, args, _ in client.calls]
    assert all(isinstance(obj, core.Service) for obj in applied)
    assert [obj.metadata.name for obj in applied] == [f"{APP}-primary", f"{APP}-replicas"]
    assert all(kwargs == {"force": True} for _, _, kwargs in client.calls)


def test_apply_services_is_the_same_request_every_time():
    client = FakeClient()
    services = kube(client)
    services.apply_services()
    services.apply_services()
    first, second = client.calls[:2], client.calls[2:]
    assert [c[1][0].to_dict() for c in first] == [c[1][0].to_dict() for c in second]


def test_apply_services_error_becomes_kubernetes_error():
    client = FakeClient(error=api_error(403, "services is forbidden"))
    with pytest.raises(k8s.KubernetesError, match="cannot apply Service: services is forbidden"):
        kube(client).apply_services()
    assert len(client.calls) == 1  # stops at the first failure


# Pod labels


def test_label_pod_patches_the_member_labels():
    client = FakeClient()
    kube(client).label_pod("postgresql-k8s-1")
    assert client.calls == [
        (
            "patch",
            (
                core.Pod,
                "postgresql-k8s-1",
                {"metadata": {"labels": {"application": "patroni", "cluster-name": APP}}},
            ),
            {"namespace": NAMESPACE},
        )
    ]


def test_label_pod_error_becomes_kubernetes_error():
    client = FakeClient(error=api_error(404, 'pods "postgresql-k8s-7" not found'))
    with pytest.raises(k8s.KubernetesError, match="cannot label pod postgresql-k8s-7") as caught:
        kube(client).label_pod("postgresql-k8s-7")
    assert "not found" in str(caught.value)
    assert isinstance(caught.value.__cause__, lightkube.core.exceptions.ApiError)


# RBAC probe


def test_missing_permissions_is_empty_when_trusted():
    client = FakeClient()
    assert kube(client).missing_permissions() == []
    reviews = [args[0] for name, args, _ in client.calls if name == "create"]
    assert len(reviews) == len(k8s.REQUIRED_ACCESS)
    asked = [(r.spec.resourceAttributes.verb, r.spec.resourceAttributes.resource) for r in reviews]
    assert asked == list(k8s.REQUIRED_ACCESS)
    assert {r.spec.resourceAttributes.namespace for r in reviews} == {NAMESPACE}
    assert all(isinstance(r, authz.SelfSubjectAccessReview) for r in reviews)


def test_missing_permissions_lists_the_denied_pairs_in_order():
    client = FakeClient(denied={("watch", "configmaps"), ("patch", "pods"), ("get", "secrets")})
    assert kube(client).missing_permissions() == ["patch pods", "watch configmaps"]


def test_missing_permissions_treats_a_review_without_status_as_denied():
    client = FakeClient()
    client.create = lambda obj, **_: authz.SelfSubjectAccessReview(spec=obj.spec)  # type: ignore[method-assign]
    assert kube(client).missing_permissions() == [f"{v} {r}" for v, r in k8s.REQUIRED_ACCESS]


def test_missing_permissions_error_becomes_kubernetes_error():
    client = FakeClient(error=api_error(401, "Unauthorized"))
    with pytest.raises(k8s.KubernetesError, match="access review failed: Unauthorized"):
        kube(client).missing_permissions()


def test_required_access_covers_patroni_kubernetes_dcs():
    pairs = set(k8s.REQUIRED_ACCESS)
    for verb in ("create", "patch", "list", "watch", "delete"):
        assert (verb, "configmaps") in pairs
    assert ("patch", "pods") in pairs
    assert len(pairs) == len(k8s.REQUIRED_ACCESS)


# Against lightkube's real signatures


def test_calls_match_the_lightkube_client_signatures():
    client = mock.create_autospec(lightkube.Client, instance=True)
    client.create.return_value = authz.SelfSubjectAccessReview(
        spec=authz_models.SelfSubjectAccessReviewSpec(),
        status=authz_models.SubjectAccessReviewStatus(allowed=False),
    )
    services = kube(client)
    services.apply_services()
    services.label_pod("postgresql-k8s-0")
    assert len(services.missing_permissions()) == len(k8s.REQUIRED_ACCESS)
    assert client.apply.call_count == 2
    for call in client.apply.call_args_list:
        assert call.kwargs == {"force": True}
    client.patch.assert_called_once_with(
        core.Pod,
        "postgresql-k8s-0",
        {"metadata": {"labels": {"application": "patroni", "cluster-name": APP}}},
        namespace=NAMESPACE,
    )


def test_client_is_created_lazily_in_the_namespace(monkeypatch: pytest.MonkeyPatch):
    created: list[dict[str, Any]] = []

    def fake_client(**kwargs: Any) -> FakeClient:
        created.append(kwargs)
        return FakeClient()

    monkeypatch.setattr(k8s.lightkube, "Client", fake_client)
    services = k8s.Kubernetes(APP, NAMESPACE)
    assert created == []
    first = services.client
    assert services.client is first
    assert created == [{"namespace": NAMESPACE, "field_manager": APP}]


def test_selector():
    selector = k8s.Selector("db")
    assert selector.member_labels == {"application": "patroni", "cluster-name": "db"}
    assert selector.role_labels("replica") == {
        "application": "patroni",
        "cluster-name": "db",
        "role": "replica",
    }
