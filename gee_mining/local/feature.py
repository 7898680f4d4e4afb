"""Feature: a geometry (or none) with properties (Earth Engine's ``ee.Feature``)."""

from __future__ import annotations

from typing import Any

from .element import Element


class Feature(Element):
    ee_type = "Feature"

    def __init__(self, geometry: Any = None, properties: dict[str, Any] | None = None, id: str | None = None):
        super().__init__(properties, id)
        self.geometry = geometry

    def copy_with(self, properties: dict[str, Any] | None = None, **changes: Any) -> Feature:
        return Feature(
            changes.get("geometry", self.geometry),
            self.properties if properties is None else properties,
            changes.get("id", self.id),
        )

    def to_info(self) -> dict:
        from .info import to_info

        info: dict[str, Any] = {"type": "Feature", "geometry": None if self.geometry is None else self.geometry.to_info()}
        if self.id is not None:
            info["id"] = self.id
        info["properties"] = to_info(self.properties)
        return info
