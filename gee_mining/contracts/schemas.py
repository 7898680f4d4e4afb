"""The grid table's schema: its columns, their Arrow types, and the typed check of a row.

A grid table (written by :func:`gee_mining.io.grid_table.write_table`) has the :data:`COLUMNS` in
this order, then metadata columns (country, extra statistics, then ``lc_<class>`` land-cover shares
in class order), then, in GeoParquet and GeoPackage, the cell's polygon. :data:`GRID_SCHEMA` gives
the Arrow type of each base column as a GeoParquet grid holds it (``polygon_ids`` is the polygons'
ids joined by ``;``; ``pair`` is empty for a positive without a negative).

Every reader of cells (a job's cells file, exports, quicklooks, the classifier's splits, a
composite's region) needs the columns that place a cell's lattice: :class:`GridRow` checks and
types them, with one message, wherever a row comes from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from gee_mining.errors import InputError

COLUMNS = [
    "name", "zoom", "cell_size", "label", "overlap", "epsg", "cell_x", "cell_y", "lon", "lat",
    "west", "south", "east", "north", "distance_m", "pair", "nesting_only", "polygon_ids",
]  # fmt: skip

GRID_SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("zoom", pa.int64()),
        ("cell_size", pa.float64()),
        ("label", pa.int64()),
        ("overlap", pa.float64()),
        ("epsg", pa.int64()),
        ("cell_x", pa.int64()),
        ("cell_y", pa.int64()),
        ("lon", pa.float64()),
        ("lat", pa.float64()),
        ("west", pa.float64()),
        ("south", pa.float64()),
        ("east", pa.float64()),
        ("north", pa.float64()),
        ("distance_m", pa.float64()),
        ("pair", pa.string()),
        ("nesting_only", pa.bool_()),
        ("polygon_ids", pa.string()),
    ]
)

CELL_COLUMNS = ("epsg", "cell_x", "cell_y", "cell_size")  # where a cell is: its zone, index and size
ROW_COLUMNS = ("name", *CELL_COLUMNS)  # what every reader of a row needs (the name keys files and ledgers)


@dataclass(frozen=True)
class GridRow:
    """The typed columns of a grid-table row that every consumer needs: its name and its cell."""

    name: str
    epsg: int
    cell_x: int
    cell_y: int
    cell_size: float

    @classmethod
    def of(cls, row: Mapping[str, Any], where: str = "cells") -> GridRow:
        """Check and type ``row``'s :data:`ROW_COLUMNS` (CSV strings become numbers); an InputError that
        names the row and the missing or malformed columns otherwise."""
        missing = [k for k in ROW_COLUMNS if row.get(k) is None or row.get(k) == ""]
        label = row.get("name", "?")
        if missing:
            raise InputError(
                f"{where}: row {label!r} lacks {', '.join(missing)}: give rows of a grid table "
                "(gee-mining grid --out grid.parquet)."
            )
        try:
            return cls(str(row["name"]), int(row["epsg"]), int(row["cell_x"]), int(row["cell_y"]),
                       float(row["cell_size"]))  # fmt: skip
        except (TypeError, ValueError):
            raise InputError(
                f"{where}: row {label!r} has a non-numeric epsg, cell_x, cell_y or cell_size: give rows of a grid table."
            ) from None

    def typed(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """``row`` as a dict with this row's typed values in place of its text or numpy ones."""
        return {**row, "epsg": self.epsg, "cell_x": self.cell_x, "cell_y": self.cell_y, "cell_size": self.cell_size}


def check_rows(rows: Iterable[Mapping[str, Any]], where: str = "cells") -> list[dict[str, Any]]:
    """Grid rows as a list (the rows themselves), refusing rows that lack the columns a cell's lattice needs."""
    rows = list(rows)
    for r in rows:
        GridRow.of(r, where)
    return rows


def is_grid_row(target: Any) -> bool:
    """Whether ``target`` is a row placing a cell (a mapping with :data:`CELL_COLUMNS`), not a geometry."""
    return isinstance(target, Mapping) and all(k in target for k in CELL_COLUMNS)


POSITION_COLUMNS = ("cell", "row", "col", "x", "y")


METADATA_COLUMNS = ("epsg", "zoom", "cell_label", "overlap", "lat", "lon", "country")


def cell_metadata(row: dict[str, Any]) -> dict[str, Any]:
    """The metadata a grid row gives each of its pixels (``cell_label`` is the grid's ``label``)."""
    meta: dict[str, Any] = {"cell": row["name"]}
    for key in ("epsg", "zoom", "overlap", "lat", "lon", "country"):
        if key in row and row[key] is not None:
            meta[key] = row[key]
    if "label" in row:
        meta["cell_label"] = int(row["label"])
    meta.update({k: float(v) for k, v in row.items() if k.startswith("lc_") and v is not None})
    return meta


def columns(bands: Sequence[str], row: dict[str, Any] | None = None) -> list[str]:
    """The table's columns, in order: position, bands, metadata (of ``row`` when given)."""
    meta = [k for k in cell_metadata(row) if k != "cell"] if row else list(METADATA_COLUMNS)
    return [*POSITION_COLUMNS, *bands, *meta]
