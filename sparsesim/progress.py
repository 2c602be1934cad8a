"""Progress of long work (sweep points, dynamic inputs, validation checks): one status line on
stderr with count, rate and ETA, redrawn in place at most twice a second, first drawn after
``delay`` (1 s, or ``$SPARSESIM_PROGRESS_DELAY`` seconds): work done sooner shows nothing.

One mechanism for every command, and our own rather than tqdm or rich: one line of stderr
needs no dependency, and the library itself never prints — a long-running function takes a
``progress`` object from its caller (the CLI) and only calls :meth:`Progress.update`. The bar
is silent unless its stream is a terminal (a log file or a pipe gets no redraw lines) and
with ``quiet`` (the commands' ``--quiet``).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from sparsesim.errors import SparsesimError

DELAY_ENV = "SPARSESIM_PROGRESS_DELAY"
"""Seconds before a bar first draws (default 1): ``0`` shows every bar, however quick the work."""


def default_delay() -> float:
    """``$SPARSESIM_PROGRESS_DELAY`` in seconds, else 1; anything else than a number ≥ 0 refused."""
    text = os.environ.get(DELAY_ENV)
    if text is None:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise SparsesimError(f"must be a number of seconds >= 0, got {text!r}", field=DELAY_ENV)
    return value


class Progress:
    """A bar over ``total`` units of ``what`` (``points``, ``inputs``, ``checks``)."""

    def __init__(self, total: int, what: str, *, quiet: bool = False,
                 stream: TextIO | None = None, delay: float | None = None) -> None:
        self.total, self.what, self.done, self.failed = total, what, 0, 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet and self.stream.isatty()
        self.start = time.perf_counter()
        delay = default_delay() if delay is None else delay
        self.last = self.start + delay - 0.5  # first draw ``delay`` s in: quick work stays quiet
        self.every = 0.5
        self.shown = False

    def update(self, ok: bool = True) -> None:
        """One more unit done (``ok=False``: it failed)."""
        self.done += 1
        self.failed += 0 if ok else 1
        now = time.perf_counter()
        finished = self.done == self.total and self.shown  # end a bar that was shown
        if self.enabled and (now - self.last >= self.every or finished):
            self.last, self.shown = now, True
            self.stream.write(self.line(now) + ("\r" if self.done < self.total else "\n"))
            self.stream.flush()

    def line(self, now: float) -> str:
        """The status text at time ``now`` (``time.perf_counter``)."""
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate else math.inf
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        bar = "█" * filled + "·" * (width - filled)
        failed = f" · {self.failed} failed" if self.failed else ""
        return (f"[{bar}] {self.done}/{self.total} {self.what} · {rate:.1f}/s · "
                f"ETA {duration(eta)}{failed}")


def duration(seconds: float) -> str:
    """``75`` → ``1m15s``; ``?`` when unknown."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


ProgressFactory = Callable[[int, str], Progress]
"""What a long-running function takes: it calls ``progress(total, what)`` once it knows the
total, then ``update()`` per unit (``functools.partial(Progress, quiet=True)`` and the like)."""
