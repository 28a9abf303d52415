"""What the daemon and the analysis process hand each other for a job (pickled)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Job:
    """What the daemon asks for (service/work.py: ScanRequest, merged)."""

    source: str  # library | stash | tagme | deliver | flush
    trigger: str
    roots: list[str] | None = None  # library: None = every root
    force: bool = False  # every queued write now, backing off or not


@dataclass
class JobResult:
    summary: list[str] = field(default_factory=list)
    failed: int = 0  # writes that failed and stay queued
    scanned: bool = False  # a scan ran (the daemon counts them)
    unsettled: list[str] = field(default_factory=list)  # changed while analysed
    settle: float = 0.0  # library.settle_seconds, for when to look at those again
