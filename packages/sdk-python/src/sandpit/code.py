"""``sandbox.code``: cells in live interpreters (code contexts) that keep their variables between runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Union

from ._http import ApiClient, path_segment
from .commands import stream_error, timeout_ms
from .errors import NetworkError

#: Response header of a streamed cell: the id of the context it ran in.
CODE_CONTEXT_HEADER = "x-code-context-id"


@dataclass(frozen=True)
class Result:
    """One rich result of a cell: a MIME bundle (``text/plain``, ``text/html``, ``image/png`` as base64...).
    ``is_main_result`` marks the cell's value, as opposed to something displayed (a figure)."""

    is_main_result: bool
    data: Dict[str, Any]

    @property
    def text(self) -> Optional[str]:
        value = self.data.get("text/plain")
        return value if isinstance(value, str) else None

    @property
    def png(self) -> Optional[str]:
        """The base64 PNG of a figure, if the result is one."""
        value = self.data.get("image/png")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class ExecutionError:
    """What a cell raised: the exception's name, its value and the traceback (plain text)."""

    name: str
    value: str
    traceback: str


@dataclass
class Execution:
    """A finished cell. ``status`` is ``ok``, ``error``, ``timeout`` or ``interrupted``."""

    context_id: str
    stdout: List[str] = field(default_factory=lambda: [])
    stderr: List[str] = field(default_factory=lambda: [])
    results: List[Result] = field(default_factory=lambda: [])
    error: Optional[ExecutionError] = None
    status: str = "ok"
    execution_count: Optional[int] = None
    duration_ms: float = 0

    @property
    def text(self) -> Optional[str]:
        """The ``text/plain`` of the cell's value, if it has one."""
        main = next((r for r in self.results if r.is_main_result), None)
        return main.text if main else None


@dataclass(frozen=True)
class CodeContext:
    """A live interpreter: ``python`` (an IPython kernel), ``javascript`` or ``bash``."""

    id: str
    language: str
    cwd: str
    is_default: bool
    created_at: str

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> "CodeContext":
        return cls(data["id"], data["language"], data["cwd"], data["isDefault"], data["createdAt"])


def gather_execution(
    lines: Iterator[Mapping[str, Any]],
    execution: Execution,
    callbacks: Mapping[str, Optional[Callable[[Any], None]]],
    request_id: Optional[str],
) -> Execution:
    """Folds a cell's events into its execution, calling the callbacks as they arrive."""
    for line in lines:
        kind = line.get("type")
        if kind == "error" and "code" in line:
            # The stream itself failed (the sandbox went away...): not an exception the cell raised.
            raise stream_error(line, request_id)
        if kind in ("stdout", "stderr"):
            getattr(execution, kind).append(line["text"])
            _call(callbacks.get(f"on_{kind}"), line["text"])
        elif kind == "result":
            result = Result(is_main_result=line["isMainResult"], data=dict(line["data"]))
            execution.results.append(result)
            _call(callbacks.get("on_result"), result)
        elif kind == "error":
            execution.error = ExecutionError(line["name"], line["value"], line["traceback"])
            _call(callbacks.get("on_error"), execution.error)
        elif kind == "end":
            execution.status = line["status"]
            execution.execution_count = line.get("executionCount")
            execution.duration_ms = line["durationMs"]
            return execution
    raise NetworkError("the cell's stream ended before the cell did", code="network_error", request_id=request_id)


def _call(callback: Optional[Callable[[Any], None]], value: Any) -> None:
    if callback is not None:
        callback(value)


class Code:
    """Runs cells in the sandbox's code contexts; reached as ``sandbox.code``. Python needs the
    ``code-interpreter`` template; JavaScript and bash run on ``base`` too."""

    def __init__(self, client: ApiClient, sandbox_id: str) -> None:
        self._client = client
        self._sandbox_id = sandbox_id

    def run(
        self,
        code: str,
        *,
        language: Optional[str] = None,
        context: Union[str, CodeContext, None] = None,
        env: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        on_stdout: Optional[Callable[[str], None]] = None,
        on_stderr: Optional[Callable[[str], None]] = None,
        on_result: Optional[Callable[[Result], None]] = None,
        on_error: Optional[Callable[[ExecutionError], None]] = None,
    ) -> Execution:
        """Runs a cell in ``context``, or in the default context of ``language`` (python unless told), and
        returns its execution once it ended, calling the callbacks live. A cell that raises returns too,
        with ``error`` set and ``status="error"``; past ``timeout`` seconds it is interrupted
        (``status="timeout"``) and the context keeps its state. API failures raise."""
        context_id = context.id if isinstance(context, CodeContext) else context
        request: Dict[str, Any] = {"code": code}
        if language is not None:
            request["language"] = language
        if context_id is not None:
            request["contextId"] = context_id
        if env is not None:
            request["env"] = dict(env)
        limit = timeout_ms(timeout)
        if limit is not None:
            request["timeoutMs"] = limit
        response = self._client.stream("POST", f"{self._path()}/run", json=request)
        execution = Execution(context_id=response.headers.get(CODE_CONTEXT_HEADER) or context_id or "")
        callbacks = {"on_stdout": on_stdout, "on_stderr": on_stderr, "on_result": on_result, "on_error": on_error}
        return gather_execution(response.lines(), execution, callbacks, response.request_id)

    def create_context(
        self, *, language: str = "python", cwd: Optional[str] = None, env: Optional[Mapping[str, str]] = None
    ) -> CodeContext:
        """Starts a new interpreter with its own variables, working directory and environment."""
        request: Dict[str, Any] = {"language": language}
        if cwd is not None:
            request["cwd"] = cwd
        if env is not None:
            request["env"] = dict(env)
        return CodeContext.from_api(self._client.json("POST", f"{self._path()}/contexts", json=request))

    def list_contexts(self) -> List[CodeContext]:
        """The sandbox's contexts, the default ones made so far included."""
        answer = self._client.json("GET", f"{self._path()}/contexts")
        return [CodeContext.from_api(c) for c in answer["contexts"]]

    def restart_context(self, context: Union[str, CodeContext]) -> CodeContext:
        """Restarts a context's interpreter: its variables are gone; id, language, cwd and env stay."""
        return CodeContext.from_api(self._client.json("POST", f"{self._context_path(context)}/restart"))

    def remove_context(self, context: Union[str, CodeContext]) -> None:
        """Stops a context's interpreter and forgets it."""
        self._client.json("DELETE", self._context_path(context))

    def _path(self) -> str:
        return f"/sandboxes/{path_segment(self._sandbox_id)}/code"

    def _context_path(self, context: Union[str, CodeContext]) -> str:
        context_id = context.id if isinstance(context, CodeContext) else context
        return f"{self._path()}/contexts/{path_segment(context_id)}"
