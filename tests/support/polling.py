"""The one way tests wait for something: ask again until it holds, or fail naming what never came."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T],
    what: str,
    seconds: float,
    *,
    every: float = 0.2,
    ignoring: tuple[type[BaseException], ...] = (),
    detail: Callable[[], str] | None = None,
) -> T:
    """Calls `check` until it returns something true and returns that.

    An exception of a type in `ignoring` counts as "not yet". After `seconds` it
    raises TimeoutError naming `what`, with `detail()` (a log's tail, say) when given.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            found = check()
        except ignoring:
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            extra = detail() if detail else ""
            raise TimeoutError(f"timed out after {seconds:g}s waiting for {what}" + (f"\n{extra}" if extra else ""))
        time.sleep(every)
