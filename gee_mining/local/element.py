"""Element: the base of Feature and Image, a bag of properties.

Algorithms of the ``Element`` family live here too.
"""

from __future__ import annotations

from typing import Any


class Element:
    """Properties shared by features and images. ``system:index`` is ``id``."""

    ee_type = "Element"

    def __init__(self, properties: dict[str, Any] | None = None, id: str | None = None):
        self.properties: dict[str, Any] = dict(properties or {})
        self.id = id

    def get(self, name: str) -> Any:
        if name == "system:index":
            return self.id
        return self.properties.get(name)

    def all_properties(self) -> dict[str, Any]:
        """Properties with ``system:index`` included, as Earth Engine lists them."""
        props = dict(self.properties)
        if self.id is not None:
            props["system:index"] = self.id
        return props

    def copy_with(self, properties: dict[str, Any] | None = None, **changes: Any) -> Element:
        raise NotImplementedError
