"""Errors the local Juju model raises where real Juju would refuse a command or never settle."""

from __future__ import annotations


class JujuModelError(Exception):
    """Base class of every error the local Juju model raises."""


class NotFoundError(JujuModelError, KeyError):
    """Raised when a command names an application, unit, relation or secret that does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class InvalidCommandError(JujuModelError, ValueError):
    """Raised when Juju would refuse a command outright (bad endpoint, duplicate relation...)."""


class InvalidConfigError(InvalidCommandError):
    """Raised when `juju config` would refuse the values: unknown option or wrong type.

    Attributes:
        problems: one human-readable line per refused option; nothing was changed.
    """

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class InvalidActionError(InvalidCommandError):
    """Raised when `juju run` would refuse the action: unknown action or params not in its schema.

    Attributes:
        problems: one line per schema violation; the action was not queued.
    """

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class QuiescenceError(JujuModelError):
    """Raised when hooks keep triggering each other and the model never becomes quiet.

    Attributes:
        cycle: the repeating (unit, hook) sequence found at the end of the dispatch history,
            or the most recent dispatches when no exact period was found.
        dispatched: how many hooks ran in the settle that gave up.
    """

    def __init__(self, cycle: list[tuple[str, str]], dispatched: int, reason: str):
        names = " -> ".join(f"{unit} {hook}" for unit, hook in cycle)
        super().__init__(
            f"the model did not settle ({reason}, {dispatched} hooks); cycle: {names}"
        )
        self.cycle = cycle
        self.dispatched = dispatched


class ModelInvariantError(JujuModelError):
    """Raised when a hook's output breaks a rule Juju enforces (a non-leader wrote app data)."""
