"""What the simulated fleets (fleetsim, promsim) share: built on enter, undone on exit, and a wait."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(cond: Callable[[], object], *, deadline_s: float = 15, what: str = "condition", poll_s: float = 0.05):
    """``cond()``'s first true value, polled until ``deadline_s`` has passed (then TimeoutError)."""
    end = time.monotonic() + deadline_s
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {deadline_s:g} s waiting for {what}")
        time.sleep(poll_s)


class Simulated:
    """A context manager over ``up()`` and ``down()``: a failed ``up()`` is undone
    at once (its journal holds what it made so far), so nothing half-built is left."""

    def up(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def down(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self):
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.down()
