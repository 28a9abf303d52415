"""Whose turn the models are: a scan's next batch, or a request waiting for an answer.

The analysis process runs one scan at a time and answers POST /analyze while
it runs, with the same loaded models (a second copy would double the memory).
A request waits at most for the batch in flight: a scan takes its next batch
only when no request is waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Turns:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._asking = 0

    @contextmanager
    def scan(self) -> Iterator[None]:
        """One batch of a scan: after any request that is waiting."""
        with self._cond:
            while self._busy or self._asking:
                self._cond.wait()
            self._busy = True
        try:
            yield
        finally:
            self._release()

    @contextmanager
    def request(self) -> Iterator[None]:
        """One on-demand analysis: as soon as the batch in flight is done."""
        with self._cond:
            self._asking += 1
            try:
                while self._busy:
                    self._cond.wait()
            finally:
                self._asking -= 1
            self._busy = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()
