"""Juju secrets of the model: owners, revisions, per-unit tracking and labels, grants to relations."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from ops import testing

from substrate.juju.records import RelationRecord

Role = Literal["unit", "app", "consumer"]


@dataclasses.dataclass
class SecretRecord:
    """One secret: who owns it, its revisions, and who tracks which revision under what label."""

    id: str
    owner_app: str
    owner_unit: str | None  # None for an application-owned secret
    revisions: dict[int, dict[str, str]]
    latest: int = 1
    description: str | None = None
    expire: datetime.datetime | None = None
    rotate: Any = None
    owner_label: str | None = None
    labels: dict[str, str] = dataclasses.field(
        default_factory=dict[str, str]
    )  # consumer unit -> label
    tracked: dict[str, int] = dataclasses.field(
        default_factory=dict[str, int]
    )  # consumer unit -> revision
    grants: dict[int, set[str]] = dataclasses.field(
        default_factory=dict[int, set[str]]
    )  # relation -> grantees
    remove_notified: set[int] = dataclasses.field(default_factory=set[int])

    def content(self, revision: int | None = None) -> dict[str, str]:
        """A revision's content (the latest by default)."""
        return dict(self.revisions[self.latest if revision is None else revision])


@dataclasses.dataclass(frozen=True)
class SecretEvent:
    """A secret hook the model must queue: on `unit`, or on the leader of `app` when unit is None."""

    kind: Literal["secret-changed", "secret-remove"]
    secret_id: str
    unit: str | None
    app: str
    revision: int | None = None


@dataclasses.dataclass
class HookSecretActivity:
    """What a hook did to secrets that its output State does not show."""

    reads: set[str] = dataclasses.field(default_factory=set[str])  # secret ids it fetched
    removed_revisions: list[tuple[str, int]] = dataclasses.field(
        default_factory=list[tuple[str, int]]
    )


class SecretStore:
    """Every secret of the model."""

    def __init__(self) -> None:
        self.secrets: dict[str, SecretRecord] = {}

    def get(self, secret_id: str) -> SecretRecord:
        """The secret with this id; KeyError if there is none."""
        return self.secrets[secret_id]

    def role(
        self, rec: SecretRecord, unit: str, app: str, relations: Mapping[int, RelationRecord]
    ) -> Role | None:
        """How a unit sees a secret: as its owner unit or app, as a grantee, or not at all."""
        if rec.owner_unit is not None:
            if rec.owner_unit == unit:
                return "unit"
        elif rec.owner_app == app:
            return "app"
        for relation_id, grantees in rec.grants.items():
            relation = relations.get(relation_id)
            if relation is not None and app in relation.sides and grantees & {app, unit}:
                return "consumer"
        return None

    def view(
        self, unit: str, app: str, relations: Mapping[int, RelationRecord]
    ) -> list[testing.Secret]:
        """The secrets a unit can see, as ops.testing objects tracking the unit's revision."""
        out: list[testing.Secret] = []
        for rec in self.secrets.values():
            role = self.role(rec, unit, app, relations)
            if role is None:
                continue
            # Owners see the latest revision; consumers the one they track (the latest until
            # their first read).
            tracked = rec.tracked.get(unit, rec.latest) if role == "consumer" else rec.latest
            if tracked not in rec.revisions:
                tracked = rec.latest
            secret = testing.Secret(
                rec.content(tracked),
                latest_content=rec.content(),
                id=rec.id,
                owner=None if role == "consumer" else role,
                remote_grants={} if role == "consumer" else rec.grants,
                label=rec.labels.get(unit) if role == "consumer" else rec.owner_label,
                description=rec.description,
                expire=rec.expire,
                rotate=rec.rotate,
            )
            # ops.testing numbers revisions from 1 per State; align them with the model's.
            object.__setattr__(secret, "_tracked_revision", tracked)
            object.__setattr__(secret, "_latest_revision", rec.latest)
            out.append(secret)
        return out

    def commit(
        self,
        unit: str,
        app: str,
        before: Iterable[testing.Secret],
        after: Iterable[testing.Secret],
        activity: HookSecretActivity,
    ) -> set[str]:
        """Record a hook's secret changes; returns the ids that got a new revision."""
        earlier = {s.id: s for s in before}
        later = {s.id: s for s in after}
        changed: set[str] = set()
        for secret in later.values():
            rec = self.secrets.get(secret.id)
            if rec is None:
                self._add(unit, app, secret)
                continue
            old = earlier.get(secret.id)
            if secret.owner is not None and self._commit_owned(rec, secret, old):
                changed.add(rec.id)
            elif (
                secret.owner is None
                and secret.label
                and (old is None or old.label != secret.label)
            ):
                rec.labels[unit] = secret.label
            if secret.owner is None:
                self._commit_tracking(rec, unit, secret, old, activity)
        for secret_id, old in earlier.items():
            if old.owner is not None and secret_id not in later:
                self.secrets.pop(secret_id, None)  # the owner removed every revision
        for secret_id, revision in activity.removed_revisions:
            rec = self.secrets.get(secret_id)
            if rec is not None and revision != rec.latest:
                rec.revisions.pop(revision, None)
        return changed

    def _add(self, unit: str, app: str, secret: testing.Secret) -> None:
        self.secrets[secret.id] = SecretRecord(
            id=secret.id,
            owner_app=app,
            owner_unit=unit if secret.owner == "unit" else None,
            revisions={1: dict(secret.latest_content)},
            description=secret.description,
            expire=secret.expire,
            rotate=secret.rotate,
            owner_label=secret.label,
            grants={k: set(v) for k, v in secret.remote_grants.items()},
        )

    @staticmethod
    def _commit_owned(
        rec: SecretRecord, secret: testing.Secret, old: testing.Secret | None
    ) -> bool:
        new_revision = dict(secret.latest_content) != rec.revisions[rec.latest]
        if new_revision:
            rec.latest += 1
            rec.revisions[rec.latest] = dict(secret.latest_content)
        rec.description, rec.expire, rec.rotate = secret.description, secret.expire, secret.rotate
        if old is None or secret.label != old.label:
            rec.owner_label = secret.label
        rec.grants = {k: set(v) for k, v in secret.remote_grants.items()}
        return new_revision

    @staticmethod
    def _commit_tracking(
        rec: SecretRecord,
        unit: str,
        secret: testing.Secret,
        old: testing.Secret | None,
        activity: HookSecretActivity,
    ) -> None:
        # ops.testing keeps the revision a State's secret tracks in a private attribute.
        before = old._tracked_revision if old is not None else rec.latest  # pyright: ignore[reportPrivateUsage]
        if secret._tracked_revision != before:  # pyright: ignore[reportPrivateUsage]
            rec.tracked[unit] = rec.latest
        elif secret.id in activity.reads:
            rec.tracked.setdefault(unit, before)

    def _consumers(
        self, rec: SecretRecord, units: Mapping[str, str], relations: Mapping[int, RelationRecord]
    ) -> dict[str, str]:
        return {
            u: app for u, app in units.items() if self.role(rec, u, app, relations) == "consumer"
        }

    def changed_events(
        self,
        secret_ids: Iterable[str],
        units: Mapping[str, str],
        relations: Mapping[int, RelationRecord],
    ) -> list[SecretEvent]:
        """secret-changed for every consumer that tracks an older revision of these secrets.

        `units` maps every live unit to its application.
        """
        out: list[SecretEvent] = []
        for secret_id in secret_ids:
            rec = self.secrets.get(secret_id)
            if rec is None:
                continue
            for unit, app in self._consumers(rec, units, relations).items():
                if unit in rec.tracked and rec.tracked[unit] < rec.latest:
                    out.append(SecretEvent("secret-changed", rec.id, unit, app))
        return out

    def obsolete_events(
        self,
        secret_ids: Iterable[str],
        units: Mapping[str, str],
        relations: Mapping[int, RelationRecord],
    ) -> list[SecretEvent]:
        """secret-remove, once per revision, for revisions no consumer tracks any more."""
        out: list[SecretEvent] = []
        for secret_id in secret_ids:
            rec = self.secrets.get(secret_id)
            if rec is None:
                continue
            consumers = self._consumers(rec, units, relations)
            in_use = {rec.tracked[u] for u in consumers if u in rec.tracked}
            for revision in sorted(rec.revisions):
                if revision < rec.latest and revision not in in_use | rec.remove_notified:
                    rec.remove_notified.add(revision)
                    out.append(
                        SecretEvent(
                            "secret-remove", rec.id, rec.owner_unit, rec.owner_app, revision
                        )
                    )
        return out

    def forget_unit(self, unit: str) -> None:
        """A unit left the model: its own secrets go, and so do its labels and tracking."""
        for secret_id in [s.id for s in self.secrets.values() if s.owner_unit == unit]:
            del self.secrets[secret_id]
        for rec in self.secrets.values():
            rec.tracked.pop(unit, None)
            rec.labels.pop(unit, None)

    def forget_app(self, app: str) -> None:
        """An application left the model: every secret it owned goes."""
        for secret_id in [s.id for s in self.secrets.values() if s.owner_app == app]:
            del self.secrets[secret_id]

    def revoke_relation(self, relation_id: int) -> None:
        """A relation was removed: grants made over it end with it."""
        for rec in self.secrets.values():
            rec.grants.pop(relation_id, None)
