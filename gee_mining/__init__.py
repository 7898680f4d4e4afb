"""gee-mining: find mines in Sentinel-2 imagery with Google Earth Engine.

Start with :func:`connect`; after it, user code is plain ``ee``::

    import ee, gee_mining
    conn = gee_mining.connect()            # the local engine, nothing to sign up for
    ee.Number(1).add(2).getInfo()          # 3
"""

from __future__ import annotations

from gee_mining.connection import Connection, connect, current_connection, disconnect
from gee_mining.errors import ConnectError, GeeMiningError, InputError

__version__ = "0.1.0"
__all__ = [
    "Connection",
    "ConnectError",
    "GeeMiningError",
    "InputError",
    "__version__",
    "connect",
    "current_connection",
    "disconnect",
]
