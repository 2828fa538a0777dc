"""Exceptions raised by the SDK: one class per kind of failure, each carrying the API's error fields."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Type, cast


def as_object(value: object) -> Dict[str, Any]:
    """A JSON object as a dict; anything else as an empty one."""
    return cast(Dict[str, Any], value) if isinstance(value, dict) else {}


def as_list(value: object) -> List[Any]:
    """A JSON array as a list; anything else as an empty one."""
    return cast(List[Any], value) if isinstance(value, list) else []


@dataclass(frozen=True)
class FieldIssue:
    """One invalid field of a request, named by its dotted path (``resources.vcpus``)."""

    field: str
    rule: str
    message: str


class SandpitError(Exception):
    """Raised when a Sandpit operation fails; every other SDK exception derives from it.

    ``code`` is the API's error code (``sandbox_not_found``...) or one of the SDK's own
    (``network_error``, ``request_timeout``, ``invalid_response``); ``details`` is the error body's
    ``details`` object, ``status`` the HTTP status and ``request_id`` the response's ``X-Request-ID``.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: Optional[int] = None,
        details: Optional[Mapping[str, Any]] = None,
        request_id: Optional[str] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details: Dict[str, Any] = dict(details or {})
        self.request_id = request_id
        #: The server's ``Retry-After`` in seconds, when it sent one.
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"


class ValidationError(SandpitError):
    """The API refused the request's fields (``validation_failed``); ``fields`` names each one and its rule."""

    @property
    def fields(self) -> List[FieldIssue]:
        issues: List[FieldIssue] = []
        for item in as_list(self.details.get("fields")):
            entry = as_object(item)
            if isinstance(entry.get("field"), str):
                rule, message = entry.get("rule", "invalid"), entry.get("message", "is invalid")
                issues.append(FieldIssue(str(entry["field"]), str(rule), str(message)))
        return issues


class AuthenticationError(SandpitError):
    """The API key is missing, wrong or not allowed to do this (401, 403)."""


class NotFoundError(SandpitError):
    """A resource (a template, a command, a snapshot, a code context...) does not exist (404)."""


class SandboxNotFoundError(NotFoundError):
    """The sandbox does not exist, belongs to another organisation, or is gone."""


class FileNotFoundError(NotFoundError, builtins.FileNotFoundError):
    """A file or directory does not exist inside the sandbox (also a built-in ``FileNotFoundError``)."""


class ConflictError(SandpitError):
    """The sandbox's state forbids the operation, the sandbox failed, or a quota is used up (409)."""


class PayloadTooLargeError(SandpitError):
    """A request body, such as an upload, is larger than the server accepts (413)."""


class RateLimitError(SandpitError):
    """The server kept answering 429 after every retry; ``retry_after`` says when to try again."""


class TimeoutError(SandpitError, builtins.TimeoutError):
    """A request took longer than the client's ``request_timeout``, or the server timed out (408, 504).

    Also a built-in ``TimeoutError``, so ``except TimeoutError`` catches it either way.
    """


class ServerError(SandpitError):
    """The server failed (5xx) after every retry, or answered with something that is not the API's shape."""


class NetworkError(SandpitError):
    """The server could not be reached, or a connection broke, after every retry."""


_CLASS_BY_CODE: Dict[str, Type[SandpitError]] = {
    "validation_failed": ValidationError,
    "unauthorized": AuthenticationError,
    "forbidden": AuthenticationError,
    "image_auth_failed": AuthenticationError,
    "sandbox_not_found": SandboxNotFoundError,
    "file_not_found": FileNotFoundError,
    "invalid_state": ConflictError,
    "sandbox_failed": ConflictError,
    "quota_exceeded": ConflictError,
    "request_timeout": TimeoutError,
    "timeout": TimeoutError,
    "network_error": NetworkError,
    "invalid_response": ServerError,
}


def error_class(code: str, status: Optional[int]) -> Type[SandpitError]:
    """The one mapping from an error code and HTTP status to an exception class: the code decides
    when the SDK knows it, the status otherwise."""
    known = _CLASS_BY_CODE.get(code)
    if known is not None:
        return known
    if status is None:
        return SandpitError
    if status in (401, 403):
        return AuthenticationError
    if status == 404:
        return NotFoundError
    if status == 409:
        return ConflictError
    if status in (408, 504):
        return TimeoutError
    if status == 413:
        return PayloadTooLargeError
    if status == 429:
        return RateLimitError
    if status >= 500:
        return ServerError
    return SandpitError


def make_error(
    message: str,
    *,
    code: str,
    status: Optional[int] = None,
    details: Optional[Mapping[str, Any]] = None,
    request_id: Optional[str] = None,
    retry_after: Optional[float] = None,
) -> SandpitError:
    """Builds the exception of the class that ``code`` and ``status`` call for."""
    cls = error_class(code, status)
    return cls(message, code=code, status=status, details=details, request_id=request_id, retry_after=retry_after)
