"""The engine's one event stream: progress displays, the agent's logs and reports all read it.

Stages call `emit(event)`; whoever runs the engine passes a callback (or none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sync_agent.objects import ObjectRef


@dataclass(frozen=True)
class PhaseStarted:
    phase: str  # fetch, render, validate, apply:<stage>, prune, health
    total: int = 0  # objects the phase will handle, when known


@dataclass(frozen=True)
class PhaseFinished:
    phase: str
    seconds: float


@dataclass(frozen=True)
class ObjectDone:
    """One object handled within a phase (for progress bars); action as in a change set."""

    phase: str
    ref: ObjectRef
    action: str


@dataclass(frozen=True)
class Message:
    text: str


Event = PhaseStarted | PhaseFinished | ObjectDone | Message
EventSink = Callable[[Event], None]


def ignore(_: Event) -> None:
    """The sink used when nobody listens."""
