"""Crontab expressions with crontab's weekday numbering (0 or 7 = Sunday).

APScheduler 3's `CronTrigger.from_crontab` reads day-of-week 0 as Monday and rejects 7, so a
plain "0 9 * * 1-5" would fire Tuesday to Saturday. Every cron Overseer reads goes through here.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DOW_NUM = {name: i for i, name in enumerate(_DOW_NAMES[:7])}


def _dow_values(item: str) -> list[int] | None:
    """Crontab day numbers (0-6, Sunday = 0) of one comma-separated item, or None if not understood."""
    base, _, step_text = item.partition("/")
    step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else (1 if not step_text else None)
    if step is None:
        return None

    def one(token: str) -> int | None:
        token = token.strip().lower()
        if token.isdigit() and 0 <= int(token) <= 7:
            return int(token)
        return _DOW_NUM.get(token[:3]) if len(token) == 3 else None

    if base in ("*", "?"):
        lo, hi = 0, 6
    elif "-" in base:
        a, _, b = base.partition("-")
        lo_v, hi_v = one(a), one(b)
        if lo_v is None or hi_v is None or lo_v > hi_v:
            return None
        lo, hi = lo_v, hi_v
    else:
        v = one(base)
        if v is None:
            return None
        lo, hi = v, (6 if step_text else v)
    return [d % 7 for d in range(lo, hi + 1, step)]


def crontab_dow(field: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday) as names APScheduler 3 reads the same way."""
    if field in ("*", "?"):
        return field
    days: set[int] = set()
    for item in field.split(","):
        values = _dow_values(item)
        if values is None:
            return field  # leave it to APScheduler, which names the problem
        days.update(values)
    return ",".join(_DOW_NAMES[d] for d in sorted(days))


def crontab_trigger(cron: str, tz: str) -> CronTrigger:
    """CronTrigger for a 5-field crontab expression in a time zone, with crontab's weekday numbering."""
    fields = cron.split()
    if len(fields) == 5:
        fields[4] = crontab_dow(fields[4])
    return CronTrigger.from_crontab(" ".join(fields), timezone=ZoneInfo(tz))
