"""Scheduled scans: daemon.schedule as an APScheduler job.

The job only queues a scan request (the scan thread does the work), so it
never overlaps itself; missed runs (the machine was asleep) are coalesced into
one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from tagd.config import parse_schedule

# APScheduler logs every run at INFO; a 1-minute interval would flood the journal.
logging.getLogger("apscheduler").setLevel(logging.WARNING)


class Schedule:
    def __init__(self, fire: Callable[[], None]) -> None:
        self._fire = fire
        self._scheduler = BackgroundScheduler(
            daemon=True,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        )
        self._job = None
        self.text = ""

    def start(self, text: str) -> None:
        self._scheduler.start()
        self.set(text)

    def set(self, text: str) -> None:
        """Replace the schedule (text is validated by the config already)."""
        if self._job is not None:
            self._job.remove()
            self._job = None
        self.text = text
        spec = parse_schedule(text)
        if spec is None:
            return
        kind, value = spec
        trigger = (
            IntervalTrigger(seconds=float(value))
            if kind == "interval"
            else CronTrigger.from_crontab(str(value))
        )
        self._job = self._scheduler.add_job(self._fire, trigger, id="scan", name="scheduled scan")

    def next_run(self) -> float | None:
        """Unix time of the next scheduled scan, or None. Asked just as a run
        fires, APScheduler may still hold that run's time: the one after it is
        the answer then."""
        job = self._job
        when = job.next_run_time if job is not None else None
        if when is None:
            return None
        now = datetime.now(when.tzinfo)
        while when is not None and when <= now:
            when = job.trigger.get_next_fire_time(when, now)
        return when.timestamp() if when is not None else None

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
