"""The engine's plain values and their algorithms: numbers, strings, lists, dictionaries, dates, projections,
geometries, elements, features, collections, filters, joins, reducers, kernels. They import only ``core``.
"""
