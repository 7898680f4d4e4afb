"""The Earth Engine catalog ids the library reads, spelled once.

The pipeline asks Earth Engine for these datasets by id; the simulated worlds
(:mod:`gee_mining.world`) write stand-ins that the local engine serves under the
same ids, so a graph built for one runs on the other unchanged.
"""

S2_SR = "COPERNICUS/S2_SR_HARMONIZED"
"""Sentinel-2 surface reflectance (L2A), harmonised to the pre-2022 offset."""

CLOUD_SCORE_PLUS = "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"
"""Cloud Score+ per Sentinel-2 scene (bands ``cs`` and ``cs_cdf``)."""

S2_CLOUD_PROBABILITY = "COPERNICUS/S2_CLOUD_PROBABILITY"
"""s2cloudless cloud probability per Sentinel-2 scene (band ``probability``)."""

WORLDCOVER = "ESA/WorldCover/v200"
"""ESA WorldCover 10 m land cover, 2021 (band ``Map``)."""

WORLDCOVER_CLASSES = {10: "tree cover", 20: "shrubland", 30: "grassland", 40: "cropland", 50: "built-up",
                      60: "bare / sparse vegetation", 70: "snow and ice", 80: "permanent water bodies",
                      90: "herbaceous wetland", 95: "mangroves", 100: "moss and lichen"}  # fmt: skip
"""WorldCover's classes (band ``Map``), as the Earth Engine catalog and ESA's product manual name them."""

LSIB = "USDOS/LSIB_SIMPLE/2017"
"""US Department of State simplified international boundaries (column ``country_na``)."""
