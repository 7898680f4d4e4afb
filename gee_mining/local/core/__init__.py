"""The engine's core: errors, Earth Engine's algorithm signatures, the algorithm registry, type checks and
promotions, ``getInfo`` shapes and the evaluator. It imports nothing of the engine above it.
"""
