"""The one error type of the HTTP surfaces, and the error body of each surface. Needs no torch.

A handler raises `ApiError(status, message)` (`RequestError` for a surface's own request checks); each surface renders it in its own shape: native
`{"error": message}`, OpenAI `{"error": {message, type, param, code}}`, Anthropic `{type: "error", error: {...}}`.
"""

from __future__ import annotations

import secrets
from typing import Any


class ApiError(Exception):
    """An error answered with `status` and the native body {"error": message}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RequestError(ApiError):
    """An ApiError raised by a compatibility surface's own request checks (as Ollama's /v1 and /v1/messages
    middlewares refuse a request before the native handler): those answers carry gin's content type."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(status, message)


ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def new_id(prefix: str) -> str:
    """`<prefix>_` and 24 hex digits, as anthropic.generateID."""
    return f"{prefix}_{secrets.token_hex(12)}"


def anthropic_error_body(status: int, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
        "request_id": new_id("req"),
    }


def openai_error_body(status: int, message: str) -> dict[str, Any]:
    """openai.NewError: the type follows the status; param and code are always null."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}
