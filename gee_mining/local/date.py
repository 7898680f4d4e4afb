"""Date and DateRange: instants in milliseconds since the Unix epoch (UTC)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .errors import EngineError

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_iso(text: str, tz: str | None = None) -> int:
    """Milliseconds for an ISO 8601 date or date-time, as ``ee.Date('...')`` reads it.

    A string without an offset is read in ``tz`` (UTC by default).
    """
    s = text.strip()
    try:
        if s.endswith("Z"):
            s = s[:-1] + "+00:00"
        value = dt.datetime.fromisoformat(s)
    except ValueError:
        raise EngineError(f"Date: Unable to parse date string '{text}'.") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=_zone(tz))
    return _millis(value)


def _zone(tz: str | None) -> dt.tzinfo:
    if tz in (None, "", "UTC", "Etc/UTC", "GMT"):
        return dt.UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise EngineError(f"Date: Unknown time zone '{tz}'.") from None


def _millis(value: dt.datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def to_datetime(millis: float, tz: str | None = None) -> dt.datetime:
    return (EPOCH + dt.timedelta(milliseconds=millis)).astimezone(_zone(tz))


@dataclass(frozen=True)
class Date:
    millis: int

    ee_type = "Date"

    @classmethod
    def coerce(cls, value, tz: str | None = None) -> Date:
        if isinstance(value, Date):
            return value
        if isinstance(value, bool):
            raise EngineError(f"Date: Invalid date value {value!r}.")
        if isinstance(value, int | float):
            return cls(int(value) if float(value).is_integer() else value)
        if isinstance(value, str):
            return cls(parse_iso(value, tz))
        raise EngineError(f"Date: Invalid date value of type {type(value).__name__}.")

    def datetime(self, tz: str | None = None) -> dt.datetime:
        return to_datetime(self.millis, tz)

    def to_info(self) -> dict:
        return {"type": "Date", "value": self.millis}


@dataclass(frozen=True)
class DateRange:
    """A half-open interval ``[start, end)`` in milliseconds."""

    start: float
    end: float

    ee_type = "DateRange"

    def contains(self, millis: float) -> bool:
        return self.start <= millis < self.end

    def to_info(self) -> dict:
        return {"type": "DateRange", "dates": [self.start, self.end]}
