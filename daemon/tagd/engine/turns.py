"""Whose turn the models are: a scan's next batch, or requests waiting for an answer.

The analysis process runs one scan at a time and answers POST /analyze while
it runs, with the same loaded models (a second copy would double the memory).
A request waits at most for the batches in flight (a scan runs one per
inference lane side by side): a scan takes its next batch only when no
request is waiting or running. Requests run side by side: two
inferences at once on one onnxruntime session cost about 10 % less CPU per
photo than one after the other with both cores inside each (bench/api.py), and
they only add a batch's activations, not a model's weights.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Turns:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._scanning = 0  # a scan's batches in flight
        self._requests = 0  # waiting or running

    @contextmanager
    def scan(self) -> Iterator[None]:
        """One batch of a scan: beside the scan's other lanes, after every request
        waiting or running."""
        with self._cond:
            while self._requests:
                self._cond.wait()
            self._scanning += 1
        try:
            yield
        finally:
            with self._cond:
                self._scanning -= 1
                self._cond.notify_all()

    @contextmanager
    def request(self) -> Iterator[None]:
        """One on-demand analysis: as soon as the scan's batches in flight are
        done, beside other requests."""
        with self._cond:
            self._requests += 1
            while self._scanning:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._requests -= 1
                self._cond.notify_all()
