"""Earth Engine string algorithms (``String`` and ``String.*``).

Earth Engine's service is Java, and its regular expressions are RE2's dialect
(``ee.String('a b').split('[[:space:]]')`` works, documented), so:

- lengths and indices count UTF-16 code units, as Java strings do;
- patterns run on RE2 itself (the ``google-re2`` bindings: POSIX classes,
  ASCII-only ``\\d \\w \\s \\b``, ``$`` only at the end of the text), in time
  linear in the text: no pattern backtracks catastrophically (``^(a+)+$``);
  constructs RE2 refuses (look-around, back-references) are refused with a
  word that says why;
- ``split`` follows Java's ``split``: captured groups are not returned, a
  zero-width match at the start adds no empty string, trailing empty strings
  are dropped;
- replacements use RE2/J's ``$1`` / ``${name}`` group references and ``\\``
  escapes.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import re2

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import Column, algorithm, per_element, vectorised
from gee_mining.local.core.types import ee_type_of
from gee_mining.local.values.number import number_to_string

# -- UTF-16 indexing -----------------------------------------------------------


def _utf16(s: str) -> bytes:
    return s.encode("utf-16-le", "surrogatepass")


def _from_utf16(b: bytes) -> str:
    return b.decode("utf-16-le", "surrogatepass")


def utf16_length(s: str) -> int:
    """Java's ``String.length()``: characters beyond U+FFFF count twice."""
    return len(_utf16(s)) // 2


def _utf16_index(s: str, codepoint_index: int) -> int:
    return utf16_length(s[:codepoint_index])


# -- RE2 patterns ----------------------------------------------------------------

# RE2's POSIX classes (RE2's syntax page); the engine knows no others.
_POSIX_CLASSES = frozenset(
    ("alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct", "space", "upper", "word")
    + ("xdigit",)
)


def _unsupported(name: str, pattern: str, what: str) -> EngineError:
    return EngineError(f"{name}: Invalid regular expression '{pattern}': {what}.")


def check_re2(name: str, pattern: str) -> None:
    """Refuse what RE2 refuses with a word that says why (look-around, back-references), and what the
    local engine does not take (``\\p``, ``\\P``, ``\\C``, ``\\Z``); RE2 itself refuses the rest."""
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise _unsupported(name, pattern, "trailing backslash")
            e = pattern[i + 1]
            if e.isdigit() and e != "0":
                raise _unsupported(name, pattern, f"back-reference \\{e} is not supported (RE2)")
            if e in "pPCZ":
                raise _unsupported(name, pattern, f"\\{e} is not supported by the local engine")
            i += 2
        elif c == "[":
            i = _check_class(name, pattern, i)
        elif pattern.startswith(("(?=", "(?!", "(?<=", "(?<!"), i):
            raise _unsupported(name, pattern, "look-around is not supported (RE2)")
        else:
            i += 1


def _check_class(name: str, pattern: str, start: int) -> int:
    """Check the bracket expression at ``start``; returns the index after it."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    first = True
    while i < len(pattern):
        c = pattern[i]
        if c == "]" and not first:
            return i + 1
        first = False
        if pattern.startswith("[:", i):
            end = pattern.find(":]", i + 2)
            if end < 0:
                raise _unsupported(name, pattern, "unterminated POSIX class")
            if pattern[i + 2 : end] not in _POSIX_CLASSES:
                raise _unsupported(name, pattern, f"unknown POSIX class [:{pattern[i + 2 : end]}:]")
            i = end + 2
        elif c == "\\":
            if i + 1 >= len(pattern):
                raise _unsupported(name, pattern, "trailing backslash")
            if pattern[i + 1] in "DWSpP":
                raise _unsupported(
                    name, pattern, f"\\{pattern[i + 1]} inside a class is not supported by the local engine"
                )
            i += 2
        else:
            i += 1
    raise _unsupported(name, pattern, "missing closing ]")


def compile_regex(name: str, regex: str, flags: str | None) -> tuple[Any, bool]:
    """The compiled pattern (RE2: linear time in the text, whatever the pattern, so no pattern can hold
    the engine; Earth Engine's own dialect) and whether the 'g' flag was given."""
    flags = flags or ""
    bad = set(flags) - {"g", "i"}
    if bad:
        raise EngineError(f"{name}: Invalid flags '{flags}'. Supported flags are 'g' (global) and 'i' (ignore case).")
    check_re2(name, regex)
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = "i" not in flags
    try:
        compiled = re2.compile(regex, options)
    except re2.error as err:
        what = err.args[0].decode(errors="replace") if err.args and isinstance(err.args[0], bytes) else str(err)
        raise EngineError(f"{name}: Invalid regular expression '{regex}': {what}.") from None
    return compiled, "g" in flags


_PATTERN_CHARS = frozenset(".^$*+?{}[]\\|()")


@functools.lru_cache(maxsize=1024)
def literal_selector(selector: str) -> bool:
    """Whether a selector holds no pattern character: it then matches exactly the name equal to it (a band
    name such as "B8A" is compared, not run through RE2 against each band)."""
    return _PATTERN_CHARS.isdisjoint(selector)


@functools.lru_cache(maxsize=1024)
def selector_pattern(selector: str) -> Any:
    """A band, property or key selector as an RE2 pattern (matched in full, in linear time), or None when
    it is not a valid pattern (then it can only name a band, property or key exactly)."""
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(selector, options)
    except re2.error:
        return None


# -- algorithms ------------------------------------------------------------------


def _str(name: str, arg: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise EngineError(f"{name}: Parameter '{arg}' is required.")
    raise EngineError(f"{name}, argument '{arg}': Invalid type.\nExpected type: String.\nActual value: {value!r}")


def _int(name: str, arg: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EngineError(f"{name}, argument '{arg}': Invalid type.\nExpected type: Integer.\nActual value: {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise EngineError(f"{name}, argument '{arg}': Expected an integer, got {value!r}.")
        return int(value)
    return value


@algorithm("String")
def string(input):
    """Strings as they are; numbers as Earth Engine prints them (integers plainly, doubles as Java does)."""
    if isinstance(input, str):
        return input
    if isinstance(input, bool | int | float):
        return number_to_string(input)
    raise EngineError(f"String: Cannot convert a {ee_type_of(input)} to a String.")


@algorithm("String.cat")
def cat(string1, string2):
    return _str("String.cat", "string1", string1) + _str("String.cat", "string2", string2)


@vectorised("String.cat")
def cat_many(n, string1, string2):
    """``String.cat`` of columns (or one string) holding strings only, joined in one pass; anything else
    element by element (the scalar form's errors)."""
    firsts = string1 if isinstance(string1, Column) else [string1] * n
    seconds = string2 if isinstance(string2, Column) else [string2] * n
    if set(map(type, firsts)) <= {str} and set(map(type, seconds)) <= {str}:
        return [a + b for a, b in zip(firsts, seconds, strict=True)]
    return per_element("String.cat", n, {"string1": string1, "string2": string2})


@algorithm("String.compareTo")
def compare_to(string1, string2):
    """-1, 0 or 1, comparing UTF-16 code units as Java does."""
    a = _str("String.compareTo", "string1", string1)
    b = _str("String.compareTo", "string2", string2)
    ka, kb = _utf16_key(a), _utf16_key(b)
    return (ka > kb) - (ka < kb)


def _utf16_key(s: str) -> tuple[int, ...]:
    raw = _utf16(s)
    return tuple(int.from_bytes(raw[i : i + 2], "little") for i in range(0, len(raw), 2))


@algorithm("String.equals")
def equals(reference, target):
    return isinstance(target, str) and _str("String.equals", "reference", reference) == target


@algorithm("String.index")
def index(target, pattern):
    """First occurrence of a substring (not a pattern), in UTF-16 units, or -1."""
    s, p = _str("String.index", "target", target), _str("String.index", "pattern", pattern)
    found = s.find(p)
    return -1 if found < 0 else _utf16_index(s, found)


@algorithm("String.rindex")
def rindex(target, pattern):
    s, p = _str("String.rindex", "target", target), _str("String.rindex", "pattern", pattern)
    found = s.rfind(p)
    return -1 if found < 0 else _utf16_index(s, found)


@algorithm("String.length")
def length(string):
    return utf16_length(_str("String.length", "string", string))


@algorithm("String.slice")
def slice_(string, start, end):
    """JavaScript-style slice: negative indices count from the end; out-of-range indices are clipped."""
    raw = _utf16(_str("String.slice", "string", string))
    n = len(raw) // 2
    lo = _int("String.slice", "start", start)
    hi = n if end is None else _int("String.slice", "end", end)
    lo = max(lo + n, 0) if lo < 0 else min(lo, n)
    hi = max(hi + n, 0) if hi < 0 else min(hi, n)
    return _from_utf16(raw[2 * lo : 2 * hi]) if lo < hi else ""


@algorithm("String.toLowerCase")
def to_lower_case(string):
    return _str("String.toLowerCase", "string", string).lower()


@algorithm("String.toUpperCase")
def to_upper_case(string):
    return _str("String.toUpperCase", "string", string).upper()


@algorithm("String.trim")
def trim(string):
    """Java's ``trim``: removes leading and trailing characters up to U+0020 (spaces and controls)."""
    s = _str("String.trim", "string", string)
    return s.strip("".join(chr(c) for c in range(0x21)))


@algorithm("String.match")
def match(input, regex, flags):
    """With 'g' every match; otherwise the first match followed by its groups; [] when nothing matches."""
    s = _str("String.match", "input", input)
    compiled, global_ = compile_regex("String.match", _str("String.match", "regex", regex), flags)
    if global_:
        return [m.group(0) for m in compiled.finditer(s)]
    m = compiled.search(s)
    if m is None:
        return []
    return [m.group(0), *m.groups()]


def _expand(name: str, replacement: str, m: Any) -> str:
    """RE2/J replacement syntax: ``$n`` (longest valid group number), ``${name}``, ``\\x`` is x."""
    out: list[str] = []
    i, n = 0, len(replacement)
    groups = m.re.groups
    while i < n:
        c = replacement[i]
        if c == "\\":
            if i + 1 >= n:
                raise EngineError(f"{name}: Invalid replacement '{replacement}': trailing backslash.")
            out.append(replacement[i + 1])
            i += 2
        elif c == "$":
            if i + 1 < n and replacement[i + 1].isdigit():
                j = i + 2
                ref = int(replacement[i + 1])
                while j < n and replacement[j].isdigit() and ref * 10 + int(replacement[j]) <= groups:
                    ref = ref * 10 + int(replacement[j])
                    j += 1
                if ref > groups:
                    raise EngineError(f"{name}: Invalid replacement '{replacement}': no group {ref}.")
                out.append(m.group(ref) or "")
                i = j
            elif i + 1 < n and replacement[i + 1] == "{":
                close = replacement.find("}", i + 2)
                if close < 0:
                    raise EngineError(f"{name}: Invalid replacement '{replacement}': missing '}}'.")
                group_name = replacement[i + 2 : close]
                if group_name not in m.re.groupindex:
                    raise EngineError(f"{name}: Invalid replacement '{replacement}': no group named '{group_name}'.")
                out.append(m.group(group_name) or "")
                i = close + 1
            else:
                raise EngineError(
                    f"{name}: Invalid replacement '{replacement}': '$' must be followed by a group number or "
                    "{name}; write '\\$' for a literal dollar sign."
                )
        else:
            out.append(c)
            i += 1
    return "".join(out)


@algorithm("String.replace")
def replace(input, regex, replacement, flags):
    s = _str("String.replace", "input", input)
    compiled, global_ = compile_regex("String.replace", _str("String.replace", "regex", regex), flags)
    rep = _str("String.replace", "replacement", replacement)
    return compiled.sub(lambda m: _expand("String.replace", rep, m), s, count=0 if global_ else 1)


@algorithm("String.split")
def split(string, regex, flags):
    """Java's ``split`` with limit 0; an empty regex splits into characters."""
    s = _str("String.split", "string", string)
    compiled, _ = compile_regex("String.split", _str("String.split", "regex", regex), flags)
    parts: list[str] = []
    last = 0
    matched = False
    for m in compiled.finditer(s):
        if m.end() == 0:
            continue
        matched = True
        parts.append(s[last : m.start()])
        last = m.end()
    if not matched:
        return [s]
    parts.append(s[last:])
    while parts and parts[-1] == "":
        parts.pop()
    return parts


@algorithm("String.decodeJSON")
def decode_json(string):
    text = _str("String.decodeJSON", "string", string)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise EngineError(f"String.decodeJSON: Invalid JSON: {err.msg} at position {err.pos}.") from None


def _check_json(value: Any) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EngineError(f"String.encodeJSON: Cannot encode the non-finite number {number_to_string(value)}.")
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_json(item)
        return
    if isinstance(value, dict):
        for item in value.values():
            _check_json(item)
        return
    raise EngineError(
        f"String.encodeJSON: Cannot encode a {ee_type_of(value)}; only primitives, lists and dictionaries are supported."
    )


@algorithm("String.encodeJSON")
def encode_json(object):  # noqa: A002 - Earth Engine's argument name
    """Compact JSON with sorted keys (documented: '{"lc_class":3,"lc_name":"grassland"}')."""
    _check_json(object)
    return json.dumps(object, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
