"""A server-wide limit on runs training at once; runs beyond it wait, first come, first served.

Every Start on the Train page asks this queue for a place before its first step. On a 2-core machine two runs
at once each go at half speed or worse, so by default there are as many places as half the cores (at least one);
`CAE_MAX_RUNS` sets another number. A paused run gives its place back: a person who paused does not hold up
others, and Resume queues again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

MAX_RUNS_VARIABLE = "CAE_MAX_RUNS"


def places_from_environment() -> int:
    """CAE_MAX_RUNS if set to a positive whole number, else half the cores (at least 1)."""
    text = os.environ.get(MAX_RUNS_VARIABLE, "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"{MAX_RUNS_VARIABLE} must be a whole number of at least 1, got {text!r}")
        return int(text)
    return default_places()


def default_places() -> int:
    """Half the cores, at least one: on 2 cores two runs at once would each go at half speed or worse."""
    return max(1, (os.cpu_count() or 2) // 2)


class RunQueue:
    """Places for runs training at once; `wait_for_place` blocks in order of arrival."""

    def __init__(self, places: int):
        if places < 1:
            raise ValueError("a run queue needs at least one place")
        self.places = places
        self._changed = threading.Condition()
        self._waiting: list[object] = []  # tickets in order of arrival
        self._holding: set[object] = set()

    def wait_for_place(self, ticket: object, *, give_up: Callable[[], bool] = lambda: False,
                       poll_seconds: float = 0.5) -> bool:
        """Block until `ticket` holds a place (True), or until give_up() says so (False, out of the queue)."""
        with self._changed:
            if ticket in self._holding:
                return True
            if ticket not in self._waiting:
                self._waiting.append(ticket)
            while True:
                if self._waiting[0] is ticket and len(self._holding) < self.places:
                    self._waiting.pop(0)
                    self._holding.add(ticket)
                    self._changed.notify_all()  # the next in line may fit too
                    return True
                if give_up():
                    self._waiting.remove(ticket)
                    self._changed.notify_all()
                    return False
                self._changed.wait(poll_seconds)

    def release(self, ticket: object) -> None:
        """Give a place back (or leave the queue); nothing happens for a ticket that has neither."""
        with self._changed:
            self._holding.discard(ticket)
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            self._changed.notify_all()

    def ahead_of(self, ticket: object) -> int:
        """Runs waiting in front of this ticket (0 when it is next, or not waiting)."""
        with self._changed:
            return self._waiting.index(ticket) if ticket in self._waiting else 0

    def counts(self) -> tuple[int, int]:
        """(runs training, runs waiting) now."""
        with self._changed:
            return len(self._holding), len(self._waiting)
