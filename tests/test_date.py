"""ee.Date and ee.DateRange algorithms through the real ``ee`` client.

Expected strings are those printed in Earth Engine's API reference examples
(page named in each test: "ee.Date", "ee.Date.format", ...); the other
expectations are computed independently with Python's datetime and zoneinfo.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

UTC = dt.UTC
# Joda-Time's average lengths (365.2425 days a year; a month is a twelfth of it).
AVG_MS = {
    "year": 365.2425 * 86400e3,
    "month": 365.2425 * 86400e3 / 12,
    "week": 7 * 86400e3,
    "day": 86400e3,
    "hour": 3600e3,
    "minute": 60e3,
    "second": 1e3,
}


def ms(*args, tz: str = "UTC") -> int:
    """Milliseconds of a wall-clock date-time in ``tz``, by Python's datetime."""
    zone = UTC if tz == "UTC" else ZoneInfo(tz)
    return round(dt.datetime(*args, tzinfo=zone).timestamp() * 1000)


# -- construction -------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        # ee.Date
        (0, "1970-01-01T00:00:00"),
        (60 * 1000, "1970-01-01T00:01:00"),
        ("2020", "2020-01-01T00:00:00"),
        ("2017-6-24", "2017-06-24T00:00:00"),
        ("2017-06-24", "2017-06-24T00:00:00"),
        ("2017-6-24T00:14:46", "2017-06-24T00:14:46"),
        ("2017-06-24T23:59:59", "2017-06-24T23:59:59"),
    ],
)
def test_date_constructor_documented(ee_local, value, expected):
    assert ee_local.Date(value).format().getInfo() == expected


def test_date_constructor_time_zone_documented(ee_local):
    # ee.Date: ee.Date('2020', 'US/Mountain') -> 2020-01-01T07:00:00 (in UTC).
    assert ee_local.Date("2020", "US/Mountain").format().getInfo() == "2020-01-01T07:00:00"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1996-001", ms(1996, 1, 1)),
        ("1996-060", ms(1996, 2, 29)),
        ("1996-01-01T08:00", ms(1996, 1, 1, 8)),
        ("2021-4-30T07:15:31.24", ms(2021, 4, 30, 7, 15, 31, 240000)),
        ("2020-06-01T12:00:00Z", ms(2020, 6, 1, 12)),
        ("2020-06-01T12:00:00+02:00", ms(2020, 6, 1, 10)),
        ("2020-W01-1", ms(2019, 12, 30)),
    ],
)
def test_date_iso_forms(ee_local, text, expected):
    # The 'value' argument: "string such as '1996-01-01' or '1996-001' or '1996-01-01T08:00'".
    assert ee_local.Date(text).getInfo() == {"type": "Date", "value": expected}


def test_date_get_info_shape(ee_local):
    # ee.Date.getInfo: a dictionary with "type" and "value" (milliseconds since the epoch).
    info = ee_local.Date("2021-4-30").getInfo()
    assert info == {"type": "Date", "value": ms(2021, 4, 30)}


@pytest.mark.parametrize("text", ["2021-13-01", "2021-02-30", "yesterday", "2021/01/01"])
def test_date_bad_strings(ee_local, text):
    with pytest.raises(ee_local.EEException, match="Date"):
        ee_local.Date(text).getInfo()


def test_from_ymd(ee_local):
    # ee.Date.fromYMD, with and without a time zone.
    assert ee_local.Date.fromYMD(2021, 4, 30).millis().getInfo() == ms(2021, 4, 30)
    la = ee_local.Date.fromYMD(2021, 4, 30, "America/Los_Angeles").millis().getInfo()
    assert la == ms(2021, 4, 30, tz="America/Los_Angeles")


def test_millis(ee_local):
    # ee.Date.millis: milliseconds since the Unix epoch.
    now = dt.datetime(2024, 2, 29, 13, 5, 7, 123000, tzinfo=UTC)
    assert ee_local.Date(now).millis().getInfo() == round(now.timestamp() * 1000)


# -- format ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "tz, expected",
    [
        # ee.Date.format: ee.Date('2020-08-18') in various zones, ISO format.
        ("GMT", "2020-08-18T00:00:00"),
        ("Etc/GMT", "2020-08-18T00:00:00"),
        ("Etc/GMT+0", "2020-08-18T00:00:00"),
        ("Zulu", "2020-08-18T00:00:00"),
        ("UTC", "2020-08-18T00:00:00"),
        ("America/Los_Angeles", "2020-08-17T17:00:00"),
        ("US/Pacific", "2020-08-17T17:00:00"),
        # The reference prints 17:00 for Etc/GMT+8 too, but that zone is a fixed UTC-8
        # without daylight saving (tz database; Joda-Time uses the same data): 16:00.
        ("Etc/GMT+8", "2020-08-17T16:00:00"),
        ("PST8PDT", "2020-08-17T17:00:00"),
        ("Australia/Tasmania", "2020-08-18T10:00:00"),
        ("Etc/GMT-10", "2020-08-18T10:00:00"),
    ],
)
def test_format_time_zones_documented(ee_local, tz, expected):
    assert ee_local.Date("2020-08-18").format(None, tz).getInfo() == expected


@pytest.mark.parametrize(
    "pattern, tz, expected",
    [
        # ee.Date.format: ee.Date('1975-07-23T21:13:59') with Joda-Time patterns.
        ("YYYY GG", None, "1975 AD"),
        ("CC YY", None, "19 75"),
        ("xxxx ww", None, "1975 30"),
        ("yy DDD", None, "75 204"),
        ("MM dd", None, "07 23"),
        ("e E", None, "3 Wed"),
        ("e EEEEEEEE", None, "3 Wednesday"),
        ("a K h", None, "PM 9 9"),
        ("a KK hh", None, "PM 09 09"),
        ("H k m s S", None, "21 21 13 59 0"),
        ("HH kk mm ss SS", None, "21 21 13 59 00"),
        ("z", None, "UTC"),
        ("zzzz", None, "Coordinated Universal Time"),
        ("z", "PST8PDT", "PDT"),
        ("zzzz", "PST8PDT", "Pacific Daylight Time"),
        ("Z", None, "+0000"),
        ("ZZ", None, "+00:00"),
        ("ZZZ", None, "UTC"),
        ("Z", "PST8PDT", "-0700"),
        ("ZZ", "PST8PDT", "-07:00"),
        ("ZZZ", "PST8PDT", "PST8PDT"),
        ("YY 'yada' MM", None, "75 yada 07"),
        ("YY ''MM'' dd", None, "75 '07' 23"),
    ],
)
def test_format_patterns_documented(ee_local, pattern, tz, expected):
    date = ee_local.Date("1975-07-23T21:13:59")
    got = date.format(pattern) if tz is None else date.format(pattern, tz)
    assert got.getInfo() == expected


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("yyyy-MM-dd", "2021-04-30"),
        ("yyyy-MM-dd HH:mm:ss", "2021-04-30 07:15:31"),
        ("DDD", "120"),
        ("MMM", "Apr"),
        ("MMMM d, yyyy", "April 30, 2021"),
        ("HH:mm:ss.SSS", "07:15:31.240"),
        ("YYYY-MM-DD", "2021-04-120"),
    ],
)
def test_format_common_patterns(ee_local, pattern, expected):
    assert ee_local.Date("2021-4-30T07:15:31.24").format(pattern).getInfo() == expected


def test_format_illegal_letter(ee_local):
    with pytest.raises(ee_local.EEException, match="Illegal pattern component"):
        ee_local.Date(0).format("yyyy-q").getInfo()


# -- parse ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, text",
    [
        # ee.Date.parse: every example reads 30 April 2021.
        ("YYYY MM dd", "2021 4 30"),
        ("YYYY-MM-dd", "2021-4-30"),
        ("YYYY/MM/dd", "2021/4/30"),
        ("MM/dd/YY", "4/30/21"),
        ("MMM. dd, YYYY", "Apr. 30, 2021"),
        ("YYYY-MM-dd HH:mm:ss", "2021-4-30 00:00:00"),
    ],
)
def test_parse_documented(ee_local, pattern, text):
    assert ee_local.Date.parse(pattern, text).millis().getInfo() == ms(2021, 4, 30)


@pytest.mark.parametrize(
    "pattern, text, tz, expected",
    [
        ("yyyyMMdd", "20210430", None, ms(2021, 4, 30)),
        ("yyyy-DDD HH:mm", "2020-366 23:59", None, ms(2020, 12, 31, 23, 59)),
        ("dd MMMM yyyy hh:mm a", "05 March 2019 07:30 PM", None, ms(2019, 3, 5, 19, 30)),
        ("yyyy-MM-dd HH:mm", "2021-07-01 12:00", "America/Los_Angeles", ms(2021, 7, 1, 12, tz="America/Los_Angeles")),
        ("yyyy-MM-dd HH:mm Z", "2021-07-01 12:00 +0200", "America/Los_Angeles", ms(2021, 7, 1, 10)),
        ("yyyy-MM-dd'T'HH:mm:ss.SSS", "2021-07-01T12:00:00.5", None, ms(2021, 7, 1, 12, 0, 0, 500000)),
    ],
)
def test_parse_more(ee_local, pattern, text, tz, expected):
    got = ee_local.Date.parse(pattern, text) if tz is None else ee_local.Date.parse(pattern, text, tz)
    assert got.millis().getInfo() == expected


def test_parse_mismatch(ee_local):
    with pytest.raises(ee_local.EEException, match="Date.parse"):
        ee_local.Date.parse("yyyy-MM-dd", "30/04/2021").getInfo()


def test_format_parse_round_trip(ee_local):
    pattern = "yyyy-MM-dd HH:mm:ss.SSS"
    date = ee_local.Date("2003-11-09T16:42:05.321")
    assert ee_local.Date.parse(pattern, date.format(pattern)).millis().getInfo() == ms(2003, 11, 9, 16, 42, 5, 321000)


# -- arithmetic -------------------------------------------------------------------


@pytest.mark.parametrize(
    "delta, unit, expected",
    [
        # ee.Date.advance: from 2020-01-01T00:00 UTC.
        (1, "week", ms(2020, 1, 8)),
        (2, "years", ms(2022, 1, 1)),
        (-1, "second", ms(2019, 12, 31, 23, 59, 59)),
        (1, "month", ms(2020, 2, 1)),
        (36, "hour", ms(2020, 1, 2, 12)),
        (90, "minute", ms(2020, 1, 1, 1, 30)),
        (1.5, "day", ms(2020, 1, 2, 12)),
        (0.25, "second", ms(2020, 1, 1) + 250),
    ],
)
def test_advance(ee_local, delta, unit, expected):
    assert ee_local.Date("2020-01-01T00:00", "UTC").advance(delta, unit).millis().getInfo() == expected


def test_advance_month_end_clamps(ee_local):
    # Joda's plusMonths keeps the day within the new month.
    assert ee_local.Date("2020-01-31").advance(1, "month").millis().getInfo() == ms(2020, 2, 29)
    assert ee_local.Date("2020-02-29").advance(1, "year").millis().getInfo() == ms(2021, 2, 28)


def test_advance_days_keep_wall_clock_across_dst(ee_local):
    # In a zone, a calendar day across the spring DST change is 23 hours long.
    start = ee_local.Date("2021-03-13T12:00", "America/New_York")
    got = start.advance(1, "day", "America/New_York").millis().getInfo()
    assert got == ms(2021, 3, 14, 12, tz="America/New_York")
    assert got - ms(2021, 3, 13, 12, tz="America/New_York") == 23 * 3600 * 1000


def test_advance_bad_unit(ee_local):
    with pytest.raises(ee_local.EEException, match="Date.advance"):
        ee_local.Date(0).advance(1, "fortnight").getInfo()


@pytest.mark.parametrize(
    "a, b, unit",
    [
        # ee.Date.difference: 2020-01-15 relative to 2020-01-01 in days, and back in weeks.
        ((2020, 1, 15), (2020, 1, 1), "day"),
        ((2020, 1, 1), (2020, 1, 15), "week"),
        ((2021, 7, 1), (2020, 1, 1), "year"),
        ((2021, 7, 1), (2020, 1, 1), "month"),
        ((2020, 1, 1, 6), (2020, 1, 1), "hour"),
    ],
)
def test_difference(ee_local, a, b, unit):
    got = ee_local.Date(dt.datetime(*a)).difference(ee_local.Date(dt.datetime(*b)), unit).getInfo()
    assert got == pytest.approx((ms(*a) - ms(*b)) / AVG_MS[unit])


def test_difference_documented_days(ee_local):
    assert ee_local.Date("2020-01-15").difference(ee_local.Date("2020-01-01"), "days").getInfo() == 14
    assert ee_local.Date("2020-01-01").difference(ee_local.Date("2020-01-15"), "weeks").getInfo() == pytest.approx(-2)


@pytest.mark.parametrize(
    "num, den, expected",
    [
        # ee.Date.unitRatio: minutes in a day, seconds in a year, years in a month, hours in a week.
        ("day", "minute", 1440),
        ("year", "second", 365.2425 * 86400),
        ("month", "year", 1 / 12),
        ("week", "hour", 168),
    ],
)
def test_unit_ratio(ee_local, num, den, expected):
    assert ee_local.Date.unitRatio(num, den).getInfo() == pytest.approx(expected)


# -- fields ---------------------------------------------------------------------

SAMPLE = dt.datetime(2021, 4, 30, 7, 15, 31, 240000)  # '2021-4-30T07:15:31.24' in the reference examples


@pytest.mark.parametrize(
    "unit, expected",
    [
        # ee.Date.get: 'week' is the ISO week (1-53).
        ("year", 2021),
        ("month", 4),
        ("week", SAMPLE.isocalendar().week),
        ("day", 30),
        ("hour", 7),
        ("minute", 15),
        ("second", 31),
    ],
)
def test_get(ee_local, unit, expected):
    assert ee_local.Date("2021-4-30T07:15:31").get(unit).getInfo() == expected


def test_get_in_time_zone(ee_local):
    # 2021-04-30T03:00 UTC is 29 April, 20:00 in Los Angeles.
    date = ee_local.Date("2021-04-30T03:00")
    local = dt.datetime(2021, 4, 30, 3, tzinfo=UTC).astimezone(ZoneInfo("America/Los_Angeles"))
    assert date.get("day", "America/Los_Angeles").getInfo() == local.day
    assert date.get("hour", "America/Los_Angeles").getInfo() == local.hour


def _unit_bounds(unit: str) -> tuple[dt.datetime, dt.datetime]:
    s = SAMPLE
    if unit == "year":
        return dt.datetime(s.year, 1, 1), dt.datetime(s.year + 1, 1, 1)
    if unit == "month":
        return dt.datetime(s.year, s.month, 1), dt.datetime(s.year, s.month + 1, 1)
    if unit == "week":
        monday = dt.datetime(s.year, s.month, s.day) - dt.timedelta(days=s.weekday())
        return monday, monday + dt.timedelta(days=7)
    if unit == "day":
        day = dt.datetime(s.year, s.month, s.day)
        return day, day + dt.timedelta(days=1)
    if unit == "hour":
        hour = s.replace(minute=0, second=0, microsecond=0)
        return hour, hour + dt.timedelta(hours=1)
    if unit == "minute":
        minute = s.replace(second=0, microsecond=0)
        return minute, minute + dt.timedelta(minutes=1)
    second = s.replace(microsecond=0)
    return second, second + dt.timedelta(seconds=1)


def _ms(value: dt.datetime) -> int:
    return round(value.replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize("unit", ["year", "month", "week", "day", "hour", "minute", "second"])
def test_get_fraction_and_range(ee_local, unit):
    # ee.Date.getFraction and ee.Date.getRange on '2021-4-30T07:15:31.24'.
    date = ee_local.Date("2021-4-30T07:15:31.24")
    start, end = _unit_bounds(unit)
    expected = (_ms(SAMPLE) - _ms(start)) / (_ms(end) - _ms(start))
    assert date.getFraction(unit).getInfo() == pytest.approx(expected)
    assert date.getRange(unit).getInfo() == {"type": "DateRange", "dates": [_ms(start), _ms(end)]}


def test_get_range_documented_year(ee_local):
    # ee.Date.getRange: "Date('2013-3-15').getRange('year') returns DateRange('2013-1-1', '2014-1-1')".
    assert ee_local.Date("2013-3-15").getRange("year").getInfo() == {
        "type": "DateRange",
        "dates": [ms(2013, 1, 1), ms(2014, 1, 1)],
    }


def test_get_range_in_time_zone(ee_local):
    got = ee_local.Date("2021-04-30T03:00").getRange("day", "America/Los_Angeles").getInfo()
    assert got["dates"] == [ms(2021, 4, 29, tz="America/Los_Angeles"), ms(2021, 4, 30, tz="America/Los_Angeles")]


@pytest.mark.parametrize(
    "unit, in_unit, expected",
    [
        # ee.Date.getRelative on '2021-4-30T07:15:31.24' (0-based).
        ("month", "year", 3),
        ("day", "year", SAMPLE.timetuple().tm_yday - 1),
        ("day", "month", 29),
        ("minute", "day", 7 * 60 + 15),
        ("second", "minute", 31),
        ("hour", "day", 7),
        ("day", "week", SAMPLE.weekday()),
        ("year", "month", 0),
    ],
)
def test_get_relative(ee_local, unit, in_unit, expected):
    assert ee_local.Date("2021-4-30T07:15:31.24").getRelative(unit, in_unit).getInfo() == expected


def test_update_documented(ee_local):
    # ee.Date.update: year and minute of '2021-4-30T07:15:31.24' set to 2010 and 59.
    got = ee_local.Date("2021-4-30T07:15:31.24").update(year=2010, minute=59).millis().getInfo()
    assert got == ms(2010, 4, 30, 7, 59, 31, 240000)


def test_update_in_time_zone_and_fractional_second(ee_local):
    got = ee_local.Date("2021-01-15T12:00").update(hour=9, second=1.5, timeZone="Asia/Tokyo").millis().getInfo()
    local = dt.datetime(2021, 1, 15, 12, tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo"))
    expected = local.replace(hour=9, second=1, microsecond=500000)
    assert got == round(expected.timestamp() * 1000)


def test_update_invalid_day(ee_local):
    with pytest.raises(ee_local.EEException, match="dayOfMonth"):
        ee_local.Date("2021-02-01").update(day=30).getInfo()


# -- DateRange ------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, expected",
    [
        # ee.DateRange
        (lambda ee: ee.DateRange("2017-06-24", "2017-07-24"), [ms(2017, 6, 24), ms(2017, 7, 24)]),
        (
            lambda ee: ee.DateRange("2017-06-24", "2017-07-24", "America/Los_Angeles"),
            [ms(2017, 6, 24, tz="America/Los_Angeles"), ms(2017, 7, 24, tz="America/Los_Angeles")],
        ),
        (
            lambda ee: ee.DateRange("2017-06-24T07:00:00", "2017-07-24T07:00:00", "America/Los_Angeles"),
            [ms(2017, 6, 24, 7, tz="America/Los_Angeles"), ms(2017, 7, 24, 7, tz="America/Los_Angeles")],
        ),
        (lambda ee: ee.DateRange("2017-06-24"), [ms(2017, 6, 24), ms(2017, 6, 24) + 1]),
        (lambda ee: ee.DateRange(ee.Date("2017-06-24"), ee.Date("2017-07-24")), [ms(2017, 6, 24), ms(2017, 7, 24)]),
        (
            lambda ee: ee.DateRange(
                ee.Date("2017-06-24T07:00:00", "UTC"), ee.Date("2017-07-24T07:00:00", "America/Los_Angeles")
            ),
            [ms(2017, 6, 24, 7), ms(2017, 7, 24, 7, tz="America/Los_Angeles")],
        ),
        (lambda ee: ee.DateRange(1498262400000, 1500854400000), [ms(2017, 6, 24), ms(2017, 7, 24)]),
    ],
)
def test_date_range_constructor(ee_local, make, expected):
    assert make(ee_local).getInfo() == {"type": "DateRange", "dates": expected}


def test_date_range_start_end(ee_local):
    # ee.DateRange.start / ee.DateRange.end
    r = ee_local.DateRange("2017-06-24", "2017-07-24")
    assert r.start().getInfo() == {"type": "Date", "value": ms(2017, 6, 24)}
    assert r.end().getInfo() == {"type": "Date", "value": ms(2017, 7, 24)}


def test_date_range_contains(ee_local):
    # ee.DateRange.contains: a Date or a DateRange within this one.
    r1 = ee_local.DateRange("2017-06-24", "2017-07-24")
    assert r1.contains(ee_local.DateRange("2017-06-30", "2017-07-10")).getInfo() is True
    assert r1.contains(ee_local.DateRange("2010-06-24", "2020-07-24")).getInfo() is False
    assert r1.contains(ee_local.Date("2017-06-24")).getInfo() is True
    assert r1.contains(ee_local.Date("2017-07-24")).getInfo() is False  # the end is exclusive


def test_date_range_intersects(ee_local):
    # ee.DateRange.intersects
    r1 = ee_local.DateRange("2017-06-24", "2017-07-24")
    assert r1.intersects(ee_local.DateRange("2017-06-30", "2018-07-10")).getInfo() is True
    assert r1.intersects(ee_local.DateRange("1970-06-24", "1971-07-24")).getInfo() is False
    assert r1.intersects(ee_local.DateRange("2017-06-25", "2017-07-25")).getInfo() is True
    assert r1.intersects(ee_local.DateRange("2017-07-24", "2017-08-01")).getInfo() is False


def test_date_range_intersection(ee_local):
    # ee.DateRange.intersection
    got = ee_local.DateRange("2017-06-24", "2017-07-24").intersection(ee_local.DateRange("2017-07-01", "2018-08-24"))
    assert got.getInfo() == {"type": "DateRange", "dates": [ms(2017, 7, 1), ms(2017, 7, 24)]}


def test_date_range_union(ee_local):
    # ee.DateRange.union: overlapping ranges, and ranges that do not overlap (spanned).
    r1 = ee_local.DateRange("2017-06-24", "2017-07-24")
    got = r1.union(ee_local.DateRange("2017-06-30", "2018-07-10")).getInfo()
    assert got["dates"] == [ms(2017, 6, 24), ms(2018, 7, 10)]
    got = r1.union(ee_local.DateRange("1970-06-24", "1971-07-24")).getInfo()
    assert got["dates"] == [ms(1970, 6, 24), ms(2017, 7, 24)]


@pytest.mark.parametrize(
    "start, end, expected",
    [
        # ee.DateRange.isEmpty
        ("2017-06-24", "2017-07-24", False),
        ("2017-07-24", "2017-06-24", True),
        ("2017-07-24", "2017-07-24", True),
    ],
)
def test_date_range_is_empty(ee_local, start, end, expected):
    assert ee_local.DateRange(start, end).isEmpty().getInfo() is expected


def test_date_range_unbounded(ee_local):
    # ee.DateRange.unbounded / isUnbounded
    assert ee_local.DateRange.unbounded().isUnbounded().getInfo() is True
    assert ee_local.DateRange("2017-06-24", "2017-07-24").isUnbounded().getInfo() is False
    assert ee_local.DateRange.unbounded().contains(ee_local.Date("2017-06-24")).getInfo() is True
