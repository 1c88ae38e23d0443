"""Helpers for the pages' AppTests."""

from __future__ import annotations

import time


def until(at, condition, seconds: float = 60) -> None:
    """Rerun the page until condition() holds (a fragment's timer does not tick in AppTest: each run runs it once)."""
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)
        at.run()
        assert not at.exception
