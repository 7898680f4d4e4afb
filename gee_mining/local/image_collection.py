"""ImageCollection algorithms: loading and building collections of images.

The collection value class is :class:`~.image.ImageCollection`; the shared
Collection algorithms (filter, map, limit, size, first, ...) apply to it.
"""

from __future__ import annotations

from .errors import EngineError
from .image import Image, ImageCollection
from .registry import algorithm


@algorithm("ImageCollection.load", context=True)
def load(ctx, id, version):
    return ctx.catalog.image_collection(id)


@algorithm("ImageCollection.fromImages")
def from_images(images):
    out = []
    for i, im in enumerate(images):
        if not isinstance(im, Image):
            raise EngineError(
                f"ImageCollection.fromImages: element {i} is a {getattr(im, 'ee_type', type(im).__name__)}, not an Image."
            )
        out.append(im if im.id is not None else im.copy_with(id=str(i)))
    return ImageCollection(out)
