"""A recorded stand-in for the Kubernetes API the charm reaches through lightkube.

The model installs it as `lightkube.Client` while hooks run, so a charm's Kubernetes calls are
recorded and applied to an in-memory object store instead of being sent. An application that
was not given `juju trust` is refused (HTTP 403) everything but SelfSubjectAccessReviews, which
answer `allowed: false` for it, as a namespace-scoped service account would be.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, cast

import lightkube.models.authorization_v1 as authz_models
import lightkube.models.core_v1 as core_models
import lightkube.models.meta_v1 as meta_models
import lightkube.resources.authorization_v1 as authz
import lightkube.resources.core_v1 as core
from lightkube.core.exceptions import ApiError

Key = tuple[str, str | None, str]  # kind, namespace, name


@dataclasses.dataclass(frozen=True)
class KubeCall:
    """One API call a charm made."""

    app: str
    verb: str  # create | apply | patch | get | delete | list
    kind: str
    name: str | None
    namespace: str | None
    body: dict[str, Any] | None = None


def api_error(code: int, reason: str, message: str) -> ApiError:
    """The error lightkube raises for an HTTP error status."""
    return ApiError(status=meta_models.Status(code=code, reason=reason, message=message))


def _kind(res: Any) -> str:
    cls: Any = res if isinstance(res, type) else type(res)
    return str(cls._api_info.resource.kind)


def _as_dict(obj: Any) -> dict[str, Any]:
    """A lightkube object (or a plain patch body) as a dict."""
    return cast("dict[str, Any]", obj.to_dict() if hasattr(obj, "to_dict") else obj)


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch: nested dicts merge, None deletes, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], cast("Mapping[str, Any]", value))
        else:
            target[key] = copy.deepcopy(cast("Any", value))
    return target


class FakeKube:
    """The cluster as the charms see it: objects by (kind, namespace, name) and every call made."""

    def __init__(self) -> None:
        self.objects: dict[Key, Any] = {}
        self.calls: list[KubeCall] = []

    def client(
        self, *, app: str, trusted: bool, namespace: str | None = None, **_: Any
    ) -> FakeKubeClient:
        """A client for one application's service account (what `lightkube.Client()` returns)."""
        return FakeKubeClient(self, app, trusted, namespace)

    def add_pod(self, namespace: str, name: str, app: str, ip: str) -> None:
        """A unit's pod appeared (Juju labels it with its application)."""
        self.objects["Pod", namespace, name] = core.Pod(
            metadata=meta_models.ObjectMeta(
                name=name, namespace=namespace, labels={"app.kubernetes.io/name": app}
            ),
            status=core_models.PodStatus(podIP=ip),
        )

    def remove_pod(self, namespace: str, name: str) -> None:
        """A unit's pod is gone."""
        self.objects.pop(("Pod", namespace, name), None)

    def get(self, kind: str, name: str, namespace: str | None) -> Any | None:
        """The stored object, or None."""
        return self.objects.get((kind, namespace, name))

    def pod_labels(self, namespace: str, name: str) -> dict[str, str]:
        """A pod's current labels."""
        pod = self.get("Pod", name, namespace)
        return dict(pod.metadata.labels or {}) if pod is not None else {}

    def calls_of(self, verb: str | None = None, kind: str | None = None) -> list[KubeCall]:
        """The recorded calls, optionally only of one verb and/or kind."""
        return [c for c in self.calls if verb in (None, c.verb) and kind in (None, c.kind)]


class FakeKubeClient:
    """The subset of `lightkube.Client` the charms use, acting on a FakeKube."""

    def __init__(self, kube: FakeKube, app: str, trusted: bool, namespace: str | None):
        self._kube, self.app, self.trusted, self.namespace = kube, app, trusted, namespace

    def _record(
        self, verb: str, kind: str, name: str | None, namespace: str | None, body: Any = None
    ) -> None:
        data = _as_dict(body) if body is not None else None
        self._kube.calls.append(KubeCall(self.app, verb, kind, name, namespace, data))
        if not self.trusted:
            raise api_error(403, "Forbidden", f"{kind} {verb}: forbidden for the application")

    def _key(self, kind: str, name: str, namespace: str | None) -> Key:
        return kind, namespace or self.namespace, name

    def _existing(self, key: Key) -> Any:
        if key not in self._kube.objects:
            raise api_error(404, "NotFound", f'{key[0]} "{key[2]}" not found')
        return self._kube.objects[key]

    def create(
        self, obj: Any, name: str | None = None, *, namespace: str | None = None, **_: Any
    ) -> Any:
        """Create an object; a SelfSubjectAccessReview answers whether the app is trusted."""
        kind = _kind(obj)
        if isinstance(obj, authz.SelfSubjectAccessReview):
            self._kube.calls.append(KubeCall(self.app, "create", kind, None, None, _as_dict(obj)))
            status = authz_models.SubjectAccessReviewStatus(allowed=self.trusted)
            return authz.SelfSubjectAccessReview(spec=obj.spec, status=status)
        meta = obj.metadata
        key = self._key(kind, name or meta.name, namespace or meta.namespace)
        self._record("create", kind, key[2], key[1], obj)
        if key in self._kube.objects:
            raise api_error(409, "AlreadyExists", f'{kind} "{key[2]}" already exists')
        self._kube.objects[key] = obj
        return obj

    def apply(
        self, obj: Any, name: str | None = None, *, namespace: str | None = None, **_: Any
    ) -> Any:
        """Server-side apply: the object as given replaces what was stored."""
        kind, meta = _kind(obj), obj.metadata
        key = self._key(kind, name or meta.name, namespace or meta.namespace)
        self._record("apply", kind, key[2], key[1], obj)
        self._kube.objects[key] = obj
        return obj

    def patch(
        self, res: Any, name: str, obj: Any, *, namespace: str | None = None, **_: Any
    ) -> Any:
        """A merge patch on a stored object."""
        kind = _kind(res)
        key = self._key(kind, name, namespace)
        body: Any = _as_dict(obj)
        if not isinstance(body, Mapping):
            raise NotImplementedError("the fake API only takes merge patches")
        self._record("patch", kind, name, key[1], body)
        current: Any = self._existing(key)
        # from_dict is a classmethod: called on the stored object, it builds the same kind.
        patched: Any = current.from_dict(
            _merge(_as_dict(current), cast("Mapping[str, Any]", body))
        )
        self._kube.objects[key] = patched
        return patched

    def get(self, res: Any, name: str, *, namespace: str | None = None, **_: Any) -> Any:
        """A stored object; 404 when there is none."""
        kind = _kind(res)
        key = self._key(kind, name, namespace)
        self._record("get", kind, name, key[1])
        return self._existing(key)

    def delete(self, res: Any, name: str, *, namespace: str | None = None, **_: Any) -> None:
        """Delete a stored object; 404 when there is none."""
        kind = _kind(res)
        key = self._key(kind, name, namespace)
        self._record("delete", kind, name, key[1])
        self._existing(key)
        del self._kube.objects[key]

    def list(
        self,
        res: Any,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        **_: Any,
    ) -> Iterator[Any]:
        """Stored objects of a kind in the namespace whose labels include `labels`."""
        kind = _kind(res)
        ns = namespace or self.namespace
        self._record("list", kind, None, ns)
        wanted = dict(labels or {})
        for (k, n, _name), obj in list(self._kube.objects.items()):
            have: dict[str, str] = dict(obj.metadata.labels or {}) if obj.metadata else {}
            if k == kind and n == ns and all(have.get(a) == b for a, b in wanted.items()):
                yield obj
