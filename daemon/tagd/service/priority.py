"""Run the work at low priority so the machine stays responsive.

On Linux, niceness and the I/O class belong to each thread, and a new thread
inherits its creator's. Importing numpy, OpenCV or onnxruntime already starts
worker threads, so every thread that exists is lowered (via /proc/self/task),
and every thread started later inherits the low priority. Priorities are only
ever lowered: when systemd already set Nice= and IOSchedulingClass=, nothing
changes.
"""

from __future__ import annotations

import logging
import os

import psutil

log = logging.getLogger(__name__)


def _threads() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # not Linux: the process as a whole
        return [0]


def lower_priority(nice: int, io_idle: bool) -> list[str]:
    """Niceness at least `nice` and the idle I/O class for every thread; returns
    what was changed."""
    done = []
    raised = 0
    for tid in _threads():
        try:
            current = os.getpriority(os.PRIO_PROCESS, tid)
            if nice > current:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
                raised += 1
        except (OSError, ProcessLookupError) as exc:  # a thread that just ended
            log.debug("cannot set nice %d on thread %d: %s", nice, tid, exc)
        if io_idle:
            try:
                thread = psutil.Process(tid or os.getpid())
                if thread.ionice().ioclass != psutil.IOPRIO_CLASS_IDLE:
                    thread.ionice(psutil.IOPRIO_CLASS_IDLE)
            except (OSError, psutil.Error, AttributeError) as exc:
                log.debug("cannot set the idle I/O class on thread %d: %s", tid, exc)
    if raised:
        done.append(f"nice {nice} on {raised} threads")
    if io_idle:
        done.append("I/O class idle")
    return done
