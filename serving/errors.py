"""The one error type of the server: a gRPC status code and its message.

Request handling raises ``ServingError``; the gRPC servicers turn it into
``context.abort(code, message)`` and the REST handler into the HTTP status TF Serving
uses for that code with a ``{"error": message}`` body.
"""
from __future__ import annotations

import grpc


class ServingError(Exception):
    """A failed request: ``code`` is a ``grpc.StatusCode``, ``message`` says why."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def status_code_from_value(value: int) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` with canonical number ``value`` (TF error codes share them)."""
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN
