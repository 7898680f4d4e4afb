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

from collections.abc import Iterable, Sequence
from typing import Any

import ee

from gee_mining.contracts.features import (
    Arithmetic,
    check_feature,
    derived_features,
    index_formula,
    nd_name,
    nd_pairs,
    normalized_difference,
    parse_nd,
)
from gee_mining.errors import InputError

EE_IMAGE = Arithmetic(lambda a, b: a.add(b), lambda a, b: a.subtract(b), lambda a, b: a.divide(b))
"""``ee.Image`` band algebra for ``contracts.features.normalized_difference`` (methods, as ``ee.Initialize`` adds them)."""


def add_indices(
    image: Any, names: Iterable[str] = (), pairwise: Sequence[str] | None = None, *, check_bands: bool = False
) -> Any:
    """``image`` with named spectral indices and pairwise normalised differences added as float32 bands.

    ``names``: spyndex index names (or ``ALIASES``), each added as a band of that name, or ``ND_a_b``
    names (the normalised difference of bands ``a`` and ``b``; the grammar is ``contracts.features``).
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
    named_pairs = {name: parse_nd(name) for name in names}
    formulas = {name: index_formula(name) for name, pair in named_pairs.items() if pair is None}
    pairs = [pair for pair in named_pairs.values() if pair is not None]
    if pairwise is not None:
        pairwise = list(pairwise)
        if len(set(pairwise)) != len(pairwise) or len(pairwise) < 2:
            raise InputError(f"add_indices: pairwise needs at least two distinct bands, got {pairwise}.")
    if check_bands:
        needed = {b for _, bands, _ in formulas.values() for b in bands.values()}
        _check_bands(image, needed | {b for pair in pairs for b in pair} | set(pairwise or ()))
    floats = {band: image.select(band).toFloat() for pair in pairs for band in pair}
    added = []
    for name in names:
        if named_pairs[name] is None:
            added.append(_expression(image, name, *formulas[name]))
        else:
            added.append(_nd_band(floats, *named_pairs[name]))
    if pairwise is not None:
        floats = {band: image.select(band).toFloat() for band in pairwise}
        added += [_nd_band(floats, a, b) for a, b in nd_pairs(pairwise)]
    if not added:
        return image
    return image.addBands(ee.Image.cat(added))


def _check_bands(image: Any, needed: set[str]) -> None:
    """Raise InputError naming the ``needed`` bands that ``image`` lacks (asks the engine for its band names)."""
    have = set(image.bandNames().getInfo())
    missing = sorted(needed - have)
    if missing:
        raise InputError(
            f"add_indices: the image lacks the band(s) {missing} that the requested indices need "
            f"(it has {sorted(have)}); select or compute them first."
        )


def _expression(image: Any, name: str, formula: str, bands: dict[str, str], constants: dict[str, float]) -> Any:
    """A spyndex index as ``image.expression``: band symbols bound to float bands, constants to constant images."""
    variables: dict[str, Any] = {s: image.select(b).toFloat() for s, b in bands.items()}
    variables.update({s: ee.Image.constant(v).toFloat() for s, v in constants.items()})
    return image.expression(formula, variables).rename(name)


def _nd_band(floats: dict[str, Any], a: str, b: str) -> Any:
    """The band ``ND_a_b``: the contract's normalised difference in ``ee.Image`` algebra."""
    return normalized_difference(floats[a], floats[b], EE_IMAGE).rename(nd_name(a, b))


def feature_image(image: Any, features: Sequence[str]) -> Any:
    """The named features of a Sentinel-2 reflectance image, as float32 bands in that order.

    Bands are taken as they are (as float); ``ND_a_b`` and spectral index names are added by
    :func:`add_indices`. Each name is checked against the grammar of ``contracts.features``."""

    features = list(features)
    for f in features:
        check_feature(f)
    return add_indices(image, derived_features(features)).select(features).toFloat()
