"""The feature grammar: what a feature name means, for the ``ee`` graph and for numpy alike.

A feature is one of

- a Sentinel-2 band, named as in ``bands.BANDS`` (``B4``);
- a pairwise normalised difference ``ND_a_b = (a - b) / (a + b)`` of two distinct bands
  (``ND_B8_B4`` is NDVI); for a band list, the pairs are every ``a`` later than ``b``, in order
  of ``a`` then ``b`` (66 pairs for the 12 bands);
- a named spectral index of the Awesome Spectral Indices catalogue (``spyndex``), or one of
  ``ALIASES``: its formula, band symbols and constants come from :func:`index_formula`.

:func:`normalized_difference` is the one formula of ``ND_a_b``: it is written over three
arithmetic operations, so the study evaluates it on numpy arrays (the default) and
``steps.indices.add_indices`` builds the same expression as ``ee.Image`` algebra.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import spyndex

from gee_mining.contracts.bands import BANDS
from gee_mining.errors import InputError

# Names the seed used that spyndex files under another name with the same formula.
# NDRE = (NIR - RedEdge1) / (NIR + RedEdge1) is spyndex's NDREI, "Normalized Difference Red
# Edge Index" (Gitelson & Merzlyak 1994, https://doi.org/10.1016/1011-1344(93)06963-4),
# on Sentinel-2 (B8 - B5) / (B8 + B5).
ALIASES: Mapping[str, str] = {"NDRE": "NDREI"}

# The indices the project computes by default (the seed's list, minus AMWI: neither spyndex
# nor any published source we could check defines an "AMWI", so we do not invent one).
DEFAULT_INDICES: tuple[str, ...] = (
    "NDVI",
    "NDRE",
    "GNDVI",
    "NDMI",
    "MSI",
    "NDWI",
    "MNDWI",
    "NBR",
    "NBR2",
    "NDBI",
    "NDSI",
    "NDVI705",
    "NDTI",
)

_ND = re.compile(r"^ND_(B\d+A?)_(B\d+A?)$")
_SYMBOL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# -- normalised differences -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arithmetic:
    """The three operations the normalised difference needs, for one kind of operand."""

    add: Callable[[Any, Any], Any]
    subtract: Callable[[Any, Any], Any]
    divide: Callable[[Any, Any], Any]


NUMPY = Arithmetic(np.add, np.subtract, np.divide)
"""numpy arrays (and scalars): float division, NaN where ``a + b`` and ``a - b`` are 0, inf where only ``a + b`` is."""


def normalized_difference(a: Any, b: Any, ops: Arithmetic = NUMPY) -> Any:
    """``(a - b) / (a + b)``: the one formula of ``ND_a_b``, on numpy arrays or (with ``ops``) ``ee.Image`` bands.

    Plain arithmetic, not Earth Engine's ``normalizedDifference``, which masks negative inputs.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return ops.divide(ops.subtract(a, b), ops.add(a, b))


def nd_name(a: str, b: str) -> str:
    """The feature name of the normalised difference of ``a`` and ``b``: ``ND_a_b``."""
    return f"ND_{a}_{b}"


def nd_pairs(bands: Sequence[str] = BANDS) -> list[tuple[str, str]]:
    """``(a, b)`` for each pair with ``a`` later than ``b`` in ``bands``, in order of ``a`` then ``b``."""
    return [(a, b) for i, a in enumerate(bands) for b in bands[:i]]


def normalized_difference_names(bands: Sequence[str] = BANDS) -> list[str]:
    """``ND_a_b`` for each pair of :func:`nd_pairs`, in that order."""
    return [nd_name(a, b) for a, b in nd_pairs(bands)]


def parse_nd(name: str) -> tuple[str, str] | None:
    """``(a, b)`` of a name of the form ``ND_a_b`` (a and b Sentinel-2 band names), None for other names.

    Raises InputError for a name of that form whose bands are not two distinct bands of ``BANDS``.
    """
    m = _ND.match(name)
    if not m:
        return None
    a, b = m.groups()
    if a == b or a not in BANDS or b not in BANDS:
        raise InputError(f"feature {name!r}: ND_a_b needs two distinct Sentinel-2 bands of {list(BANDS)}.")
    return a, b


# -- named indices --------------------------------------------------------------------------------------------------


@functools.cache
def sentinel2_symbols() -> dict[str, str]:
    """spyndex band symbol -> Sentinel-2 band name (e.g. 'N' -> 'B8', 'S1' -> 'B11')."""
    out = {}
    for symbol, band in spyndex.bands.items():
        s2 = getattr(band, "sentinel2a", None)
        if s2 is not None and getattr(s2, "band", None):
            out[symbol] = s2.band
    return out


def _unknown_index(name: str) -> InputError:
    known = [*spyndex.indices, *ALIASES]
    close = difflib.get_close_matches(str(name), known, n=3) or [k for k in known if k.lower() == str(name).lower()]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return InputError(
        f"Unknown spectral index {name!r}: use a name of the Awesome Spectral Indices catalogue "
        f"(spyndex.indices, e.g. NDVI, NBR, MNDWI) or one of the aliases {sorted(ALIASES)}.{hint}"
    )


def index_formula(name: str) -> tuple[str, dict[str, str], dict[str, float]]:
    """An index's spyndex formula, its band symbols -> Sentinel-2 bands, its constants -> defaults.

    Raises InputError for a name spyndex does not know, or an index that needs a band
    Sentinel-2 lacks (thermal, for instance).
    """
    key = ALIASES.get(name, name)
    if key not in spyndex.indices:
        raise _unknown_index(name)
    index = spyndex.indices[key]
    symbols = sentinel2_symbols()
    bands: dict[str, str] = {}
    constants: dict[str, float] = {}
    for symbol in index.bands:
        if symbol in symbols:
            bands[symbol] = symbols[symbol]
        elif symbol in spyndex.constants:
            default = spyndex.constants[symbol].default
            if default is None:
                raise InputError(f"Spectral index {name!r} needs the constant {symbol!r}, which has no default.")
            constants[symbol] = float(default)
        else:
            raise InputError(f"Spectral index {name!r} needs the input {symbol!r}, which Sentinel-2 does not have.")
    used = set(_SYMBOL_RE.findall(index.formula))
    return index.formula, {s: b for s, b in bands.items() if s in used}, constants


# -- feature names --------------------------------------------------------------------------------------------------


def check_index(name: str) -> None:
    """A derived feature name must be ``ND_a_b`` of two bands or a spectral index name (raises InputError)."""
    if parse_nd(name) is None:
        index_formula(name)


def check_feature(name: str) -> None:
    """A feature name must be a band, ``ND_a_b`` of two bands, or a spectral index name (raises InputError)."""
    if name in BANDS or parse_nd(name) is not None:  # parse_nd raises for ND_a_b of bands that are not two of BANDS
        return
    try:
        index_formula(name)
    except InputError as e:
        raise InputError(f"feature {name!r} is not a Sentinel-2 band, ND_a_b or a spectral index: {e}") from None


def derived_features(features: Iterable[str]) -> list[str]:
    """The features that are not bands (``ND_a_b`` and named indices), in order: what ``add_indices`` adds."""
    return [f for f in features if f not in BANDS]
