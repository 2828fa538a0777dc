"""``sandbox.commands``: run commands in a sandbox, in the foreground (streamed) or in the background."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Literal, Mapping, Optional, Sequence, Union, overload

from ._http import ApiClient, path_segment
from .errors import NetworkError, SandpitError, make_error

OutputCallback = Callable[[str], None]
Signal = Union[str, int]


@dataclass(frozen=True)
class CommandResult:
    """The outcome of a command that exited."""

    command_id: str
    #: The command's exit code; 128 + n when signal n killed it.
    exit_code: int
    stdout: str
    stderr: str
    duration_ms: float
    #: The server killed the command because it ran past its timeout.
    timed_out: bool
    #: Output went over the server's cap and the rest was dropped.
    truncated: bool


@dataclass(frozen=True)
class CommandInfo:
    """What the API knows about a command."""

    command_id: str
    command: List[str]
    cwd: str
    background: bool
    status: str
    pid: Optional[int]
    exit_code: Optional[int]
    timed_out: bool
    started_at: str
    finished_at: Optional[str]

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> "CommandInfo":
        return cls(
            command_id=data["commandId"],
            command=list(data["command"]),
            cwd=data["cwd"],
            background=data["background"],
            status=data["status"],
            pid=data.get("pid"),
            exit_code=data.get("exitCode"),
            timed_out=data["timedOut"],
            started_at=data["startedAt"],
            finished_at=data.get("finishedAt"),
        )


def timeout_ms(seconds: Optional[float], name: str = "timeout") -> Optional[int]:
    """Seconds (as ``subprocess.run`` takes them) to the API's whole milliseconds."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or seconds <= 0:
        raise ValueError(f"{name} must be a positive number of seconds")
    return max(1, math.ceil(seconds * 1000))


def stream_error(event: Mapping[str, Any], request_id: Optional[str]) -> SandpitError:
    """The typed exception for an ``error`` line of an output stream (a failure, not a program's error)."""
    message = str(event.get("message", "the stream failed"))
    return make_error(message, code=str(event.get("code")), request_id=request_id)


def gather_output(
    events: Iterator[Mapping[str, Any]],
    on_stdout: Optional[OutputCallback],
    on_stderr: Optional[OutputCallback],
    request_id: Optional[str],
    command_id: str = "",
) -> Optional[CommandResult]:
    """Folds a command's event stream into its result, calling the callbacks as output arrives.
    Returns None when the stream ended without an ``exit`` event."""
    stdout: List[str] = []
    stderr: List[str] = []
    for event in events:
        kind = event.get("type")
        if kind == "start":
            command_id = event["commandId"]
        elif kind == "stdout":
            stdout.append(event["data"])
            if on_stdout:
                on_stdout(event["data"])
        elif kind == "stderr":
            stderr.append(event["data"])
            if on_stderr:
                on_stderr(event["data"])
        elif kind == "exit":
            return CommandResult(
                command_id=command_id,
                exit_code=event["exitCode"],
                stdout="".join(stdout),
                stderr="".join(stderr),
                duration_ms=event["durationMs"],
                timed_out=event["timedOut"],
                truncated=event["truncated"],
            )
        elif kind == "error":
            raise stream_error(event, request_id)
    return None


class CommandHandle:
    """A command running in the background: follow its output, wait for it, send it input, or kill it."""

    def __init__(
        self,
        client: ApiClient,
        sandbox_id: str,
        command_id: str,
        pid: Optional[int],
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> None:
        self.command_id = command_id
        self.pid = pid
        self._client = client
        self._sandbox_id = sandbox_id
        self._on_stdout = on_stdout
        self._on_stderr = on_stderr
        self._result: Optional[CommandResult] = None

    def logs(self) -> Iterator[Dict[str, Any]]:
        """The command's events from its start (``start``, ``stdout``, ``stderr``, then ``exit`` or ``error``),
        following it until it exits. Each call opens a new stream."""
        response = self._client.stream("GET", f"{self._path()}/logs")
        yield from response.lines()

    def wait(self) -> CommandResult:
        """Waits for the command to exit and returns its result with all of its output; the callbacks
        given to ``run`` see the output as it comes."""
        if self._result is None:
            response = self._client.stream("GET", f"{self._path()}/logs")
            result = gather_output(
                response.lines(), self._on_stdout, self._on_stderr, response.request_id, self.command_id
            )
            if result is None:
                raise NetworkError("the output stream ended before the command exited", code="network_error")
            self._result = result
        return self._result

    def info(self) -> CommandInfo:
        """What the API knows about the command now."""
        return CommandInfo.from_api(self._client.json("GET", self._path()))

    def kill(self, signal: Signal = "SIGKILL") -> None:
        """Sends a signal (a name such as ``SIGTERM``, or a number) to the command."""
        self._client.json("POST", f"{self._path()}/kill", json={"signal": signal})

    def send_stdin(self, data: Union[str, bytes]) -> None:
        """More input for a command started with ``stdin_open=True``."""
        payload = {"data": data} if isinstance(data, str) else {"dataBase64": base64.b64encode(data).decode()}
        self._client.json("POST", f"{self._path()}/stdin", json=payload)

    def close_stdin(self) -> None:
        """Closes the command's stdin: it reads end of file."""
        self._client.json("POST", f"{self._path()}/stdin", json={"close": True})

    def _path(self) -> str:
        return f"/sandboxes/{path_segment(self._sandbox_id)}/commands/{path_segment(self.command_id)}"


class Commands:
    """Runs and inspects commands in one sandbox; reached as ``sandbox.commands``."""

    def __init__(self, client: ApiClient, sandbox_id: str) -> None:
        self._client = client
        self._sandbox_id = sandbox_id

    @overload
    def run(
        self,
        cmd: Union[str, Sequence[str]],
        *,
        cwd: Optional[str] = ...,
        env: Optional[Mapping[str, str]] = ...,
        timeout: Optional[float] = ...,
        stdin: Optional[str] = ...,
        on_stdout: Optional[OutputCallback] = ...,
        on_stderr: Optional[OutputCallback] = ...,
        background: Literal[False] = ...,
        user: Optional[str] = ...,
    ) -> CommandResult: ...

    @overload
    def run(
        self,
        cmd: Union[str, Sequence[str]],
        *,
        cwd: Optional[str] = ...,
        env: Optional[Mapping[str, str]] = ...,
        timeout: Optional[float] = ...,
        stdin: Optional[str] = ...,
        on_stdout: Optional[OutputCallback] = ...,
        on_stderr: Optional[OutputCallback] = ...,
        background: Literal[True],
        stdin_open: bool = ...,
        user: Optional[str] = ...,
    ) -> CommandHandle: ...

    def run(
        self,
        cmd: Union[str, Sequence[str]],
        *,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        stdin: Optional[str] = None,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
        background: bool = False,
        stdin_open: bool = False,
        user: Optional[str] = None,
    ) -> Union[CommandResult, CommandHandle]:
        """Runs a command: a string through ``/bin/sh -c``, a list as argv without a shell.

        In the foreground it returns once the command exited, whatever its exit code, calling
        ``on_stdout``/``on_stderr`` with output as it is produced. ``timeout`` is in seconds (like
        ``subprocess.run``): the server kills the command then and the result has ``timed_out=True``.
        With ``background=True`` it returns a :class:`CommandHandle` as soon as the command started.
        """
        request: Dict[str, Any] = {"command": cmd} if isinstance(cmd, str) else {"args": list(cmd)}
        optional = {"cwd": cwd, "env": dict(env) if env is not None else None, "stdin": stdin, "user": user}
        request.update({k: v for k, v in optional.items() if v is not None})
        limit = timeout_ms(timeout)
        if limit is not None:
            request["timeoutMs"] = limit
        path = f"/sandboxes/{path_segment(self._sandbox_id)}/exec"
        if background:
            request["background"] = True
            if stdin_open:
                request["stdinOpen"] = True
            started = self._client.json("POST", path, json=request)
            return CommandHandle(
                self._client, self._sandbox_id, started["commandId"], started.get("pid"), on_stdout, on_stderr
            )
        response = self._client.stream("POST", path, json=request)
        result = gather_output(response.lines(), on_stdout, on_stderr, response.request_id)
        if result is None:
            raise NetworkError(
                "the output stream ended before the command exited",
                code="network_error",
                request_id=response.request_id,
            )
        return result

    def list(self) -> List[CommandInfo]:
        """The commands started in the sandbox, running and finished."""
        answer = self._client.json("GET", f"/sandboxes/{path_segment(self._sandbox_id)}/commands")
        return [CommandInfo.from_api(c) for c in answer["commands"]]

    def get(self, command_id: str) -> CommandInfo:
        """What the API knows about one command."""
        path = f"/sandboxes/{path_segment(self._sandbox_id)}/commands/{path_segment(command_id)}"
        return CommandInfo.from_api(self._client.json("GET", path))

    def connect(
        self,
        command_id: str,
        on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
    ) -> CommandHandle:
        """A handle on a command started earlier (for example by another process), by its id."""
        info = self.get(command_id)
        return CommandHandle(self._client, self._sandbox_id, info.command_id, info.pid, on_stdout, on_stderr)
