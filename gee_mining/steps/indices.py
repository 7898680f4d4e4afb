"""Spectral indices of a Sentinel-2 image, computed server-side with the ``ee`` API.

``add_indices(image, names, pairwise)`` adds to an image

- named indices from the Awesome Spectral Indices catalogue (``spyndex``): each is
  ``image.expression(formula, {symbol: image.select(band)})`` with spyndex's own
  formula string, its band symbols mapped to Sentinel-2 band names through
  ``spyndex.bands[symbol].sentinel2a`` and its constants at spyndex's defaults, so the
  index means exactly what the catalogue says, on Earth Engine and on the local engine;
- pairwise normalised differences ``ND_a_b = (a - b) / (a + b)`` for every pair of a band
  list where ``a`` comes later than ``b`` (66 bands for the 12 of ``BANDS``; ND_B8_B4 is NDVI).

Why spyndex's formula strings rather than our own: one documented, cited definition per
name, and the tests check the engine's result against ``spyndex.computeIndex``.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ee
import spyndex

from gee_mining.errors import InputError

# The 12 Sentinel-2 bands of the project's composites (B10, cirrus, is absent from L2A).
BANDS: tuple[str, ...] = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12")

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

_SYMBOL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@functools.cache
def sentinel2_symbols() -> dict[str, str]:
    """spyndex band symbol -> Sentinel-2 band name (e.g. 'N' -> 'B8', 'S1' -> 'B11')."""
    out = {}
    for symbol, band in spyndex.bands.items():
        s2 = getattr(band, "sentinel2a", None)
        if s2 is not None and getattr(s2, "band", None):
            out[symbol] = s2.band
    return out


def index_formula(name: str) -> tuple[str, dict[str, str], dict[str, float]]:
    """An index's spyndex formula, its band symbols -> Sentinel-2 bands, its constants -> defaults.

    Raises InputError for a name spyndex does not know, or an index that needs a band
    Sentinel-2 lacks (thermal, for instance).
    """
    key = ALIASES.get(name, name)
    if key not in spyndex.indices:
        known = [*spyndex.indices, *ALIASES]
        close = difflib.get_close_matches(str(name), known, n=3) or [k for k in known if k.lower() == str(name).lower()]
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise InputError(
            f"Unknown spectral index {name!r}: use a name of the Awesome Spectral Indices catalogue "
            f"(spyndex.indices, e.g. NDVI, NBR, MNDWI) or one of the aliases {sorted(ALIASES)}.{hint}"
        )
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


def normalized_difference_names(bands: Sequence[str] = BANDS) -> list[str]:
    """``ND_a_b`` for each pair with ``a`` later than ``b`` in ``bands``, in order of ``a`` then ``b``."""
    return [f"ND_{a}_{b}" for i, a in enumerate(bands) for b in bands[:i]]


def add_indices(
    image: Any, names: Iterable[str] = (), pairwise: Sequence[str] | None = None, *, check_bands: bool = False
) -> Any:
    """``image`` with named spectral indices and pairwise normalised differences added as float32 bands.

    ``names``: spyndex index names (or ``ALIASES``), each added as a band of that name.
    ``pairwise``: a band list; adds ``ND_a_b = (a - b) / (a + b)`` for each ``a`` later than ``b``
    (plain band math, not ``normalizedDifference``, which masks negative inputs).
    The image's bands are Sentinel-2 reflectances named as in ``BANDS``. Building the graph
    evaluates nothing, so a missing band surfaces when it runs as Earth Engine's error naming
    the band; ``check_bands=True`` asks the engine for the band names first (one round trip)
    and raises InputError naming the missing ones.
    """

    names = [names] if isinstance(names, str) else list(names)
    if len(set(names)) != len(names):
        raise InputError(f"add_indices: names repeat an index: {names}.")
    formulas = {name: index_formula(name) for name in names}
    if pairwise is not None:
        pairwise = list(pairwise)
        if len(set(pairwise)) != len(pairwise) or len(pairwise) < 2:
            raise InputError(f"add_indices: pairwise needs at least two distinct bands, got {pairwise}.")
    if check_bands:
        needed = {b for _, bands, _ in formulas.values() for b in bands.values()} | set(pairwise or ())
        have = set(image.bandNames().getInfo())
        missing = sorted(needed - have)
        if missing:
            raise InputError(
                f"add_indices: the image lacks the band(s) {missing} that the requested indices need "
                f"(it has {sorted(have)}); select or compute them first."
            )
    added = []
    for name in names:
        formula, bands, constants = formulas[name]
        variables: dict[str, Any] = {s: image.select(b).toFloat() for s, b in bands.items()}
        variables.update({s: ee.Image.constant(v).toFloat() for s, v in constants.items()})
        added.append(image.expression(formula, variables).rename(name))
    if pairwise is not None:
        floats = {band: image.select(band).toFloat() for band in pairwise}
        for i, a in enumerate(pairwise):
            for b in pairwise[:i]:
                nd = floats[a].subtract(floats[b]).divide(floats[a].add(floats[b]))
                added.append(nd.rename(f"ND_{a}_{b}"))
    if not added:
        return image
    return image.addBands(ee.Image.cat(added))
