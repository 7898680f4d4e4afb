"""gee_mining.steps.indices against numpy and spyndex on the real Sentinel-2 L1C crop.

The engine evaluates the ``ee`` graph (``Image.expression`` with spyndex's formula
strings, band math for ``ND_*``) on a window of the crop's 10 m lattice; the references
are numpy formulas written here from the catalogue's definitions and
``spyndex.computeIndex`` on the same bands' pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import l1c_grid, shared_file

from gee_mining.contracts.bands import BANDS
from gee_mining.contracts.features import ALIASES, DEFAULT_INDICES, normalized_difference_names
from gee_mining.errors import InputError
from gee_mining.steps.indices import add_indices

L1C = "COPERNICUS/S2_HARMONIZED/20170216T102101_20170216T102101_T33UUU"
GRID = l1c_grid(300, 200, 32, 24)

# Independent numpy definitions (Awesome Spectral Indices / the cited papers), Sentinel-2 bands.
NUMPY = {
    "NDVI": lambda b: (b["B8"] - b["B4"]) / (b["B8"] + b["B4"]),
    "NDRE": lambda b: (b["B8"] - b["B5"]) / (b["B8"] + b["B5"]),
    "GNDVI": lambda b: (b["B8"] - b["B3"]) / (b["B8"] + b["B3"]),
    "NDMI": lambda b: (b["B8"] - b["B11"]) / (b["B8"] + b["B11"]),
    "MSI": lambda b: b["B11"] / b["B8"],
    "NDWI": lambda b: (b["B3"] - b["B8"]) / (b["B3"] + b["B8"]),
    "MNDWI": lambda b: (b["B3"] - b["B11"]) / (b["B3"] + b["B11"]),
    "NBR": lambda b: (b["B8"] - b["B12"]) / (b["B8"] + b["B12"]),
    "NBR2": lambda b: (b["B11"] - b["B12"]) / (b["B11"] + b["B12"]),
    "NDBI": lambda b: (b["B11"] - b["B8"]) / (b["B11"] + b["B8"]),
    "NDSI": lambda b: (b["B3"] - b["B11"]) / (b["B3"] + b["B11"]),
    "NDVI705": lambda b: (b["B6"] - b["B5"]) / (b["B6"] + b["B5"]),
    "NDTI": lambda b: (b["B4"] - b["B3"]) / (b["B4"] + b["B3"]),
    # one with constants (L = 1) and one with a power, to exercise those paths
    "SAVI": lambda b: (1 + 1.0) * (b["B8"] - b["B4"]) / (b["B8"] + b["B4"] + 1.0),
    "NIRv": lambda b: (b["B8"] - b["B4"]) / (b["B8"] + b["B4"]) * b["B8"],
}
SPYNDEX_S2 = {"A": "B1", "B": "B2", "G": "B3", "R": "B4", "RE1": "B5", "RE2": "B6", "RE3": "B7"}
SPYNDEX_S2 |= {"N": "B8", "N2": "B8A", "WV": "B9", "S1": "B11", "S2": "B12"}


@pytest.fixture(scope="module")
def scene(ee_local):
    shared_file("imagery/s2_l1c_T33UUU_20170216")
    return ee_local.Image(L1C).select(list(BANDS)).divide(10000)


@pytest.fixture(scope="module")
def bands(ee_local, scene) -> dict[str, np.ndarray]:
    """The reflectances the engine serves on the grid (float64)."""
    arr = ee_local.data.computePixels({"expression": scene, "fileFormat": "NUMPY_NDARRAY", "grid": GRID})
    out = {b: np.asarray(arr[b], np.float64) for b in BANDS}
    assert all(np.all(v > 0) for v in out.values())  # real land pixels, no zero denominators
    return out


def pixels(ee, image) -> np.ndarray:
    return ee.data.computePixels({"expression": image, "fileFormat": "NUMPY_NDARRAY", "grid": GRID})


def test_the_default_indices_match_numpy_and_spyndex(ee_local, scene, bands):
    import spyndex

    names = list(DEFAULT_INDICES) + ["SAVI", "NIRv"]
    out = pixels(ee_local, add_indices(scene, names))
    assert list(out.dtype.names) == list(BANDS) + names
    params = {sym: bands[b] for sym, b in SPYNDEX_S2.items()} | {"L": 1.0}
    for name in names:
        got = np.asarray(out[name], np.float64)
        assert out[name].dtype == np.float32, name
        np.testing.assert_allclose(got, NUMPY[name](bands), rtol=1e-5, atol=1e-6, err_msg=name)
        ref = spyndex.computeIndex(ALIASES.get(name, name), params=params)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6, err_msg=name)


def test_all_66_pairwise_normalised_differences_match_numpy(ee_local, scene, bands):
    names = normalized_difference_names(BANDS)
    assert len(names) == 66 and "ND_B8_B4" in names and "ND_B4_B8" not in names
    out = pixels(ee_local, add_indices(scene, pairwise=BANDS))
    assert list(out.dtype.names) == list(BANDS) + names
    for i, a in enumerate(BANDS):
        for b in BANDS[:i]:
            want = (bands[a] - bands[b]) / (bands[a] + bands[b])
            np.testing.assert_allclose(out[f"ND_{a}_{b}"], want, rtol=1e-5, atol=1e-6, err_msg=f"ND_{a}_{b}")
    np.testing.assert_allclose(out["ND_B8_B4"], NUMPY["NDVI"](bands), rtol=1e-5, atol=1e-6)


def test_index_with_a_power_operator(ee_local, scene, bands):
    """spyndex formulas use ``**``; the engine's expression language evaluates it."""
    import spyndex

    assert "**" in spyndex.indices["MTVI2"].formula
    out = pixels(ee_local, add_indices(scene.select(["B3", "B4", "B8"]), ["MTVI2"]))
    n, r, g = bands["B8"], bands["B4"], bands["B3"]
    want = 1.5 * (1.2 * (n - g) - 2.5 * (r - g)) / np.sqrt((2 * n + 1) ** 2 - (6 * n - 5 * np.sqrt(r)) - 0.5)
    np.testing.assert_allclose(out["MTVI2"], want, rtol=1e-5, atol=1e-6)
    ref = spyndex.computeIndex("MTVI2", params={"N": n, "R": r, "G": g})
    np.testing.assert_allclose(out["MTVI2"], ref, rtol=1e-5, atol=1e-6)


def test_unknown_index_and_missing_band_are_input_errors(ee_local, scene):
    with pytest.raises(InputError, match="Unknown spectral index 'NOPE'"):
        add_indices(scene, ["NOPE"])
    with pytest.raises(InputError, match="Did you mean NDVI"):
        add_indices(scene, ["ndvi"])
    with pytest.raises(InputError, match="'T'"):  # a thermal index: Sentinel-2 has no thermal band
        add_indices(scene, ["NBRT1"])
    with pytest.raises(InputError, match=r"lacks the band\(s\) \['B11'\]"):
        add_indices(scene.select(["B4", "B8"]), ["NDVI", "NDMI"], check_bands=True)
    with pytest.raises(InputError, match="pairwise"):
        add_indices(scene, pairwise=["B4"])
    assert add_indices(scene) is scene


def test_graph_uses_only_earth_engine_algorithms(ee_local, scene):
    from test_grid import graph_algorithms

    from gee_mining.contracts.signatures import signatures

    used = graph_algorithms(ee_local, add_indices(scene, DEFAULT_INDICES, pairwise=BANDS))
    assert used and used <= set(signatures()), used - set(signatures())


def test_a_missing_band_unchecked_fails_in_the_engine_naming_it(ee_local, scene):
    with pytest.raises(ee_local.EEException, match="B11"):
        add_indices(scene.select(["B4", "B8"]), ["NDMI"]).bandNames().getInfo()


def test_the_graph_round_trips_through_the_javascript_client(ee_local):
    """The Code Editor script jsgen writes for add_indices builds the same graph in the official JS client."""
    import shutil

    from test_jsgen import NODE_CLIENT, NodeClient, round_trip

    from gee_mining.tools import jsgen

    if shutil.which("node") is None or not (NODE_CLIENT / "package.json").exists():
        pytest.skip("node and the npm @google/earthengine client are needed for the JavaScript round trip")
    image = ee_local.Image(L1C).select(list(BANDS)).divide(10000)
    obj = add_indices(image, ["NDVI", "SAVI", "MTVI2"], pairwise=["B4", "B8", "B11"])
    client = NodeClient()
    try:
        source, _ = round_trip(client, jsgen.Script("indices").value(obj, "result"))
    finally:
        client.close()
    assert ".expression('(N-R)/(N+R)', {N: " in source  # written as the Code Editor user would write it


def test_on_a_real_l2a_patch_the_indices_match_spyndex(ee_local):
    """The same on a BigEarthNet Sentinel-2 L2A patch (surface reflectance), on its own 10 m grid."""
    import spyndex

    shared_file("imagery/bigearthnet_s2_l2a")
    image = ee_local.ImageCollection("COPERNICUS/S2_SR_HARMONIZED").first().select(list(BANDS)).divide(10000)
    b2 = next(b for b in image.getInfo()["bands"] if b["id"] == "B2")
    t = b2["crs_transform"]
    grid = {
        "dimensions": {"width": 32, "height": 32},
        "affineTransform": dict(
            zip(["scaleX", "shearX", "translateX", "shearY", "scaleY", "translateY"], t, strict=True)
        ),
        "crsCode": b2["crs"],
    }
    names = ["NDVI", "NDMI", "MNDWI", "NBR", "NDVI705", "NDTI"]
    out = ee_local.data.computePixels(
        {"expression": add_indices(image, names), "fileFormat": "NUMPY_NDARRAY", "grid": grid}
    )
    bands = {b: np.asarray(out[b], np.float64) for b in BANDS}
    assert all(np.all(v > 0) for v in bands.values())
    params = {sym: bands[b] for sym, b in SPYNDEX_S2.items()}
    for name in names:
        ref = spyndex.computeIndex(name, params=params)
        np.testing.assert_allclose(out[name], ref, rtol=1e-5, atol=1e-6, err_msg=name)
