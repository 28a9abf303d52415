"""How a child process ended, in words (the sidecar writer, the analysis process)."""

from __future__ import annotations

import signal


def describe_exit(code: int | None) -> str:
    """A Popen return code as a person reads it; None: it would not end, killed."""
    if code is None:
        return "still running, killed"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
