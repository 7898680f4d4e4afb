"""Element: the base of Feature, Image and the collections, a bag of properties.

Earth Engine keeps an element's id as the system property ``system:index``
(features and images) and a collection's asset id as ``system:id``; here they
live in ``Element.id`` and are read and written through :meth:`Element.get`
and :func:`set_property` like other properties. Algorithms of the ``Element``
family live here too; they work on any element (feature, image, collection)
through ``properties``, ``id``, ``get`` and ``copy_with``.
"""

from __future__ import annotations

import itertools
from typing import Any

from gee_mining.local.core.errors import EngineError
from gee_mining.local.core.registry import Column, algorithm, per_element, vectorised


class Element:
    """Properties shared by features, images and collections."""

    ee_type = "Element"
    id_property = "system:index"
    __slots__ = ("properties", "id")

    def __init__(self, properties: dict[str, Any] | None = None, id: str | None = None):
        self.properties: dict[str, Any] = dict(properties) if properties else {}
        self.id = id

    def get(self, name: str) -> Any:
        if name == self.id_property:
            return self.id
        return self.properties.get(name)

    def has(self, name: str) -> bool:
        return (name == self.id_property and self.id is not None) or name in self.properties

    def property_names(self) -> list[str]:
        """Property names as Earth Engine lists them: set properties, then the id."""
        names = list(self.properties)
        if self.id is not None:
            names.append(self.id_property)
        return names

    def all_properties(self) -> dict[str, Any]:
        """Properties with the id property included."""
        props = dict(self.properties)
        if self.id is not None:
            props[self.id_property] = self.id
        return props

    def copy_with(self, properties: dict[str, Any] | None = None, **changes: Any) -> Element:
        return Element(self.properties if properties is None else properties, changes.get("id", self.id))


def is_system(name: str) -> bool:
    return name.startswith("system:")


def set_properties(element: Element, values: dict[str, Any]) -> Element:
    """A copy of ``element`` with ``values`` set; the id property sets the id."""
    props = dict(element.properties)
    new_id = element.id
    for key, value in values.items():
        if key == element.id_property:
            new_id = None if value is None else str(value)
        else:
            props[key] = value
    return element.copy_with(properties=props, id=new_id)


def set_property(element: Element, key: str, value: Any) -> Element:
    return set_properties(element, {key: value})


def _check_element(name: str, value: Any) -> Element:
    if not isinstance(value, Element):
        raise EngineError(f"{name}: expected an Element, got {getattr(value, 'ee_type', type(value).__name__)}.")
    return value


@algorithm("Element.get")
def get(object, property):  # noqa: A002 - Earth Engine's argument names
    """The value of ``property``, or null when the element does not have it."""
    return _check_element("Element.get", object).get(property)


@algorithm("Element.getNumber")
def get_number(object, property):  # noqa: A002
    value = _check_element("Element.getNumber", object).get(property)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise EngineError(f"Element.getNumber: Property '{property}' is not a Number.")
    return value


@algorithm("Element.getString")
def get_string(object, property):  # noqa: A002
    value = _check_element("Element.getString", object).get(property)
    if value is not None and not isinstance(value, str):
        raise EngineError(f"Element.getString: Property '{property}' is not a String.")
    return value


@algorithm("Element.set")
def set_(object, key, value):  # noqa: A002
    return set_property(_check_element("Element.set", object), key, value)


@vectorised("Element.set")
def set_many(n, object, key, value):  # noqa: A002
    """``Element.set`` of one key on a column of elements: each new properties dict made in one step, not
    merged key by key (a mapped function sets a property on thousands of features), or, for the id property,
    the new id alone. Anything else goes element by element (the scalar form, its errors included)."""
    elements = object
    if isinstance(key, Column) or not isinstance(elements, Column) or not all(isinstance(e, Element) for e in elements):
        return per_element("Element.set", n, {"object": object, "key": key, "value": value})
    ids = {key == e.id_property for e in elements}
    values = value if isinstance(value, Column) else itertools.repeat(value, n)
    if ids == {True}:  # values are never changed in place: the new element shares the old one's properties
        return [e.copy_with(id=None if v is None else str(v)) for e, v in zip(elements, values, strict=True)]
    if ids != {False}:
        return per_element("Element.set", n, {"object": object, "key": key, "value": value})
    out = []
    for element, v in zip(elements, values, strict=True):
        props = element.properties.copy()
        props[key] = v
        out.append(element.copy_with(properties=props))
    return out


@algorithm("Element.setMulti")
def set_multi(object, properties):  # noqa: A002
    if not isinstance(properties, dict):
        raise EngineError("Element.setMulti: 'properties' must be a Dictionary.")
    return set_properties(_check_element("Element.setMulti", object), properties)


@algorithm("Element.propertyNames")
def property_names(element):
    return _check_element("Element.propertyNames", element).property_names()


@algorithm("Element.toDictionary")
def to_dictionary(element, properties):
    """All non-system properties by default, else the named ones that are set."""
    el = _check_element("Element.toDictionary", element)
    if properties is None:
        return {k: v for k, v in el.properties.items() if not is_system(k)}
    return {name: el.get(name) for name in properties if el.has(name)}


@algorithm("Element.copyProperties")
def copy_properties(destination, source, properties, exclude):
    """Copy ``source``'s properties onto ``destination``.

    Without ``properties``, every non-system property is copied except those in
    ``exclude``; with it, exactly those named (system ones included).
    """
    if destination is None or source is None:
        raise EngineError("Element.copyProperties: 'destination' and 'source' are required.")
    dst = _check_element("Element.copyProperties", destination)
    src = _check_element("Element.copyProperties", source)
    if properties is not None and exclude is not None:
        raise EngineError("Element.copyProperties: Can't specify both 'properties' and 'exclude'.")
    if properties is None:
        skip = set(exclude or ())
        values = {k: v for k, v in src.properties.items() if not is_system(k) and k not in skip}
    else:
        values = {name: src.get(name) for name in properties if src.has(name)}
    return set_properties(dst, values)


@algorithm("Element.replaceProperties")
def replace_properties(destination, source):
    """``destination`` with its non-system properties replaced by ``source``'s (none without a source)."""
    dst = _check_element("Element.replaceProperties", destination)
    kept = {k: v for k, v in dst.properties.items() if is_system(k)}
    if source is not None:
        src = _check_element("Element.replaceProperties", source)
        kept.update({k: v for k, v in src.properties.items() if not is_system(k)})
    return dst.copy_with(properties=kept)
