"""String algorithms through the real ``ee`` client.

Expected values come from Earth Engine's API reference pages (named in
comments: "ee.String.split" and so on) or from Python/Java string semantics
computed independently (UTF-16 lengths via ``str.encode('utf-16-le')``).
"""

from __future__ import annotations

import json

import pytest


# ee.String.split
@pytest.mark.parametrize(
    ("text", "regex", "flags", "want"),
    [
        ("aBAbcD", "Ab", "", ["aB", "cD"]),
        ("aBAbcD", "ab", "i", ["", "", "cD"]),
        ("aBAbcD", "[bc]", "i", ["a", "A", "", "D"]),
        ("aBAbcD", "(BA|c)", "", ["a", "b", "D"]),
        ("a,b,cdee f,g", "", "", ["a", ",", "b", ",", "c", "d", "e", "e", " ", "f", ",", "g"]),
        ("a,b,cdee f,g", " ", "", ["a,b,cdee", "f,g"]),
        ("a,b,cdee f,g", "[[:space:]]", "", ["a,b,cdee", "f,g"]),
        ("a,b,cdee f,g", ",", "", ["a", "b", "cdee f", "g"]),
        ("a,b,cdee f,g", "ee", "", ["a,b,cd", " f,g"]),
        ("a,b,cdee f,g", "[a-z]", "", ["", ",", ",", "", "", "", " ", ","]),
        ("a,b,cdee f,g", "[^a-z]", "", ["a", "b", "cdee", "f", "g"]),
        ("a.b*c?d", "\\.", "", ["a", "b*c?d"]),
        ("a.b*c?d", "[*]", "", ["a.b", "c?d"]),
        ("a.b*c?d", "[?]", "", ["a.b*c", "d"]),
        ("no-separator", ",", "", ["no-separator"]),
    ],
)
def test_split(ee_local, text, regex, flags, want):
    assert ee_local.String(text).split(regex, flags).getInfo() == want


# ee.String.match
@pytest.mark.parametrize(
    ("regex", "flags", "want"),
    [
        ("", "", [""]),
        ("ab", "g", ["ab"]),
        ("ab", "i", ["AB"]),
        ("AB", "ig", ["AB", "ab"]),
        ("[a-z]+[0-9]+", "", ["abc123"]),
        ("\\d{2}", "", ["12"]),
        ("abc[^0-9]", "i", ["ABCa"]),
        ("xyz", "", []),
    ],
)
def test_match(ee_local, regex, flags, want):
    assert ee_local.String("ABCabc123").match(regex, flags).getInfo() == want


# ee.String.replace
@pytest.mark.parametrize(
    ("text", "regex", "replacement", "flags", "want"),
    [
        ("abc-abc", "abc", "X", "", "X-abc"),
        ("abc-abc", "abc", "X", "g", "X-X"),
        ("abc-abc", "abc", "", "g", "-"),
        ("aBc-Abc", "abc", "Z", "i", "Z-Abc"),
        ("aBc-Abc", "abc", "Z", "ig", "Z-Z"),
        ("2024-05-01", "(\\d+)-(\\d+)-(\\d+)", "$3/$2/$1", "", "01/05/2024"),
        ("price 5", "(\\d)", "\\$$1", "", "price $5"),
    ],
)
def test_replace(ee_local, text, regex, replacement, flags, want):
    assert ee_local.String(text).replace(regex, replacement, flags).getInfo() == want


# ee.String.slice
@pytest.mark.parametrize(
    ("text", "start", "end", "want"),
    [
        ("", 0, None, ""),
        ("", -1, None, ""),
        ("abcdefghijklmnopqrstuvwxyz", 0, None, "abcdefghijklmnopqrstuvwxyz"),
        ("abcdefghijklmnopqrstuvwxyz", 24, None, "yz"),
        ("abcdefghijklmnopqrstuvwxyz", -3, None, "xyz"),
        ("abcdefghijklmnopqrstuvwxyz", 3, 3, ""),
        ("abcdefghijklmnopqrstuvwxyz", 2, 3, "c"),
        ("abcdefghijklmnopqrstuvwxyz", -4, 25, "wxy"),
        ("abc", 1, 100, "bc"),
    ],
)
def test_slice(ee_local, text, start, end, want):
    s = ee_local.String(text)
    got = s.slice(start) if end is None else s.slice(start, end)
    assert got.getInfo() == want


def test_constructor_and_length(ee_local):
    # ee.String: plain, emoji and empty strings; length counts UTF-16 units as Java does.
    ee = ee_local
    assert ee.String("I am a string").getInfo() == "I am a string"
    emoji = "🧲⚡️👀"
    assert ee.String(emoji).getInfo() == emoji
    assert ee.String("").length().getInfo() == 0
    assert ee.String(emoji).length().getInfo() == len(emoji.encode("utf-16-le")) // 2


@pytest.mark.parametrize(("value", "want"), [(5, "5"), (-12, "-12"), (2.5, "2.5"), (0.1, "0.1")])
def test_string_algorithm_converts_numbers(ee_local, value, want):
    assert ee_local.String(ee_local.Number(value)).getInfo() == want


def test_string_algorithm_converts_computed_doubles_as_java(ee_local):
    # A double that happens to be integral prints with '.0' (Java's Double.toString).
    assert ee_local.String(ee_local.Number(5).divide(2).multiply(2)).getInfo() == "5.0"


def test_cat_compare_equals(ee_local):
    ee = ee_local
    assert ee.String("abc").cat("def").getInfo() == "abcdef"
    assert ee.String("abc").compareTo("abd").getInfo() == -1
    assert ee.String("abd").compareTo("abc").getInfo() == 1
    assert ee.String("abc").compareTo("abc").getInfo() == 0
    assert ee.String("abc").equals("abc").getInfo() is True
    assert ee.String("abc").equals("abd").getInfo() is False
    assert ee.String("1").equals(ee.Number(1)).getInfo() is False


def test_index_rindex(ee_local):
    ee = ee_local
    assert ee.String("abcabc").index("bc").getInfo() == "abcabc".find("bc")
    assert ee.String("abcabc").rindex("bc").getInfo() == "abcabc".rfind("bc")
    assert ee.String("abcabc").index("x").getInfo() == -1
    assert ee.String("abcabc").rindex("x").getInfo() == -1
    # Indices are UTF-16 positions: the magnet emoji takes two units.
    assert ee.String("🧲abc").index("a").getInfo() == 2


def test_case_and_trim(ee_local):
    ee = ee_local
    assert ee.String("Mining Area").toLowerCase().getInfo() == "mining area"
    assert ee.String("Mining Area").toUpperCase().getInfo() == "MINING AREA"
    assert ee.String("  \t padded \n ").trim().getInfo() == "padded"


def test_encode_json(ee_local):
    # ee.String.encodeJSON
    ee = ee_local
    assert ee.String.encodeJSON(ee.String("earth")).getInfo() == '"earth"'
    assert ee.String.encodeJSON(ee.Number(1)).getInfo() == "1"
    assert ee.String.encodeJSON(ee.List([1, 2, 3])).getInfo() == "[1,2,3]"
    got = ee.String.encodeJSON({"lc_name": "grassland", "lc_class": 3}).getInfo()
    assert got == '{"lc_class":3,"lc_name":"grassland"}'


def test_decode_json(ee_local):
    # ee.String.decodeJSON: '{"a": "abc", "b": 1}'
    got = ee_local.String('{"a": "abc", "b": 1}').decodeJSON().getInfo()
    assert got == json.loads('{"a": "abc", "b": 1}')


def test_decode_json_error(ee_local):
    with pytest.raises(ee_local.EEException, match="String.decodeJSON: Invalid JSON"):
        ee_local.String("{not json").decodeJSON().getInfo()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ee: ee.String("abc").match("(?=a)"), "look-around"),
        (lambda ee: ee.String("abc").match("(a)\\1"), "back-reference"),
        (lambda ee: ee.String("abc").match("[a-"), "String.match: Invalid regular expression"),
        (lambda ee: ee.String("abc").match("a", "x"), "Invalid flags"),
        (lambda ee: ee.String("abc").replace("a", "$2"), "no group 2"),
    ],
)
def test_regex_errors(ee_local, call, message):
    with pytest.raises(ee_local.EEException, match=message):
        call(ee_local).getInfo()


def test_re2_semantics(ee_local):
    ee = ee_local
    # RE2's \d is ASCII only, and $ matches only at the very end of the text.
    assert ee.String("1\u0661").match("\\d+", "g").getInfo() == ["1"]
    assert ee.String("ab\n").match("b$").getInfo() == []


def test_client_promotes_numbers_through_the_string_algorithm(ee_local):
    """The client wraps a Number where a String is expected in the String algorithm."""
    ee = ee_local
    assert ee.ApiFunction.call_("String.length", ee.Number(12).add(1)).getInfo() == 2


def test_string_algorithm_refuses_unsupported_inputs(ee_local):
    ee = ee_local
    with pytest.raises(ee.EEException, match="String: Cannot convert a List"):
        ee.String(ee.List([1, 2])).getInfo()


def test_every_string_algorithm_is_covered():
    from gee_mining.local.core.registry import implemented

    covered = {
        "String",
        "String.cat",
        "String.compareTo",
        "String.decodeJSON",
        "String.encodeJSON",
        "String.equals",
        "String.index",
        "String.length",
        "String.match",
        "String.replace",
        "String.rindex",
        "String.slice",
        "String.split",
        "String.toLowerCase",
        "String.toUpperCase",
        "String.trim",
    }
    registered = {name for name in implemented() if name == "String" or name.startswith("String.")}
    assert registered - covered == set()
