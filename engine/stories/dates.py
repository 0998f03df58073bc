"""Story history grouped the way people think of time, in the user's timezone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import InputError, shown

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


class Dated(Protocol):
    @property
    def created_at(self) -> datetime: ...


def zone(name: str) -> ZoneInfo:
    try:
        if len(name) > 64:  # the longest IANA name has 32: not looked up on disk
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InputError(f"unknown timezone {shown(name)!r}", user_message=(
            f"I don't know the timezone '{shown(name)}'. Use a name like Europe/Berlin, "
            "Asia/Kolkata or America/New_York.")) from None


def group_label(when: datetime, now: datetime, tz: ZoneInfo) -> str:
    """Today, Yesterday, Last 7 days, Last 30 days, a month of this year, or a year."""
    day: date = when.astimezone(tz).date()
    today = now.astimezone(tz).date()
    if day >= today:
        return "Today"
    if day == today - timedelta(days=1):
        return "Yesterday"
    if day > today - timedelta(days=7):
        return "Last 7 days"
    if day > today - timedelta(days=30):
        return "Last 30 days"
    if day.year == today.year:
        return MONTHS[day.month - 1]
    return str(day.year)


T = TypeVar("T", bound=Dated)


def group_by_date(items: Sequence[T], now: datetime, tz: ZoneInfo) -> list[tuple[str, list[T]]]:
    """Items (newest first) in labelled groups, in order."""
    groups: list[tuple[str, list[T]]] = []
    for item in sorted(items, key=lambda i: i.created_at, reverse=True):
        label = group_label(item.created_at, now, tz)
        if not groups or groups[-1][0] != label:
            groups.append((label, []))
        groups[-1][1].append(item)
    return groups
