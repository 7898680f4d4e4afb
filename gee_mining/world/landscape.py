"""The static world: UTM grid, mine polygons, land-cover materials and their spectra.

Everything here is fixed for the year; ``scenes.py`` adds seasons, noise and clouds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import shapely
import shapely.ops
from pyproj import Transformer
from rasterio.features import rasterize
from rasterio.transform import Affine

from gee_mining.contracts.bands import BANDS
from gee_mining.world.fields import Field, block_mean, octaves, sample_octaves
from gee_mining.world.realism import EASY, Realism
from gee_mining.world.spectra import BAND_RES, MATERIAL_ID, VEGETATED, Palette, build_palette

DEFAULT_CENTER = (-55.75, -6.25)  # Tapajos basin, Para, Brazil: a region of many small mines
SPRING_SOWING = (70.0, 130.0)  # days of the year the hard world's seasonal crop fields are sown
ARTISANAL_PIT_M2 = (5500.0, 50000.0)  # an artisanal pit's drawn area (kept only from 5,000 m2: 0.005-0.05 km2)
RESOLUTIONS = (10, 20, 60)


@dataclass(frozen=True)
class WorldGrid:
    """A square of ``size`` metres on a UTM zone, aligned to 60 m so the 10/20/60 m lattices nest."""

    epsg: int
    x0: float  # left edge (easting)
    y0: float  # top edge (northing)
    size: int

    @classmethod
    def around(cls, lon: float, lat: float, size_km: float) -> WorldGrid:
        zone = int((lon + 180) // 6) + 1
        epsg = (32600 if lat >= 0 else 32700) + zone
        x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
        size = max(60, int(round(size_km * 1000 / 60)) * 60)
        return cls(epsg, math.floor((x - size / 2) / 60) * 60, math.floor((y + size / 2) / 60) * 60, size)

    @property
    def crs(self) -> str:
        return f"EPSG:{self.epsg}"

    @property
    def zone(self) -> int:
        return self.epsg % 100

    def shape(self, res: int) -> tuple[int, int]:
        return self.size // res, self.size // res

    def transform(self, res: int):

        return Affine(res, 0.0, self.x0, 0.0, -res, self.y0)

    def to_utm(self):
        return Transformer.from_crs(4326, self.epsg, always_xy=True)

    def to_lonlat(self):
        return Transformer.from_crs(self.epsg, 4326, always_xy=True)

    def bounds_lonlat(self) -> shapely.Polygon:
        """The world's outline in degrees (edges densified)."""
        box = shapely.box(self.x0, self.y0 - self.size, self.x0 + self.size, self.y0).segmentize(self.size / 16)
        tf = self.to_lonlat()
        return shapely.transform(box, lambda xy: np.column_stack(tf.transform(xy[:, 0], xy[:, 1])))

    def centre_lonlat(self) -> tuple[float, float]:
        return self.to_lonlat().transform(self.x0 + self.size / 2, self.y0 - self.size / 2)

    def mgrs_tile(self) -> str:
        """The MGRS 100 km square of the world's centre (zone, latitude band, column and row letters)."""
        lon, lat = self.centre_lonlat()
        band = "CDEFGHJKLMNPQRSTUVWX"[min(int((lat + 80) // 8), 19)]
        x, y = self.x0 + self.size / 2, self.y0 - self.size / 2
        columns = ("STUVWXYZ", "ABCDEFGH", "JKLMNPQR")[self.zone % 3]
        col = columns[int(x // 100_000) - 1]
        row = "ABCDEFGHJKLMNPQRSTUV"[(int(y // 100_000) + (5 if self.zone % 2 == 0 else 0)) % 20]
        return f"{self.zone:02d}{band}{col}{row}"


# ---------------------------------------------------------------- mine polygons


def generated_polygons(grid: WorldGrid, rng: np.random.Generator, realism: Realism = EASY) -> list[shapely.Polygon]:
    """Mine polygons with the sizes, shapes and clustering of mapped mining areas (in UTM metres).

    Areas are log-normal around 0.23 km2 (the median of the project's real demo
    polygons; their 5th and 95th percentiles are 0.01 and 5 km2), clipped to ``realism``'s bounds (easy: 0.01 km2
    to 2 % of the world; hard: 0.005 to 20 km2, at most 5 % of the world); outlines are irregular, elongated star
    shapes; mines come in clusters (a large pit with satellites along a valley), as mining areas do.
    """
    extent = grid.size
    area_km2 = (extent / 1000) ** 2
    lo, hi = mine_area_bounds(realism, float(extent))
    n_clusters = max(1, int(round(rng.uniform(0.8, 1.4) * math.sqrt(area_km2) / 3)))
    polys: list[shapely.Polygon] = []
    for _ in range(n_clusters):
        cx, cy = rng.uniform(0.2, 0.8, 2) * extent
        spread = rng.uniform(0.06, 0.15) * extent
        for k in range(int(rng.integers(2, 7))):
            area = float(np.clip(rng.lognormal(math.log(0.23e6), realism.mine_area_sigma), lo, hi))
            if k == 0:
                area = max(area, 0.3e6 * min(1.0, area_km2 / 100))
                x, y = cx, cy
            else:
                x, y = cx + rng.normal(0, spread), cy + rng.normal(0, spread)
            shape = _blob(rng, x, y, area)
            shape = shape.intersection(shapely.box(0, 0, extent, extent).buffer(-50))
            if shape.is_empty or shape.area < min(5000, lo):
                continue
            if any(shape.intersects(p) for p in polys):
                shape = shape.difference(shapely.union_all(polys))
                if shape.is_empty or shape.area < min(5000, lo):
                    continue
            if shape.geom_type == "MultiPolygon":
                shape = max(shape.geoms, key=lambda g: g.area)
            if realism.largest_mine_km2 > 0 and shape.area < lo:  # the hard world: no piece below the smallest
                continue
            polys.append(shape)
    # local metres (origin top-left, y down) -> UTM
    return [_local_to_utm(grid, p) for p in polys]


def mine_area_bounds(realism: Realism, extent: float) -> tuple[float, float]:
    """The smallest and largest area (m2) of a generated mine in a world of ``extent`` metres a side."""
    if realism.largest_mine_km2 <= 0:
        return realism.smallest_mine_km2 * 1e6, 0.02 * extent * extent
    return realism.smallest_mine_km2 * 1e6, min(realism.largest_mine_km2 * 1e6, 0.05 * extent * extent)


def _blob(rng: np.random.Generator, x: float, y: float, area: float) -> shapely.Polygon:
    theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 7):
        r += rng.uniform(0, 0.35 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    aspect = rng.uniform(1.0, 2.5)
    px, py = r * np.cos(theta) * math.sqrt(aspect), r * np.sin(theta) / math.sqrt(aspect)
    rot = rng.uniform(0, np.pi)
    c, s = math.cos(rot), math.sin(rot)
    shape = shapely.Polygon(np.column_stack([c * px - s * py, s * px + c * py])).buffer(0)
    scale = math.sqrt(area / shape.area)
    return shapely.affinity.affine_transform(shape, [scale, 0, 0, scale, x, y]).simplify(5)


# ---------------------------------------------------------------- the static scene


@dataclass
class Surface:
    """Per-pixel static description at 10 m, and its spectra at each native resolution.

    ``A[res]`` (bands, h, w): reflectance at greenness 0 (brightness x base spectrum);
    ``D[res]``: what greenness 1 adds (brightness x (green - base) spectrum);
    ``group[res]``: index of the phenology group each pixel follows (``groups`` rows).
    """

    material: np.ndarray  # uint8 (h, w) at 10 m
    base: np.ndarray  # uint16 palette entry at greenness 0
    green: np.ndarray  # uint16 palette entry at greenness 1 (== base where the material has no season)
    brightness: np.ndarray  # float32 texture factor
    group: dict[int, np.ndarray]
    groups: np.ndarray  # (n, 4) float32: kind (0 none, 1 seasonal cosine, 2 crop), g0 / plant day, amplitude, phase
    A: dict[int, np.ndarray]
    D: dict[int, np.ndarray]
    palette: Palette
    mine_mask: np.ndarray  # bool (h, w) at 10 m
    artisanal: list = dataclasses.field(default_factory=list)  # artisanal pits (UTM polygons) the surface added


def _rasterize(shapes, grid: WorldGrid, res: int, value: int = 1, all_touched: bool = False) -> np.ndarray:

    shapes = [s for s in shapes if s is not None and not s.is_empty]
    h, w = grid.shape(res)
    if not shapes:
        return np.zeros((h, w), dtype=np.uint8)
    return rasterize(
        [(s, value) for s in shapes],
        out_shape=(h, w),
        transform=grid.transform(res),
        fill=0,
        dtype="uint8",
        all_touched=all_touched,
    )


@dataclass(frozen=True)
class _CropFields:
    """The rotated lattice of crop fields: each 10 m pixel's field number, and the 10 m strips between fields."""

    field_id: np.ndarray  # int64 (h, w)
    boundaries: np.ndarray  # bool (h, w)


@dataclass(frozen=True)
class _Spectra:
    """Each 10 m pixel's palette entries (at greenness 0 and 1) and its brightness texture."""

    base: np.ndarray  # uint16 (h, w)
    green: np.ndarray  # uint16 (h, w)
    brightness: np.ndarray  # float32 (h, w)
    under: np.ndarray | None = None  # uint16 (h, w): the soil seen through vegetation (None: none)
    under_share: np.ndarray | None = None  # float32 (h, w): its share of the pixel


@dataclass(frozen=True)
class _Phenology:
    """Which phenology group each 10 m pixel follows, and the groups' parameters (see ``Surface.groups``)."""

    group10: np.ndarray  # int32 (h, w)
    groups: np.ndarray  # (n, 4) float32


def _local_to_utm(grid: WorldGrid, geom: shapely.Geometry) -> shapely.Geometry:
    """A geometry in the world's local metres (origin top-left, y down) moved to UTM."""
    return shapely.transform(geom, lambda xy: np.column_stack([grid.x0 + xy[:, 0], grid.y0 - xy[:, 1]]))


def build_surface(
    grid: WorldGrid,
    mines_utm: list[shapely.Geometry],
    rng: np.random.Generator,
    library_part: str | None = None,
    realism: Realism = EASY,
) -> Surface:
    """Materials, spectra and phenology for every 10 m pixel of the world.

    The pieces draw from ``rng`` in a fixed order (palette, land use, fields, water and village,
    mines, spectra, phenology), which keeps a seed's world the same bytes. ``library_part``: draw the palette from
    that half of the spectral library only (see :func:`gee_mining.world.spectra.library_part`). ``realism``: how
    hard the world is (:mod:`gee_mining.world.realism`; the easy default draws exactly what it always drew).
    """
    palette = build_palette(rng, realism.spectra_per_material, library_part, realism.mine_soil_pool,
                            realism.crop_soil_pool, realism.urban_pool)  # fmt: skip
    h, w = grid.shape(10)
    extent = float(grid.size)
    material = _land_use(rng, extent, h, w, realism.natural_soil_bias)
    fields = _crop_fields(rng, h, w)
    river = _add_water_and_village(rng, grid, material)
    material[(material == MATERIAL_ID["crop"]) & fields.boundaries] = MATERIAL_ID["grass"]
    # the hard world's own draws come from a child generator, so the easy world draws exactly what it always drew
    extra = np.random.default_rng(rng.integers(2**62)) if _has_extras(realism) else None
    for _ in range(realism.villages - 1):
        _paint_village(extra, grid, material)
    artisanal = _artisanal_pits(extra, grid, river, mines_utm, realism) if extra is not None else []
    material, mine_mask = _add_mines(rng, grid, mines_utm, material, realism)
    if extra is not None:
        _add_camps(extra, grid, mines_utm, material, realism.mine_buildings)
        mine_mask |= _paint_artisanal(extra, grid, river, artisanal, material)
    spectra = _assign_spectra(rng, extent, material, fields.field_id, palette, realism)
    phenology = _phenology(rng, material, fields.field_id, realism.seasonal_crops)
    A, D, group = _native_resolutions(palette.values, spectra, phenology.group10)
    return Surface(material, spectra.base, spectra.green, spectra.brightness, group, phenology.groups, A, D, palette,
                   mine_mask, [_local_to_utm(grid, p) for p in artisanal])  # fmt: skip


def _land_use(rng: np.random.Generator, extent: float, h: int, w: int, soil_bias: float = -0.75) -> np.ndarray:
    """Land use at 10 m (uint8 material ids): the highest of several patchy, biased scores wins."""
    scores = []
    biases = {"forest": 0.55, "crop": -0.05, "grass": 0.0, "shrub": -0.35, "natural_soil": soil_bias,
              "natural_rock": -0.95}  # fmt: skip
    for bias in biases.values():
        parts = octaves(rng, extent, [2400.0, 700.0, 180.0], [1.0, 0.45, 0.15])
        scores.append(sample_octaves(parts, h, w, 10.0) + np.float32(bias))
    order = np.array([MATERIAL_ID[k] for k in biases], dtype=np.uint8)
    return order[np.argmax(np.stack(scores), axis=0)]


def _crop_fields(rng: np.random.Generator, h: int, w: int) -> _CropFields:
    """A rotated lattice of 120-320 m fields over the whole world (used inside the crop zone)."""
    rot = rng.uniform(0, np.pi / 2)
    ys, xs = (np.mgrid[0:h, 0:w].astype(np.float32) + 0.5) * 10.0
    u = xs * math.cos(rot) + ys * math.sin(rot)
    v = -xs * math.sin(rot) + ys * math.cos(rot)
    fx, fy = rng.uniform(120, 320), rng.uniform(120, 320)
    field_id = (np.floor(u / fx).astype(np.int64) * 7919 + np.floor(v / fy).astype(np.int64)) % 1_000_003
    boundaries = (np.mod(u, fx) < 10) | (np.mod(v, fy) < 10)
    return _CropFields(field_id, boundaries)


def _add_water_and_village(rng: np.random.Generator, grid: WorldGrid, material: np.ndarray) -> _River:
    """Paint a lake, a river and a village (roofs and paved roads) into ``material``, in place; the river."""
    h, w = material.shape
    extent = float(grid.size)
    line, half_width = _river(rng, extent)
    river = line.buffer(half_width)
    lake = Field.random(rng, extent, 900.0).sample(h, w, 10.0) > 2.3
    material[lake] = MATERIAL_ID["water"]
    village_roofs, village_roads = _village(rng, extent)
    material[_rasterize([_local_to_utm(grid, river)], grid, 10) > 0] = MATERIAL_ID["water"]
    _paint_village(None, grid, material, (village_roofs, village_roads))
    return _River(line, half_width)


def _paint_village(rng: np.random.Generator | None, grid: WorldGrid, material: np.ndarray, village=None) -> None:
    """Paint a village (``village``: its roofs and roads, or one drawn from ``rng``) into ``material``, in place."""
    roofs, roads = village if village is not None else _village(rng, float(grid.size))
    material[_rasterize([_local_to_utm(grid, g) for g in roads], grid, 10, all_touched=True) > 0] = MATERIAL_ID[
        "paved_road"
    ]
    material[_rasterize([_local_to_utm(grid, g) for g in roofs], grid, 10) > 0] = MATERIAL_ID["roof"]


def _add_mines(
    rng: np.random.Generator,
    grid: WorldGrid,
    mines_utm: list[shapely.Geometry],
    material: np.ndarray,
    realism: Realism = EASY,
) -> tuple[np.ndarray, np.ndarray]:
    """Mines over ``material``: soil, rock benches, tailings, then haul roads and pit water.

    Returns the new material array and the mine mask (bool, 10 m: the polygons, the label). With ``realism``'s
    ragged edges and remnants, the mine material is not the polygon: see :func:`_mined_ground`.
    """
    h, w = material.shape
    extent = float(grid.size)
    mine_mask = _rasterize(mines_utm, grid, 10) > 0
    inner = Field.random(rng, extent, 150.0).sample(h, w, 10.0)
    tail = Field.random(rng, extent, 300.0).sample(h, w, 10.0)
    mm = np.full((h, w), MATERIAL_ID["mine_soil"], dtype=np.uint8)
    mm[inner > 0.6] = MATERIAL_ID["mine_rock"]
    mm[tail > 0.9] = MATERIAL_ID["tailings"]
    mined = _mined_ground(rng, grid, mines_utm, mine_mask, realism)
    material = np.where(mined, mm, material)
    pits, roads = _pits_and_roads(rng, grid, mines_utm)
    road_mask = _rasterize(roads, grid, 10, all_touched=True) > 0
    material[road_mask & (material != MATERIAL_ID["water"])] = MATERIAL_ID["haul_road"]
    material[_rasterize(pits, grid, 10) > 0] = MATERIAL_ID["pit_water"]
    return material, mine_mask


def _mined_ground(rng: np.random.Generator, grid: WorldGrid, mines_utm: list[shapely.Geometry], mine_mask: np.ndarray,
                  realism: Realism) -> np.ndarray:  # fmt: skip
    """Where mine material lies (bool, 10 m): the polygons (the easy world), or, with ``realism``, an outline that
    wanders ``ragged_edge_m`` in and out of theirs (a smooth field decides, pixel by pixel, within that band) and
    unmined patches (``remnants`` of the inside: forest, water, fields left as they were)."""
    if realism.ragged_edge_m <= 0 and realism.remnants <= 0:
        return mine_mask
    h, w = mine_mask.shape
    extent = float(grid.size)
    mined = mine_mask.copy()
    e = realism.ragged_edge_m
    if e > 0:
        outer = _rasterize([m.buffer(e) for m in mines_utm], grid, 10) > 0
        core = _rasterize([m.buffer(-e) for m in mines_utm], grid, 10) > 0
        wobble = Field.random(rng, extent, 2 * e).sample(h, w, 10.0) > 0
        mined = core | (outer & wobble)
    if realism.remnants > 0:
        patches = Field.random(rng, extent, 120.0).sample(h, w, 10.0)
        inside = patches[mine_mask]
        if inside.size:
            mined &= patches < np.quantile(inside, 1 - realism.remnants)
    return mined


def _pits_and_roads(
    rng: np.random.Generator, grid: WorldGrid, mines_utm: list[shapely.Geometry]
) -> tuple[list[shapely.Geometry], list[shapely.Geometry]]:
    """Water-filled pits in the larger mines, and haul roads joining each mine to its nearest neighbour
    (or to the world's bottom edge when alone; a few also get a track out of the area). In UTM metres."""
    extent = float(grid.size)
    pits = []
    roads = []
    polys = [p for p in mines_utm if p.geom_type in ("Polygon", "MultiPolygon")]
    centres = [p.representative_point() for p in polys]
    for p, c in zip(polys, centres, strict=True):
        if p.area > 0.15e6:
            pit = c.buffer(math.sqrt(p.area) * rng.uniform(0.08, 0.16)).intersection(p.buffer(-20))
            pits.append(pit)
        others = [o for o in centres if o is not c]
        if others:
            target = min(others, key=lambda o: o.distance(c))
        else:
            target = shapely.Point(grid.x0 + rng.uniform(0, extent), grid.y0 - extent)
        roads.append(shapely.LineString([c, target]).buffer(rng.uniform(6, 10)))
        edge = shapely.Point(grid.x0 if rng.random() < 0.5 else grid.x0 + extent, c.y)
        if rng.random() < 0.15:  # a few mines have their own track out of the area
            roads.append(shapely.LineString([c, edge]).buffer(6))
    return pits, roads


@dataclass(frozen=True)
class _River:
    """The world's river: its centreline (local metres, y down) and half width."""

    line: shapely.LineString
    half_width: float


def _has_extras(realism: Realism) -> bool:
    """Whether the surface draws the hard world's extras (artisanal pits, camps in mines)."""
    return realism.artisanal_per_100km2 > 0 or realism.mine_buildings > 0 or realism.villages > 1


def _artisanal_pits(rng: np.random.Generator, grid: WorldGrid, river: _River, mines_utm: list[shapely.Geometry],
                    realism: Realism) -> list[shapely.Geometry]:  # fmt: skip
    """Artisanal clusters (local metres): 8-25 pits of 0.005-0.05 km2, one every 60-110 m along the river on
    (mostly) alternating banks, 15-70 m from the water, as alluvial gold diggings are strung along a river. ``artisanal_per_100km2``
    clusters (at least one); none overlaps the river, another pit or a mine."""
    if realism.artisanal_per_100km2 <= 0:
        return []
    extent = float(grid.size)
    n = max(1, int(round(realism.artisanal_per_100km2 * (extent / 1000) ** 2 / 100)))
    line = river.line.intersection(shapely.box(0, 0, extent, extent).buffer(-100))
    if line.is_empty or line.length < 500:
        return []
    if line.geom_type != "LineString":
        line = max(line.geoms, key=lambda g: g.length)
    taken = [
        shapely.transform(m, lambda xy: np.column_stack([xy[:, 0] - grid.x0, grid.y0 - xy[:, 1]])) for m in mines_utm
    ]
    taken.append(line.buffer(river.half_width + 5))
    pits: list[shapely.Geometry] = []
    for _ in range(n):
        count = int(rng.integers(8, 26))
        step = min(rng.uniform(60, 110), line.length / count)  # along the river, banks alternating (mostly)
        start = rng.uniform(0, line.length - count * step)
        for k in range(count):
            d = start + (k + rng.uniform(0, 0.8)) * step
            side = 1.0 if (k % 2 == 0) != (rng.random() < 0.2) else -1.0
            area = float(np.clip(rng.lognormal(math.log(0.015e6), 0.7), *ARTISANAL_PIT_M2))
            a, b = line.interpolate(max(d - 5, 0)), line.interpolate(min(d + 5, line.length))
            tx, ty = b.x - a.x, b.y - a.y
            norm = math.hypot(tx, ty) or 1.0
            off = (river.half_width + rng.uniform(15, 70) + math.sqrt(area / math.pi)) * side
            c = line.interpolate(d)
            shape = _blob(rng, c.x - ty / norm * off, c.y + tx / norm * off, area)
            shape = shape.difference(shapely.union_all(taken + pits)).intersection(shapely.box(0, 0, extent, extent))
            if shape.geom_type == "MultiPolygon":
                shape = max(shape.geoms, key=lambda g: g.area)
            if shape.geom_type == "Polygon" and shape.area >= 5000:
                pits.append(shape)
    return pits


def _paint_artisanal(rng: np.random.Generator, grid: WorldGrid, river: _River, pits: list[shapely.Geometry],
                     material: np.ndarray) -> np.ndarray:  # fmt: skip
    """Paint artisanal pits into ``material`` (in place): turbid water in each pit's middle, wet sand and bare soil
    around it; and the river turbid along each cluster's reach and 2 km on. Returns the pits' mask (10 m)."""
    if not pits:
        return np.zeros(material.shape, dtype=bool)
    utm = [_local_to_utm(grid, p) for p in pits]
    mask = _rasterize(utm, grid, 10) > 0
    h, w = material.shape
    spoil = Field.random(rng, float(grid.size), 40.0).sample(h, w, 10.0)
    material[mask] = np.where(spoil[mask] > 0, MATERIAL_ID["tailings"], MATERIAL_ID["mine_soil"])
    ponds = [p.intersection(p.representative_point().buffer(0.5 * math.sqrt(p.area / math.pi))) for p in pits]
    material[_rasterize([_local_to_utm(grid, q) for q in ponds], grid, 10) > 0] = MATERIAL_ID["pit_water"]
    along = [river.line.project(p.representative_point()) for p in pits]
    reach = shapely.ops.substring(river.line, max(min(along) - 200, 0), max(along) + 2000)
    plume = _rasterize([_local_to_utm(grid, reach.buffer(river.half_width + 10))], grid, 10) > 0
    material[plume & (material == MATERIAL_ID["water"])] = MATERIAL_ID["pit_water"]
    return mask


def _add_camps(rng: np.random.Generator, grid: WorldGrid, mines_utm: list[shapely.Geometry], material: np.ndarray,
               share: float) -> None:  # fmt: skip
    """Camps inside mine polygons (in place): ``share`` of the mines over 0.05 km2 get 4-12 roofs of 8-20 m (the
    polygon's label stays: buildings are inside mapped mining areas too)."""
    roofs = []
    for m in mines_utm:
        if m.area < 0.05e6 or rng.random() >= share:
            continue
        x0, y0, x1, y1 = m.bounds
        for _ in range(int(rng.integers(4, 13))):
            for _try in range(20):
                x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
                if m.contains(shapely.Point(x, y)):
                    s = rng.uniform(8, 20)
                    roofs.append(shapely.box(x, y, x + s, y + s * rng.uniform(0.6, 1.4)).intersection(m))
                    break
    if roofs:
        material[(_rasterize(roofs, grid, 10) > 0) & (material != MATERIAL_ID["pit_water"])] = MATERIAL_ID["roof"]


def _assign_spectra(
    rng: np.random.Generator,
    extent: float,
    material: np.ndarray,
    field_id: np.ndarray,
    palette: Palette,
    realism: Realism = EASY,
) -> _Spectra:
    """Each material's candidate spectra assigned in patches (crops: one per field), and a brightness texture
    (with ``realism``: a per-pixel speckle on top, and soil mixed under vegetation)."""
    h, w = material.shape
    base = np.zeros((h, w), dtype=np.uint16)
    green = np.zeros((h, w), dtype=np.uint16)
    pick = Field.random(rng, extent, 350.0).sample(h, w, 10.0)
    rank = np.clip((pick / 3.0 + 0.5), 0, 0.999)  # ~uniform 0..1
    field_pick = (field_id * 2654435761 % 4294967296) / 4294967296.0
    for m, candidates in palette.base.items():
        sel = material == m
        if not sel.any():
            continue
        r = field_pick[sel] if m == MATERIAL_ID["crop"] else rank[sel]
        k = np.minimum((r * len(candidates)).astype(int), len(candidates) - 1)
        base[sel] = candidates[k]
        g = palette.green.get(m)
        green[sel] = g[np.minimum((r * len(g)).astype(int), len(g) - 1)] if g is not None else candidates[k]
    parts = octaves(rng, extent, [160.0, 40.0], [0.05, 0.03])
    brightness = np.clip(1.0 + sample_octaves(parts, h, w, 10.0), 0.8, 1.2).astype(np.float32)
    if realism.speckle > 0:
        brightness *= np.clip(1 + realism.speckle * rng.standard_normal((h, w), dtype=np.float32), 0.7, 1.3)
    brightness[(material == MATERIAL_ID["water"]) | (material == MATERIAL_ID["pit_water"])] = 1.0
    under, share = None, None
    if realism.soil_under_canopy > 0:
        soils = palette.base[MATERIAL_ID["natural_soil"]]
        under = soils[np.minimum((rank * len(soils)).astype(int), len(soils) - 1)].astype(np.uint16)
        mix = Field.random(rng, extent, 60.0).sample(h, w, 10.0)
        share = np.clip(realism.soil_under_canopy * (1 + 0.5 * mix), 0, 0.5).astype(np.float32)
        share[~np.isin(material, VEGETATED)] = 0
    return _Spectra(base, green, brightness, under, share)


def _phenology(
    rng: np.random.Generator, material: np.ndarray, field_id: np.ndarray, seasonal: float = 0.0
) -> _Phenology:
    """Phenology groups: crops follow their field, other vegetation its 1 km block; the rest none (kind 0).

    A crop field is sown on any day of the year, or (a share ``seasonal`` of them) in spring, days 70-130 (the
    world borrows a northern calendar): those are bare from their harvest (days 160-270) through winter."""
    h, w = material.shape
    block = (np.arange(h)[:, None] // 100) * 1000 + (np.arange(w)[None, :] // 100)
    key = np.where(material == MATERIAL_ID["crop"], field_id + 10_000_000, block * 16 + material)
    key = np.where(np.isin(material, VEGETATED), key, -1)
    uniq, group10 = np.unique(key, return_inverse=True)
    group10 = group10.reshape(h, w).astype(np.int32)
    groups = np.zeros((len(uniq), 4), dtype=np.float32)
    peak = rng.uniform(0, 365)
    for i, kv in enumerate(uniq):
        if kv < 0:
            continue
        if kv >= 10_000_000:
            sow, grow = rng.uniform(0, 365), rng.uniform(90, 140)
            if seasonal > 0 and rng.random() < seasonal:
                sow = SPRING_SOWING[0] + (SPRING_SOWING[1] - SPRING_SOWING[0]) * rng.random()
            groups[i] = (2, sow, grow, 0)
        else:
            mat = int(kv % 16)
            g0, amp = {0: (0.7, 0.15), 1: (0.5, 0.25), 2: (0.5, 0.35)}.get(mat, (0.0, 0.0))
            groups[i] = (1, g0 + rng.normal(0, 0.05), amp, peak + rng.normal(0, 15))
    return _Phenology(group10, groups)


def _native_resolutions(
    values: np.ndarray, spectra: _Spectra, group10: np.ndarray
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], dict[int, np.ndarray]]:
    """``Surface.A``, ``Surface.D`` and ``Surface.group`` at each band resolution (block means of the 10 m pixels;
    a coarse pixel follows the phenology group of its centre pixel). ``values``: the palette's (n, 12) spectra."""
    h, w = group10.shape
    A, D, group = {}, {}, {}
    for res in RESOLUTIONS:
        idx = [i for i, b in enumerate(BANDS) if BAND_RES[b] == res]
        f = res // 10
        a = np.empty((len(idx), h // f, w // f), dtype=np.float32)
        d = np.empty_like(a)
        for j, bi in enumerate(idx):
            sb = values[:, bi]
            if spectra.under is None:
                a[j] = block_mean(spectra.brightness * sb[spectra.base], f)
                d[j] = block_mean(spectra.brightness * (sb[spectra.green] - sb[spectra.base]), f)
            else:  # a linear mix: (1 - s) of the material (seasonal) and s of the soil under it
                s, keep = spectra.under_share, 1 - spectra.under_share
                a[j] = block_mean(spectra.brightness * (keep * sb[spectra.base] + s * sb[spectra.under]), f)
                d[j] = block_mean(spectra.brightness * keep * (sb[spectra.green] - sb[spectra.base]), f)
        A[res], D[res] = a, d
        group[res] = group10[f // 2 :: f, f // 2 :: f] if f > 1 else group10
    return A, D, group


def greenness(groups: np.ndarray, doy: float) -> np.ndarray:
    """Greenness (0..1) of each phenology group on day-of-year ``doy``."""
    kind, p1, p2, p3 = groups.T
    seasonal = np.clip(p1 + p2 * np.cos(2 * np.pi * (doy - p3) / 365.25), 0, 1)
    age = np.mod(doy - p1, 365.25)
    crop = np.where(age < p2, np.sin(np.pi * age / np.maximum(p2, 1)), 0.0)
    return np.where(kind == 1, seasonal, np.where(kind == 2, crop, 0.0)).astype(np.float32)


def _river(rng: np.random.Generator, extent: float) -> tuple[shapely.LineString, float]:
    """The river's centreline (local metres, crossing the world) and half width."""
    n = 60
    t = np.linspace(-0.05, 1.05, n) * extent
    wander = np.cumsum(rng.normal(0, extent * 0.02, n))
    wander -= np.linspace(wander[0], wander[-1], n)
    offset = rng.uniform(0.15, 0.85) * extent
    if rng.random() < 0.5:
        line = shapely.LineString(np.column_stack([t, offset + wander]))
    else:
        line = shapely.LineString(np.column_stack([offset + wander, t]))
    return line, rng.uniform(18, 35)


def _village(rng: np.random.Generator, extent: float):
    cx, cy = rng.uniform(0.15, 0.85, 2) * extent
    radius = min(500.0, extent * 0.08)
    roads = [
        shapely.LineString([(cx - radius, cy + dy), (cx + radius, cy + dy)]).buffer(4)
        for dy in np.arange(-radius, radius + 1, 120)
    ]
    roads += [shapely.LineString([(cx + dx, cy - radius), (cx + dx, cy + radius)]).buffer(4) for dx in (-60.0, 60.0)]
    roofs = []
    for _ in range(int(radius**2 / 2500)):
        x, y = cx + rng.uniform(-radius, radius), cy + rng.uniform(-radius, radius)
        s = rng.uniform(8, 22)
        roofs.append(shapely.box(x, y, x + s, y + s * rng.uniform(0.6, 1.4)))
    return roofs, roads
