"""Runs queued hooks one at a time, oldest first, until the model is quiet or loops."""

from __future__ import annotations

import collections

from substrate.juju.errors import QuiescenceError
from substrate.juju.records import Dispatch, Hook, Unit
from substrate.juju.runner import HookOutcome, Runner
from substrate.juju.world import World


def find_cycle(history: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The shortest sequence repeated three times at the end of the history (else its tail)."""
    for period in range(1, min(len(history) // 3, 50) + 1):
        tail = history[-period:]
        if history[-2 * period : -period] == tail and history[-3 * period : -2 * period] == tail:
            return tail
    return history[-10:]


class Scheduler:
    """The order hooks run in: across units, in the order Juju queued them; one at a time."""

    def __init__(self, world: World, runner: Runner, max_hooks: int, max_repeats: int):
        self.world, self.runner = world, runner
        self.max_hooks, self.max_repeats = max_hooks, max_repeats
        self.failures: list[Dispatch] = []

    def run(self, unit: Unit, hook: Hook) -> HookOutcome:
        """Run one hook now (queued or not) and log it."""
        self.world.running[unit.name] = hook
        try:
            outcome = self.runner.run(unit, hook)
        finally:
            del self.world.running[unit.name]
        self.world.log.append(outcome.dispatch)
        if not outcome.dispatch.ok and hook.action is None:
            self.failures.append(outcome.dispatch)
        return outcome

    def settle(self) -> list[Dispatch]:
        """Run queued hooks until none is left; returns what ran.

        A unit whose hook fails is in error: the hook stays at the head of its queue, nothing
        behind it runs, and the next settle retries it once (as Juju retries failed hooks).
        Raises QuiescenceError when hooks keep triggering each other.
        """
        ran: list[Dispatch] = []
        failed: set[str] = set()
        counts: collections.Counter[tuple[str, str, str | None]] = collections.Counter()
        while (unit := self._next(failed)) is not None:
            hook = unit.queue[0]
            if hook.relation_id is not None and hook.relation_id not in self.world.relations:
                unit.queue.popleft()  # the relation went while the unit could not run hooks
                continue
            dispatch = self.run(unit, hook).dispatch
            ran.append(dispatch)
            if dispatch.ok:
                unit.queue.popleft()
                unit.error = None
            else:
                unit.error = dispatch
                failed.add(unit.name)
            key = (dispatch.unit, dispatch.event, dispatch.remote)
            counts[key] += 1
            if counts[key] > self.max_repeats:
                reason = f"{key[1]} ran {counts[key]} times on {key[0]}"
            elif len(ran) > self.max_hooks:
                reason = f"more than {self.max_hooks} hooks"
            else:
                continue
            raise QuiescenceError(find_cycle([(d.unit, d.event) for d in ran]), len(ran), reason)
        return ran

    def _next(self, skip: set[str]) -> Unit | None:
        """The live unit whose next hook was queued first."""
        ready = [u for u in self.world.units() if u.queue and u.alive and u.name not in skip]
        return min(ready, key=lambda u: u.queue[0].seq) if ready else None
