"""The engine's images: bands, the pixel grid, pixel types, resampling, image algorithms, pixel requests,
classifiers and clusterers. They import ``values`` and ``core``.
"""
