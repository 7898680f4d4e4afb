"""The engine's service: the REST router, the loopback server, operations, exports and their formats, Cloud
Storage and the catalog. It may import every layer below.
"""
