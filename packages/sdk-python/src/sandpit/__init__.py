"""Python SDK for Sandpit: gVisor sandboxes that run commands, hold files and run code.

``SANDPIT_URL`` and ``SANDPIT_API_KEY`` come from the environment unless given::

    from sandpit import Sandbox

    with Sandbox.create(template="base") as sandbox:
        result = sandbox.commands.run("echo hello", on_stdout=print)
        sandbox.files.write("/workspace/hello.txt", "hi")
"""

from ._http import ApiClient, ConnectionConfig
from .code import Code, CodeContext, Execution, ExecutionError, Result
from .commands import CommandHandle, CommandInfo, CommandResult, Commands
from .errors import (
    AuthenticationError,
    ConflictError,
    FieldIssue,
    FileNotFoundError,
    NetworkError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    SandboxNotFoundError,
    SandpitError,
    ServerError,
    TimeoutError,
    ValidationError,
)
from .files import EntryInfo, Files, WriteInfo
from .sandbox import Sandbox, Snapshot

__all__ = [
    "ApiClient",
    "AuthenticationError",
    "Code",
    "CodeContext",
    "CommandHandle",
    "CommandInfo",
    "CommandResult",
    "Commands",
    "ConflictError",
    "ConnectionConfig",
    "EntryInfo",
    "Execution",
    "ExecutionError",
    "FieldIssue",
    "FileNotFoundError",
    "Files",
    "NetworkError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "Result",
    "Sandbox",
    "SandboxNotFoundError",
    "SandpitError",
    "ServerError",
    "Snapshot",
    "TimeoutError",
    "ValidationError",
    "WriteInfo",
]
