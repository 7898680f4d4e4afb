"""Earth Engine's algorithm signatures, as the real client knows them.

The ``ee`` package ships the list of every algorithm's signature
(``ee/tests/algorithms.json``, the answer of ``GET /v1/projects/p/algorithms``).
The engine serves it unchanged to clients and uses it to bind arguments: names,
optional arguments and their defaults come from there, so a wrong name in an
implementation is caught once, at registration.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

_MISSING = object()


@dataclass(frozen=True)
class Argument:
    name: str
    type: str
    optional: bool
    default: Any


@dataclass(frozen=True)
class Signature:
    name: str
    return_type: str
    arguments: tuple[Argument, ...]
    description: str = ""

    @property
    def argument_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.arguments)


@functools.cache
def algorithms_document() -> dict:
    """The ``{"algorithms": [...]}`` document shipped with the ``ee`` client."""
    path = resources.files("ee") / "tests" / "algorithms.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:  # pragma: no cover - depends on the installed client
        raise RuntimeError(
            "The installed earthengine-api has no ee/tests/algorithms.json; "
            "reinstall it with `pip install --force-reinstall earthengine-api`."
        ) from e


@functools.cache
def signatures() -> dict[str, Signature]:
    """Every algorithm's signature, by Earth Engine name (``Image.select``)."""
    out = {}
    for alg in algorithms_document()["algorithms"]:
        name = alg["name"].removeprefix("algorithms/")
        args = tuple(
            Argument(
                name=a["argumentName"],
                type=a.get("type", "Object"),
                optional=bool(a.get("optional", False)),
                default=a.get("defaultValue", None),
            )
            for a in alg.get("arguments", [])
        )
        out[name] = Signature(name, alg.get("returnType", "Object"), args, alg.get("description", ""))
    return out


@functools.cache
def discovery_document() -> dict:
    """The client's discovery fixture, switched from v1alpha to v1, with ``projects.classifier.export``
    (``POST v1/{project}/classifier:export``, Earth Engine's REST reference), which the fixture lacks and
    ``ee.batch.Export.classifier.toAsset`` calls."""
    path = resources.files("ee") / "tests" / "cloud_api_discovery_document.json"
    text = path.read_text().replace("v1alpha/", "v1/").replace('"v1alpha"', '"v1"')
    doc = json.loads(text)
    projects = doc["resources"]["projects"]["resources"]
    if "classifier" not in projects:
        method = json.loads(json.dumps(projects["table"]["methods"]["export"]).replace("table", "classifier"))
        projects["classifier"] = {"methods": {"export": method}}
    return doc
