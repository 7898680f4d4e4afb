"""Collection algorithms (shared by feature and image collections)."""

from __future__ import annotations

from .registry import algorithm


@algorithm("Collection.loadTable", context=True)
def load_table(ctx, tableId, geometryColumn, version):  # noqa: N803
    return ctx.catalog.table(tableId)
