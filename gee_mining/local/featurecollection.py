"""FeatureCollection: an ordered list of features plus collection properties."""

from __future__ import annotations

from typing import Any

from .feature import Feature


def column_type(value: Any) -> str:
    """The ``columns`` type name Earth Engine reports for a property value."""
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Long"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "List"
    if isinstance(value, dict):
        return "Dictionary"
    return getattr(value, "ee_type", "Object")


class FeatureCollection:
    ee_type = "FeatureCollection"

    def __init__(self, features: list[Any], properties: dict[str, Any] | None = None, id: str | None = None):
        self.features = list(features)
        self.properties = dict(properties or {})
        self.id = id

    def copy_with(self, features: list[Any] | None = None, properties: dict[str, Any] | None = None) -> FeatureCollection:
        return FeatureCollection(
            self.features if features is None else features,
            self.properties if properties is None else properties,
            self.id,
        )

    def get(self, name: str) -> Any:
        if name == "system:id":
            return self.id
        return self.properties.get(name)

    def columns(self) -> dict[str, str]:
        cols: dict[str, str] = {}
        for f in self.features:
            for key, value in f.properties.items():
                t = column_type(value)
                if key in cols and cols[key] != t:
                    cols[key] = "Float" if {cols[key], t} == {"Long", "Float"} else "Object"
                else:
                    cols.setdefault(key, t)
        cols["system:index"] = "String"
        return dict(sorted(cols.items()))

    def to_info(self, features: list[Any] | None = None) -> dict:
        from .info import to_info

        info: dict[str, Any] = {"type": "FeatureCollection", "columns": self.columns()}
        if self.id is not None:
            info["id"] = self.id
        if self.properties:
            info["properties"] = to_info(self.properties)
        feats = self.features if features is None else features
        info["features"] = [f.to_info() if isinstance(f, Feature) else to_info(f) for f in feats]
        return info
