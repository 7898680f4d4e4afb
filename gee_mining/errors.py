"""gee-mining's exception tree: every error the library raises on purpose.

``GeeMiningError`` is the root; catch it to handle any of ours. Errors that Earth
Engine itself raises reach you as ``ee.EEException``.
"""

from __future__ import annotations


class GeeMiningError(Exception):
    """Root of gee-mining's errors."""


class ConnectError(GeeMiningError):
    """The engine could not be started or reached; the message says how to fix it."""


class InputError(GeeMiningError, ValueError):
    """Bad input from the user: the message names the input and the fix."""
