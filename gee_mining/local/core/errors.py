"""The engine's one exception type.

Every failure inside the engine is an :class:`EngineError` carrying an HTTP
status and a message in Earth Engine's style ("Image.select: Pattern 'B99' did
not match any bands."). The router turns it into Earth Engine's error answer
``{"error": {"code", "message", "status"}}``, which the real ``ee`` client
raises as ``ee.EEException(message)``.
"""

from __future__ import annotations

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}


class EngineError(Exception):
    """An error answered to the client in Earth Engine's shape."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status

    @property
    def status_name(self) -> str:
        return _STATUS_NAMES.get(self.status, "UNKNOWN")

    def to_json(self) -> dict:
        return {"error": {"code": self.status, "message": self.message, "status": self.status_name}}


class NotImplementedAlgorithm(EngineError):
    """An algorithm Earth Engine has but this engine does not evaluate yet.

    Answered with status 400, not 501: the client retries 5xx answers with
    backoff, and retrying cannot make an algorithm appear.
    """

    def __init__(self, name: str):
        super().__init__(
            f"{name}: this algorithm is not implemented by the gee-mining local engine. "
            "Run this graph on Earth Engine (gee_mining.connect(engine='earthengine')) "
            "or add the algorithm to gee_mining/local (docs: 'extending the engine').",
            status=400,
        )
        self.algorithm = name


class NotFound(EngineError):
    def __init__(self, message: str):
        super().__init__(message, status=404)
