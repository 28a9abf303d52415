"""The schedule keys' two forms: a cron expression or an interval."""

from __future__ import annotations

import re

_INTERVAL = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_schedule(text: str) -> tuple[str, str | float] | None:
    """("interval", seconds), ("cron", expression), or None for no schedule.

    Raises ValueError with a message for anything else.
    """
    text = text.strip()
    if not text:
        return None
    interval = _INTERVAL.fullmatch(text)
    if interval:
        seconds = float(interval.group(1)) * _UNIT[interval.group(2)]
        if seconds < 1:
            raise ValueError("an interval must be at least 1 s")
        return "interval", seconds
    if len(text.split()) != 5:
        raise ValueError(
            "expected a cron expression with 5 fields ('0 3 * * *') "
            "or an interval ('90s', '30m', '6h', '1d')"
        )
    # Imported here: the scheduler is only needed when a cron expression is given.
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(text)
    except ValueError as exc:
        raise ValueError(f"invalid cron expression: {exc}") from None
    return "cron", text
