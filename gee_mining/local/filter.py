"""Filter: a predicate on elements, with what a catalog query can prune by.

A filter tests one element, or a pair in a join: ``leftField`` reads the
primary element and ``rightField`` the secondary one; outside a join both read
the element being filtered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Filter:
    test: Callable[[Any, Any], bool]
    description: str = ""
    bounds: Any = None  # a Geometry every passing element intersects (for pruning)
    date_range: tuple[float, float] | None = None  # [start, end) of system:time_start

    ee_type = "Filter"

    def __call__(self, element: Any, secondary: Any = None) -> bool:
        return bool(self.test(element, element if secondary is None else secondary))

    def to_info(self) -> dict:
        return {"type": "Filter", "description": self.description}
