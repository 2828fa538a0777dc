"""The transport under every SDK call: URLs, the API key, client-side timeouts, retries with backoff
(honouring ``Retry-After``), ``Idempotency-Key`` on retried non-idempotent requests, and typed errors."""

from __future__ import annotations

import http.client
import json as jsonlib
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import IO, Any, Callable, Dict, Iterator, Mapping, Optional, Union, cast
from urllib.parse import quote, urlencode, urlsplit

from .errors import NetworkError, SandpitError, ServerError, TimeoutError, as_object, make_error

DEFAULT_API_URL = "http://127.0.0.1:8080"
#: Client-side limit of one request in seconds: for JSON answers the whole exchange, for streamed ones
#: (command output, cells) until the answer starts.
DEFAULT_REQUEST_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 3
#: A ``Retry-After`` longer than this (seconds) is not waited for: the error is raised instead.
MAX_RETRY_AFTER = 60.0
_BACKOFF_BASE = 0.25
_BACKOFF_CAP = 10.0
_FALLBACK_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    429: "rate_limited",
    500: "internal",
    501: "not_implemented",
    503: "runtime_unavailable",
    504: "timeout",
    507: "insufficient_storage",
}

Body = Union[bytes, IO[bytes]]
Query = Mapping[str, Union[str, int, bool, None]]


@dataclass(frozen=True)
class ConnectionConfig:
    """Where the Sandpit server is and how to talk to it.

    Every field falls back to the environment (``SANDPIT_URL``, ``SANDPIT_API_KEY``) or a default;
    ``request_timeout`` is in seconds (0 disables it) and ``max_retries`` counts retries after the first
    attempt of a request that failed with a network error, a 429 or a 5xx.
    """

    api_url: str = DEFAULT_API_URL
    api_key: Optional[str] = None
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES

    @classmethod
    def resolve(
        cls,
        api_url: Optional[str] = None,
        api_key: Optional[str] = None,
        request_timeout: Optional[float] = None,
        max_retries: Optional[int] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> "ConnectionConfig":
        environ = os.environ if env is None else env
        url = api_url or environ.get("SANDPIT_URL") or DEFAULT_API_URL
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"api_url must be an http:// or https:// URL, got {url!r}")
        if request_timeout is not None and request_timeout < 0:
            raise ValueError("request_timeout must be a non-negative number of seconds")
        if max_retries is not None and max_retries < 0:
            raise ValueError("max_retries must be a non-negative number")
        return cls(
            api_url=url.rstrip("/"),
            api_key=api_key or environ.get("SANDPIT_API_KEY") or None,
            request_timeout=DEFAULT_REQUEST_TIMEOUT if request_timeout is None else float(request_timeout),
            max_retries=DEFAULT_MAX_RETRIES if max_retries is None else int(max_retries),
        )


def backoff_delay(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``attempt`` (0 first): exponential from 0.25 s, capped at
    10 s, with jitter that keeps between half and all of it."""
    ceiling = min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)
    return ceiling * (0.5 + rand() * 0.5)


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """A ``Retry-After`` header (delta-seconds or an HTTP date) as seconds from now, or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def path_segment(value: str) -> str:
    """One URL path segment, with everything that is not unreserved percent-encoded."""
    return quote(value, safe="")


@dataclass
class StreamResponse:
    """An answer whose body is read as it arrives, one NDJSON line at a time."""

    response: http.client.HTTPResponse
    connection: http.client.HTTPConnection
    request_id: Optional[str]
    headers: Dict[str, str] = field(default_factory=lambda: {})

    def lines(self) -> Iterator[Any]:
        """Parsed JSON values, one per non-blank line, until the server ends the stream."""
        try:
            while True:
                try:
                    line = self.response.readline()
                except (OSError, http.client.HTTPException) as err:
                    raise NetworkError(
                        f"the response stream broke: {err}", code="network_error", request_id=self.request_id
                    ) from err
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    yield jsonlib.loads(line)
                except ValueError:
                    raise ServerError(
                        f"the server sent a stream line that is not JSON: {line[:200]!r}",
                        code="invalid_response",
                        request_id=self.request_id,
                    ) from None
        finally:
            self.close()

    def close(self) -> None:
        self.connection.close()


@dataclass
class _Answer:
    status: int
    headers: Dict[str, str]
    body: bytes
    request_id: Optional[str]


class _Failure(Exception):
    """One failed attempt: the error to raise if it is not retried, and whether retrying is safe."""

    def __init__(self, error: SandpitError, retryable: bool, delay: Optional[float] = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retryable = retryable
        self.delay = delay


class ApiClient:
    """Sends requests to ``{api_url}/v1``. One client is shared by a sandbox and everything reached from it.

    Retries: GET, PUT, DELETE and PATCH are retried after a network error, a 429 or a 5xx. A POST gets an
    ``Idempotency-Key`` generated once and sent with every attempt, so the server runs it once however
    often it is retried. A streamed POST (foreground commands, cells) is answered live and the server
    cannot replay it: it is retried only when nothing can have run — the connection was refused, or the
    server answered 429/503 before starting.
    """

    def __init__(self, config: ConnectionConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self._sleep = sleep
        parts = urlsplit(config.api_url)
        self._https = parts.scheme == "https"
        self._netloc = parts.netloc
        self._base_path = parts.path.rstrip("/")

    def json(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Query] = None,
        json: Any = None,
        body: Optional[Body] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Any:
        """Sends a request and returns its JSON answer (None for an empty one)."""
        answer = self._send(method, path, query=query, json=json, body=body, headers=headers)
        if not answer.body:
            return None
        try:
            return jsonlib.loads(answer.body)
        except ValueError:
            raise ServerError(
                f"the response is not JSON: {answer.body[:200]!r}",
                code="invalid_response",
                status=answer.status,
                request_id=answer.request_id,
            ) from None

    def bytes(self, method: str, path: str, *, query: Optional[Query] = None) -> bytes:
        """Sends a request and returns its whole body."""
        headers = {"accept": "application/octet-stream"}
        return self._send(method, path, query=query, headers=headers).body

    def stream(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Query] = None,
        json: Any = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> StreamResponse:
        """Sends a request for an NDJSON answer and returns it once it started; retries stop there."""
        merged = {"accept": "application/x-ndjson", **(headers or {})}
        return self._run(method, path, query, json, None, merged, streaming=True)

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Query] = None,
        json: Any = None,
        body: Optional[Body] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> _Answer:
        return self._run(method, path, query, json, body, dict(headers or {}), streaming=False)

    def _run(
        self,
        method: str,
        path: str,
        query: Optional[Query],
        json: Any,
        body: Optional[Body],
        headers: Dict[str, str],
        *,
        streaming: bool,
    ) -> Any:
        headers = {k.lower(): v for k, v in headers.items()}
        if method == "POST" and not streaming:
            # The server stores the answer under this key: a retry gets it instead of running the request again.
            headers.setdefault("idempotency-key", f"sdk-py-{uuid.uuid4()}")
        # A file-like body is read as it is sent and cannot be sent again.
        retryable_body = body is None or isinstance(body, (bytes, bytearray))
        target = self._target(path, query)
        attempt = 0
        while True:
            try:
                return self._attempt(method, target, json, body, headers, streaming)
            except _Failure as failure:
                if not failure.retryable or not retryable_body or attempt >= self.config.max_retries:
                    raise failure.error from None
                self._sleep(failure.delay if failure.delay is not None else backoff_delay(attempt))
                attempt += 1

    def _attempt(
        self,
        method: str,
        target: str,
        json: Any,
        body: Optional[Body],
        headers: Dict[str, str],
        streaming: bool,
    ) -> Any:
        replayable = method != "POST" or not streaming
        send_headers = {"accept": "application/json", "user-agent": "sandpit-python"}
        if self.config.api_key:
            send_headers["authorization"] = f"Bearer {self.config.api_key}"
        payload: Optional[Body] = None
        if json is not None:
            send_headers["content-type"] = "application/json"
            payload = jsonlib.dumps(json, default=_json_default).encode()
        elif body is not None:
            send_headers["content-type"] = "application/octet-stream"
            payload = bytes(body) if isinstance(body, bytearray) else body
        send_headers.update(headers)
        timeout = self.config.request_timeout or None
        connection_class = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = connection_class(self._netloc, timeout=timeout)
        try:
            try:
                connection.connect()
            except socket.timeout as err:
                raise _Failure(self._timeout_error(target), retryable=False) from err
            except OSError as err:
                # Nothing reached the server: safe to retry whatever the request.
                raise _Failure(self._network_error(f"cannot reach {self.config.api_url}", err), True) from err
            # The response may take the socket over from the connection (``Connection: close``): keep it.
            sock = connection.sock
            try:
                connection.request(method, target, body=payload, headers=send_headers)
                response = connection.getresponse()
            except socket.timeout as err:
                raise _Failure(self._timeout_error(target), retryable=False) from err
            except (OSError, http.client.HTTPException) as err:
                error = self._network_error(f"the connection to {self.config.api_url} broke", err)
                raise _Failure(error, retryable=replayable) from err
            request_id = response.getheader("x-request-id")
            response_headers = {k.lower(): v for k, v in response.getheaders()}
            if response.status >= 400:
                raise self._failure_from(response, request_id, replayable)
            if streaming:
                # The stream lasts as long as the command or cell: the client-side limit ends here.
                sock.settimeout(None)
                stream = StreamResponse(response, connection, request_id, response_headers)
                connection = None  # type: ignore[assignment]  # the stream closes it
                return stream
            try:
                data = response.read()
            except socket.timeout as err:
                raise _Failure(self._timeout_error(target), retryable=False) from err
            except (OSError, http.client.HTTPException) as err:
                error = self._network_error("the response broke off", err, request_id)
                raise _Failure(error, retryable=True) from err
            return _Answer(response.status, response_headers, data, request_id)
        finally:
            if connection is not None:
                connection.close()

    def _failure_from(
        self, response: http.client.HTTPResponse, request_id: Optional[str], replayable: bool
    ) -> _Failure:
        status = response.status
        try:
            text = response.read()
        except (OSError, http.client.HTTPException):
            text = b""
        code = _FALLBACK_CODES.get(status, "internal" if status >= 500 else "http_error")
        message = f"HTTP {status} {response.reason}".strip()
        details: Optional[Dict[str, Any]] = None
        error: Dict[str, Any] = {}
        try:
            error = as_object(as_object(jsonlib.loads(text)).get("error"))
        except ValueError:
            if text.strip() and len(text) < 300:
                message = f"{message}: {text.decode(errors='replace').strip()}"
        if isinstance(error.get("code"), str):
            code = str(error["code"])
        if isinstance(error.get("message"), str) and error["message"]:
            message = str(error["message"])
        if isinstance(error.get("details"), dict):
            details = as_object(error["details"])
        if status == 401 and not self.config.api_key:
            message += " (no API key configured: set SANDPIT_API_KEY or pass api_key)"
        retry_after = parse_retry_after(response.getheader("retry-after"))
        err = make_error(
            message, code=code, status=status, details=details, request_id=request_id, retry_after=retry_after
        )
        if status != 429 and status < 500:
            return _Failure(err, retryable=False)
        if retry_after is not None and retry_after > MAX_RETRY_AFTER:
            return _Failure(err, retryable=False)
        # 429 and 503 are refusals before any work; other 5xx may come after a streamed POST started it.
        return _Failure(err, retryable=replayable or status in (429, 503), delay=retry_after)

    def _target(self, path: str, query: Optional[Query]) -> str:
        target = f"{self._base_path}/v1{path}"
        pairs = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        return f"{target}?{urlencode(pairs)}" if pairs else target

    def _timeout_error(self, target: str) -> TimeoutError:
        return TimeoutError(
            f"the request did not finish within {self.config.request_timeout:g} s ({target})", code="request_timeout"
        )

    def _network_error(self, prefix: str, err: BaseException, request_id: Optional[str] = None) -> NetworkError:
        return NetworkError(f"{prefix}: {err or type(err).__name__}", code="network_error", request_id=request_id)


def _json_default(value: object) -> Any:
    # Mappings other than dict (a MappingProxyType, an os.environ) are JSON objects too.
    if isinstance(value, Mapping):
        return dict(cast(Mapping[str, Any], value))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _query_value(value: Union[str, int, bool]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
