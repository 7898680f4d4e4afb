"""Date and DateRange: instants in milliseconds since the Unix epoch (UTC).

Earth Engine's dates follow Joda-Time's ISO chronology: calendar units
(``year``, ``month``, ``week``, ``day``) are counted on the wall clock of a
time zone (UTC unless ``timeZone`` names one), ISO weeks start on Monday, and
the "average" unit lengths of ``difference`` and ``unitRatio`` are Joda's
(a year of 365.2425 days, a month of a twelfth of that). Patterns of
``format`` and ``parse`` are Joda's ``DateTimeFormat`` patterns.

The value classes come first, the ``Date.*`` and ``DateRange.*`` algorithms
after them.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import algorithm
from gee_mining.local.core.types import promotion

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# Joda-Time's DateRange.unbounded() ends: Long.MIN_VALUE and Long.MAX_VALUE milliseconds.
MIN_MILLIS = -(2**63)
MAX_MILLIS = 2**63 - 1

UNITS = ("year", "month", "week", "day", "hour", "minute", "second")
_EXACT_MS = {"week": 604_800_000, "day": 86_400_000, "hour": 3_600_000, "minute": 60_000, "second": 1_000}
# Joda's average lengths (ISOChronology): 365.2425 days a year, a twelfth of that a month.
AVERAGE_MS = {"year": 31_556_952_000, "month": 2_629_746_000, **_EXACT_MS}

_ISO = re.compile(
    r"^(?P<year>[+-]?\d{1,9})"
    r"(?:-(?:(?P<month>\d{1,2})(?:-(?P<day>\d{1,2}))?|(?P<doy>\d{3})|W(?P<week>\d{1,2})(?:-(?P<wday>\d))?))?"
    r"(?:T(?P<hour>\d{1,2})(?::(?P<minute>\d{1,2})(?::(?P<second>\d{1,2})(?:[.,](?P<frac>\d+))?)?)?"
    r"(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?)?$"
)


def parse_iso(text: str, tz: str | None = None) -> int:
    """Milliseconds for an ISO 8601 date or date-time, as ``ee.Date('...')`` reads it.

    Joda's ISO parser: ``2020``, ``2017-6-24``, ``1996-001`` (day of year),
    ``2020-W05-3``, ``2017-06-24T07``, ``...T07:15:31.24``, with an optional
    ``Z`` or ``+hh:mm`` offset after a time. A string without an offset is read
    in ``tz`` (UTC by default).
    """
    m = _ISO.match(text.strip())
    if not m:
        raise EngineError(f"Date: Unable to parse date string '{text}'.")
    g = m.groupdict()
    try:
        year = int(g["year"])
        if g["doy"] is not None:
            day = dt.date(year, 1, 1) + dt.timedelta(days=int(g["doy"]) - 1)
            if day.year != year:
                raise ValueError("day of year out of range")
        elif g["week"] is not None:
            day = dt.date.fromisocalendar(year, int(g["week"]), int(g["wday"] or 1))
        else:
            day = dt.date(year, int(g["month"] or 1), int(g["day"] or 1))
        frac = g["frac"] or ""
        local = dt.datetime(
            day.year,
            day.month,
            day.day,
            int(g["hour"] or 0),
            int(g["minute"] or 0),
            int(g["second"] or 0),
            int((frac + "000")[:3]) * 1000,
        )
    except ValueError:
        raise EngineError(f"Date: Unable to parse date string '{text}'.") from None
    offset = g["offset"]
    if offset is None:
        return local_to_millis(local, tz)
    if offset == "Z":
        zone: dt.tzinfo = dt.UTC
    else:
        digits = offset[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) > 2 else 0)
        zone = dt.timezone(dt.timedelta(minutes=minutes if offset[0] == "+" else -minutes))
    return _millis(local.replace(tzinfo=zone))


def _zone(tz: str | None) -> dt.tzinfo:
    if tz in (None, "", "UTC", "Etc/UTC", "GMT", "Etc/GMT", "Zulu"):
        return dt.UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise EngineError(f"Date: Unknown time zone '{tz}'.") from None


def _millis(value: dt.datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def to_datetime(millis: float, tz: str | None = None) -> dt.datetime:
    """The wall-clock date-time of ``millis`` in ``tz`` (aware)."""
    try:
        return (EPOCH + dt.timedelta(milliseconds=millis)).astimezone(_zone(tz))
    except OverflowError:
        raise EngineError(f"Date: {millis} milliseconds is outside the supported years 1 to 9999.") from None


def local_to_millis(local: dt.datetime, tz: str | None = None) -> int:
    """Milliseconds of a naive wall-clock date-time read in ``tz``.

    An ambiguous wall time (a clock set back) is its earlier instant, as in Joda.
    """
    return _millis(local.replace(tzinfo=_zone(tz), fold=0))


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
            if not math.isfinite(value):
                raise EngineError(f"Date: Invalid date value {value!r}.")
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


# -- calendar arithmetic ------------------------------------------------------


def unit_name(algorithm: str, unit: str, allowed: tuple[str, ...] = UNITS) -> str:
    """A unit name as Earth Engine accepts it (case-insensitive, plural allowed)."""
    name = str(unit).strip().lower()
    if name not in allowed and name.endswith("s") and name[:-1] in allowed:
        name = name[:-1]
    if name not in allowed:
        raise EngineError(f"{algorithm}: Unknown unit '{unit}'. Expected one of: {', '.join(allowed)}.")
    return name


def _add_months(local: dt.datetime, months: int) -> dt.datetime:
    """Joda's plusMonths: the day of month is clamped to the new month's length."""
    total = local.year * 12 + (local.month - 1) + months
    year, month = divmod(total, 12)
    if not 1 <= year <= 9999:
        raise EngineError("Date: the result is outside the supported years 1 to 9999.")
    last = (dt.date(year + (month == 11), (month + 1) % 12 + 1, 1) - dt.timedelta(days=1)).day
    return local.replace(year=year, month=month + 1, day=min(local.day, last))


def advance_millis(millis: int, delta: float, unit: str, tz: str | None) -> int:
    """``millis`` moved by ``delta`` units; calendar units keep the wall-clock time in ``tz``."""
    if unit in ("hour", "minute", "second"):
        return millis + round(delta * _EXACT_MS[unit])
    whole = math.floor(delta) if delta >= 0 else math.ceil(delta)
    fraction = delta - whole
    if fraction and unit in ("year", "month"):
        raise EngineError(
            f"Date.advance: a fractional number of {unit}s ({delta}) is not supported by the local engine."
        )
    local = to_datetime(millis, tz).replace(tzinfo=None)
    try:
        if unit == "year":
            local = _add_months(local, 12 * whole)
        elif unit == "month":
            local = _add_months(local, whole)
        else:
            local = local + dt.timedelta(days=whole * (7 if unit == "week" else 1))
    except OverflowError:
        raise EngineError("Date: the result is outside the supported years 1 to 9999.") from None
    result = local_to_millis(local, tz) + (millis - math.floor(millis))
    if fraction:
        result += round(fraction * _EXACT_MS[unit])
    return int(result) if float(result).is_integer() else result


def floor_millis(millis: int, unit: str, tz: str | None) -> int:
    """The start of the ``unit`` (in ``tz``'s calendar) that holds ``millis``."""
    local = to_datetime(millis, tz).replace(tzinfo=None)
    if unit == "year":
        local = dt.datetime(local.year, 1, 1)
    elif unit == "month":
        local = dt.datetime(local.year, local.month, 1)
    elif unit == "week":
        local = dt.datetime(local.year, local.month, local.day) - dt.timedelta(days=local.weekday())
    elif unit == "day":
        local = dt.datetime(local.year, local.month, local.day)
    elif unit == "hour":
        local = local.replace(minute=0, second=0, microsecond=0)
    elif unit == "minute":
        local = local.replace(second=0, microsecond=0)
    else:
        local = local.replace(microsecond=0)
    return local_to_millis(local, tz)


def whole_units_between(start: int, end: int, unit: str, tz: str | None) -> int:
    """How many whole ``unit``s fit from ``start`` to ``end`` (``end >= start``), in ``tz``'s calendar."""
    n = max(0, int((end - start) // AVERAGE_MS[unit]) - 1)
    while n > 0 and advance_millis(start, n, unit, tz) > end:
        n -= 1
    while advance_millis(start, n + 1, unit, tz) <= end:
        n += 1
    return n


# -- Joda-Time patterns ---------------------------------------------------------

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_LONG_ZONE_NAMES = {
    "UTC": "Coordinated Universal Time",
    "GMT": "Greenwich Mean Time",
    "PST": "Pacific Standard Time",
    "PDT": "Pacific Daylight Time",
    "MST": "Mountain Standard Time",
    "MDT": "Mountain Daylight Time",
    "CST": "Central Standard Time",
    "CDT": "Central Daylight Time",
    "EST": "Eastern Standard Time",
    "EDT": "Eastern Daylight Time",
}
_NORTH_AMERICAN = ("America/", "US/", "PST8PDT", "MST7MDT", "CST6CDT", "EST5EDT")
_NUMERIC_LETTERS = set("CYxwyDdKhHkmseMS")
_PATTERN_LETTERS = set("GCYxwyDdKhHkmseMSEazZ")


def _tokens(algorithm: str, pattern: str) -> list[tuple[str, str | int]]:
    """A Joda pattern as ('letter', count) and ('text', literal) tokens."""
    out: list[tuple[str, str | int]] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "'":
            if i + 1 < n and pattern[i + 1] == "'":
                out.append(("text", "'"))
                i += 2
                continue
            j = i + 1
            text = []
            while j < n:
                if pattern[j] == "'":
                    if j + 1 < n and pattern[j + 1] == "'":
                        text.append("'")
                        j += 2
                        continue
                    break
                text.append(pattern[j])
                j += 1
            out.append(("text", "".join(text)))
            i = j + 1
        elif c.isascii() and c.isalpha():
            if c not in _PATTERN_LETTERS:
                raise EngineError(f"{algorithm}: Illegal pattern component: {c}")
            j = i
            while j < n and pattern[j] == c:
                j += 1
            out.append((c, j - i))
            i = j
        else:
            out.append(("text", c))
            i += 1
    return out


def _pad(value: int, width: int) -> str:
    return ("-" if value < 0 else "") + str(abs(value)).zfill(width)


def _year_text(year: int, count: int) -> str:
    return str(year % 100).zfill(2) if count == 2 else _pad(year, count)


def _zone_name(local: dt.datetime, tz: str | None, long: bool) -> str:
    short = local.tzname() or "UTC"
    if not long:
        return short
    zone_id = tz or "UTC"
    if short in ("UTC", "GMT") or zone_id.startswith(_NORTH_AMERICAN):
        name = _LONG_ZONE_NAMES.get(short)
        if name:
            return name
    raise EngineError(f"Date.format: the long name of time zone '{zone_id}' is not known to the local engine.")


def _offset_text(local: dt.datetime, colon: bool) -> str:
    offset = local.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    h, m = divmod(abs(minutes), 60)
    return f"{sign}{h:02d}:{m:02d}" if colon else f"{sign}{h:02d}{m:02d}"


def format_millis(millis: int, pattern: str | None, tz: str | None) -> str:
    """``millis`` written with a Joda-Time pattern (ISO ``yyyy-MM-dd'T'HH:mm:ss`` without one)."""
    if pattern is None:
        pattern = "yyyy-MM-dd'T'HH:mm:ss"
    local = to_datetime(millis, tz)
    iso = local.isocalendar()
    ms = int(millis - math.floor(millis / 1000) * 1000)
    parts = []
    for kind, value in _tokens("Date.format", pattern):
        if kind == "text":
            parts.append(str(value))
            continue
        n = int(value)
        year = local.year
        if kind == "G":
            parts.append("AD" if year > 0 else "BC")
        elif kind == "C":
            parts.append(_pad(abs(year) // 100, n))
        elif kind in ("y", "Y"):
            parts.append(_year_text(year, n))
        elif kind == "x":
            parts.append(_year_text(iso.year, n))
        elif kind == "w":
            parts.append(_pad(iso.week, n))
        elif kind == "e":
            parts.append(_pad(iso.weekday, n))
        elif kind == "E":
            name = _DAYS[local.weekday()]
            parts.append(name if n >= 4 else name[:3])
        elif kind == "D":
            parts.append(_pad(local.timetuple().tm_yday, n))
        elif kind == "M":
            name = _MONTHS[local.month - 1]
            parts.append(name if n >= 4 else name[:3] if n == 3 else _pad(local.month, n))
        elif kind == "d":
            parts.append(_pad(local.day, n))
        elif kind == "a":
            parts.append("AM" if local.hour < 12 else "PM")
        elif kind == "K":
            parts.append(_pad(local.hour % 12, n))
        elif kind == "h":
            parts.append(_pad(local.hour % 12 or 12, n))
        elif kind == "H":
            parts.append(_pad(local.hour, n))
        elif kind == "k":
            parts.append(_pad(local.hour or 24, n))
        elif kind == "m":
            parts.append(_pad(local.minute, n))
        elif kind == "s":
            parts.append(_pad(local.second, n))
        elif kind == "S":
            parts.append(f"{ms:03d}"[:n].ljust(n, "0"))
        elif kind == "z":
            parts.append(_zone_name(local, tz, n >= 4))
        elif kind == "Z":
            parts.append(_offset_text(local, n == 2) if n < 3 else (tz or "UTC"))
    return "".join(parts)


def _two_digit_year(two: int) -> int:
    """Joda's pivot for ``yy``: the century that puts the year within [now - 80, now + 19]."""
    pivot = dt.datetime.now(dt.UTC).year - 30
    low = pivot - 50
    year = low - low % 100 + two
    return year + 100 if year < low else year


def parse_millis(pattern: str, text: str, tz: str | None) -> int:
    """The instant ``text`` writes with a Joda-Time pattern, read in ``tz`` unless it has an offset."""
    tokens = _tokens("Date.parse", pattern)
    m = re.fullmatch(_parse_regex(tokens), text.strip(), flags=re.IGNORECASE)
    if not m:
        raise EngineError(f'Date.parse: Invalid format: "{text}" does not match the pattern "{pattern}".')
    fields, zone = _parsed_fields(tokens, m)
    local = _fields_datetime(fields, text)
    if zone is None:
        return local_to_millis(local, tz)
    if zone.upper() == "Z":
        return _millis(local.replace(tzinfo=dt.UTC))
    if zone[0] in "+-":
        digits = zone[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + int(digits[2:])
        offset = dt.timezone(dt.timedelta(minutes=minutes if zone[0] == "+" else -minutes))
        return _millis(local.replace(tzinfo=offset))
    return local_to_millis(local, zone)


def _parse_regex(tokens: list) -> str:
    """The regular expression of a tokenised pattern: a group ``t<i>`` per field token."""
    regex = []
    for i, (kind, value) in enumerate(tokens):
        if kind == "text":
            regex.append(re.escape(str(value)))
            continue
        n = int(value)
        group = f"(?P<t{i}>"
        adjacent = (
            i + 1 < len(tokens)
            and tokens[i + 1][0] in _NUMERIC_LETTERS
            and not (tokens[i + 1][0] == "M" and int(tokens[i + 1][1]) >= 3)
        )
        if kind in ("M", "E") and (kind == "E" or n >= 3):
            names = _MONTHS if kind == "M" else _DAYS
            choices = sorted({*names, *(x[:3] for x in names)}, key=len, reverse=True)
            regex.append(group + "|".join(choices) + ")")
        elif kind == "a":
            regex.append(group + "AM|PM)")
        elif kind == "Z":
            regex.append(group + (r"Z|[+-]\d{2}:?\d{2})" if n < 3 else r"[A-Za-z_]+(?:/[A-Za-z_+\-0-9]+)*)"))
        elif kind in ("x", "w", "e", "z", "G", "C"):
            raise EngineError(f"Date.parse: pattern letter '{kind}' is not supported by the local engine.")
        elif kind in ("y", "Y"):
            regex.append(group + (rf"\d{{{n}}})" if adjacent else r"[+-]?\d{1,9})"))
        else:
            regex.append(group + (rf"\d{{{n}}})" if adjacent else r"\d+)"))
    return "".join(regex)


def _parsed_fields(tokens: list, m: re.Match) -> tuple[dict[str, Any], str | None]:
    """The date and time fields a match of :func:`_parse_regex` gives, and its zone text (None if none)."""
    fields = {"year": None, "month": 1, "day": 1, "doy": None, "hour": 0, "minute": 0, "second": 0, "ms": 0}
    pm, half_hour, zone = None, None, None
    simple = {"d": "day", "D": "doy", "m": "minute", "s": "second"}
    for i, (kind, value) in enumerate(tokens):
        if kind == "text":
            continue
        got = m.group(f"t{i}")
        n = int(value)
        if kind in ("y", "Y"):
            fields["year"] = _two_digit_year(int(got)) if n == 2 and len(got) == 2 else int(got)
        elif kind == "M":
            if n >= 3:
                fields["month"] = next(k for k, name in enumerate(_MONTHS, 1) if name.lower().startswith(got.lower()))
            else:
                fields["month"] = int(got)
        elif kind in simple:
            fields[simple[kind]] = int(got)
        elif kind in ("H", "k"):
            fields["hour"] = int(got) % 24
        elif kind in ("K", "h"):
            half_hour = int(got) % 12
        elif kind == "a":
            pm = got.upper() == "PM"
        elif kind == "S":
            fields["ms"] = int((got + "000")[:3])
        elif kind == "Z":
            zone = got
    if fields["year"] is None:
        raise EngineError("Date.parse: patterns without a year are not supported by the local engine.")
    if half_hour is not None:
        fields["hour"] = half_hour + (12 if pm else 0)
    elif pm is not None and fields["hour"] < 12 and pm:
        fields["hour"] += 12
    return fields, zone


def _fields_datetime(fields: dict[str, Any], text: str) -> dt.datetime:
    """The naive local date and time of parsed fields (a day of the year wins over month and day)."""
    try:
        if fields["doy"] is not None:
            day = dt.date(fields["year"], 1, 1) + dt.timedelta(days=fields["doy"] - 1)
        else:
            day = dt.date(fields["year"], fields["month"], fields["day"])
        return dt.datetime(
            day.year, day.month, day.day, fields["hour"], fields["minute"], fields["second"], fields["ms"] * 1000
        )
    except (ValueError, OverflowError) as e:
        raise EngineError(f'Date.parse: Cannot parse "{text}": {e}.') from None


# -- Date algorithms ------------------------------------------------------------


def _int_arg(algorithm: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise EngineError(f"{algorithm}: '{name}' must be an integer, got {value!r}.")
    return int(value)


def _local_date(algorithm: str, year: int, month: int, day: int) -> dt.date:
    try:
        return dt.date(year, month, day)
    except ValueError:
        if not 1 <= month <= 12:
            raise EngineError(f"{algorithm}: Value {month} for monthOfYear must be in the range [1,12]") from None
        last = (dt.date(year + (month == 12), month % 12 + 1, 1) - dt.timedelta(days=1)).day
        raise EngineError(f"{algorithm}: Value {day} for dayOfMonth must be in the range [1,{last}]") from None


@algorithm("Date")
def date(value, timeZone):  # noqa: N803 - Earth Engine's argument names
    """A number is milliseconds since the epoch; a string is ISO 8601, read in ``timeZone``."""
    if isinstance(value, Date):
        return value
    if value is None:
        raise EngineError("Date: Parameter 'value' is required.")
    if not isinstance(value, int | float | str) or isinstance(value, bool):
        raise EngineError(f"Date: Can't convert a value of type {type(value).__name__} to a Date.")
    return Date.coerce(value, timeZone)


@algorithm("Date.advance")
def date_advance(date, delta, unit, timeZone):  # noqa: N803
    return Date(advance_millis(date.millis, delta, unit_name("Date.advance", unit), timeZone))


@algorithm("Date.difference")
def date_difference(date, start, unit):
    """Fractional, in the unit's average length (a year of 365.2425 days)."""
    return (date.millis - start.millis) / AVERAGE_MS[unit_name("Date.difference", unit)]


@algorithm("Date.format")
def date_format(date, format, timeZone):  # noqa: N803
    return format_millis(date.millis, format, timeZone)


@algorithm("Date.fromYMD")
def date_from_ymd(year, month, day, timeZone):  # noqa: N803
    name = "Date.fromYMD"
    day_ = _local_date(name, _int_arg(name, "year", year), _int_arg(name, "month", month), _int_arg(name, "day", day))
    return Date(local_to_millis(dt.datetime(day_.year, day_.month, day_.day), timeZone))


@algorithm("Date.get")
def date_get(date, unit, timeZone):  # noqa: N803
    """'week' is the ISO week of the week-based year (1-53), as Joda's weekOfWeekyear."""
    name = unit_name("Date.get", unit)
    local = to_datetime(date.millis, timeZone)
    if name == "week":
        return local.isocalendar().week
    return getattr(local, name)


@algorithm("Date.getFraction")
def date_get_fraction(date, unit, timeZone):  # noqa: N803
    name = unit_name("Date.getFraction", unit)
    start = floor_millis(date.millis, name, timeZone)
    end = advance_millis(start, 1, name, timeZone)
    return (date.millis - start) / (end - start)


@algorithm("Date.getRange")
def date_get_range(date, unit, timeZone):  # noqa: N803
    name = unit_name("Date.getRange", unit)
    start = floor_millis(date.millis, name, timeZone)
    return DateRange(start, advance_millis(start, 1, name, timeZone))


@algorithm("Date.getRelative")
def date_get_relative(date, unit, inUnit, timeZone):  # noqa: N803
    """Whole ``unit``s elapsed since the start of the ``inUnit`` holding the date (0-based)."""
    name = unit_name("Date.getRelative", unit)
    outer = unit_name("Date.getRelative", inUnit)
    start = floor_millis(date.millis, outer, timeZone)
    return whole_units_between(start, date.millis, name, timeZone)


@algorithm("Date.millis")
def date_millis(date):
    return date.millis


@algorithm("Date.parse")
def date_parse(format, date, timeZone):  # noqa: N803
    return Date(parse_millis(format, date, timeZone))


@algorithm("Date.unitRatio")
def date_unit_ratio(numerator, denominator):
    return AVERAGE_MS[unit_name("Date.unitRatio", numerator)] / AVERAGE_MS[unit_name("Date.unitRatio", denominator)]


@algorithm("Date.update")
def date_update(date, year, month, day, hour, minute, second, timeZone):  # noqa: N803
    """Set wall-clock fields in ``timeZone``; fields left out keep their value (milliseconds too)."""
    name = "Date.update"
    local = to_datetime(date.millis, timeZone).replace(tzinfo=None)
    y = local.year if year is None else _int_arg(name, "year", year)
    mo = local.month if month is None else _int_arg(name, "month", month)
    d = local.day if day is None else _int_arg(name, "day", day)
    h = local.hour if hour is None else _int_arg(name, "hour", hour)
    mi = local.minute if minute is None else _int_arg(name, "minute", minute)
    micro = local.microsecond
    s = local.second
    if second is not None:
        s = math.floor(second)
        micro = round((second - s) * 1000) * 1000
    for field, v, hi in (("hourOfDay", h, 23), ("minuteOfHour", mi, 59), ("secondOfMinute", s, 59)):
        if not 0 <= v <= hi:
            raise EngineError(f"{name}: Value {v} for {field} must be in the range [0,{hi}]")
    day_ = _local_date(name, y, mo, d)
    return Date(local_to_millis(dt.datetime(day_.year, day_.month, day_.day, h, mi, s, micro), timeZone))


# -- DateRange algorithms ---------------------------------------------------------


def _range_end(value, tz: str | None, what: str) -> int:
    if isinstance(value, Date):
        return value.millis
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise EngineError(f"DateRange: '{what}' must be a Date, a number or a string.")
    return Date.coerce(value, tz).millis


@algorithm("DateRange")
def date_range(start, end, timeZone):  # noqa: N803
    """``[start, end)``; without ``end``, the 1-millisecond range starting at ``start``."""
    first = _range_end(start, timeZone, "start")
    last = first + 1 if end is None else _range_end(end, timeZone, "end")
    return DateRange(first, last)


@algorithm("DateRange.contains")
def date_range_contains(dateRange, other):  # noqa: N803
    if isinstance(other, DateRange):
        return dateRange.start <= other.start and other.end <= dateRange.end
    return dateRange.contains(_range_end(other, None, "other"))


@algorithm("DateRange.end")
def date_range_end(dateRange):  # noqa: N803
    return Date(dateRange.end)


@algorithm("DateRange.intersection")
def date_range_intersection(dateRange, other):  # noqa: N803
    start, end = max(dateRange.start, other.start), min(dateRange.end, other.end)
    if start > end:
        raise EngineError(
            "DateRange.intersection: the ranges do not intersect; the local engine does not represent "
            "an empty intersection."
        )
    return DateRange(start, end)


@algorithm("DateRange.intersects")
def date_range_intersects(dateRange, other):  # noqa: N803
    return max(dateRange.start, other.start) < min(dateRange.end, other.end)


@algorithm("DateRange.isEmpty")
def date_range_is_empty(dateRange):  # noqa: N803
    return dateRange.start >= dateRange.end


@algorithm("DateRange.isUnbounded")
def date_range_is_unbounded(dateRange):  # noqa: N803
    return dateRange.start <= MIN_MILLIS and dateRange.end >= MAX_MILLIS


@algorithm("DateRange.start")
def date_range_start(dateRange):  # noqa: N803
    return Date(dateRange.start)


@algorithm("DateRange.union")
def date_range_union(dateRange, other):  # noqa: N803
    """The smallest range covering both (ranges that do not meet are spanned)."""
    return DateRange(min(dateRange.start, other.start), max(dateRange.end, other.end))


@algorithm("DateRange.unbounded")
def date_range_unbounded():
    return DateRange(MIN_MILLIS, MAX_MILLIS)


# the promotion the argument checks apply (see ``types``)
promotion("Date", "Number", "String")(Date.coerce)
