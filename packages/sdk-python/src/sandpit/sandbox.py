"""``Sandbox``: create, find and control gVisor sandboxes on a Sandpit server; and their snapshots."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Type, Union

from ._http import ApiClient, ConnectionConfig, path_segment
from .code import Code
from .commands import Commands
from .files import Files


def _client(api_url: Optional[str], api_key: Optional[str], config: Optional[ConnectionConfig]) -> ApiClient:
    if config is None:
        config = ConnectionConfig.resolve(api_url=api_url, api_key=api_key)
    return ApiClient(config)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass(frozen=True)
class Snapshot:
    """A snapshot of a sandbox with its memory and processes; ``Sandbox.create(snapshot_id=...)`` continues it."""

    id: str
    name: Optional[str]
    source_sandbox_id: str
    #: ``creating``, ``ready`` or ``failed``.
    status: str
    template: str
    resources: Dict[str, int]
    size_bytes: Optional[int]
    created_at: str

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> "Snapshot":
        return cls(
            id=data["id"],
            name=data.get("name"),
            source_sandbox_id=data["sourceSandboxId"],
            status=data["status"],
            template=data["template"],
            resources=dict(data["resources"]),
            size_bytes=data.get("sizeBytes"),
            created_at=data["createdAt"],
        )

    @classmethod
    def list(
        cls, *, api_url: Optional[str] = None, api_key: Optional[str] = None, config: Optional[ConnectionConfig] = None
    ) -> List["Snapshot"]:
        """The organisation's snapshots."""
        answer = _client(api_url, api_key, config).json("GET", "/snapshots")
        return [cls.from_api(s) for s in answer["snapshots"]]

    @classmethod
    def get(
        cls,
        snapshot_id: str,
        *,
        api_url: Optional[str] = None,
        api_key: Optional[str] = None,
        config: Optional[ConnectionConfig] = None,
    ) -> "Snapshot":
        """One snapshot; :class:`sandpit.NotFoundError` if there is none."""
        return cls.from_api(_client(api_url, api_key, config).json("GET", f"/snapshots/{path_segment(snapshot_id)}"))

    @classmethod
    def delete(
        cls,
        snapshot_id: str,
        *,
        api_url: Optional[str] = None,
        api_key: Optional[str] = None,
        config: Optional[ConnectionConfig] = None,
    ) -> None:
        """Deletes a snapshot; sandboxes started from it are not affected."""
        _client(api_url, api_key, config).json("DELETE", f"/snapshots/{path_segment(snapshot_id)}")


class Sandbox:
    """A gVisor sandbox on a Sandpit server. Its attributes mirror the API's sandbox object as of the last
    answer (``info`` holds it as the API sent it); :meth:`refresh` fetches it again.

    Used as a context manager it is killed on leaving the block::

        with Sandbox.create(template="base") as sandbox:
            print(sandbox.commands.run("echo hi").stdout)
    """

    def __init__(self, info: Mapping[str, Any], client: ApiClient) -> None:
        self.info: Dict[str, Any] = dict(info)
        self._client = client
        #: Runs and inspects commands.
        self.commands = Commands(client, self.id)
        #: Reads and writes files.
        self.files = Files(client, self.id)
        #: Runs cells in code contexts.
        self.code = Code(client, self.id)

    @classmethod
    def create(
        cls,
        template: Optional[str] = None,
        *,
        env: Optional[Mapping[str, str]] = None,
        timeout_ms: Optional[int] = None,
        metadata: Optional[Mapping[str, str]] = None,
        resources: Optional[Mapping[str, int]] = None,
        cwd: Optional[str] = None,
        snapshot_id: Optional[str] = None,
        network_policy: Optional[Mapping[str, Any]] = None,
        api_url: Optional[str] = None,
        api_key: Optional[str] = None,
        config: Optional[ConnectionConfig] = None,
        **fields: Any,
    ) -> "Sandbox":
        """Creates a sandbox and returns once it is running (``base``, 1 vCPU, 1 GiB, 5 minutes by default).

        ``timeout_ms`` is how long it lives before the server destroys it; ``resources`` takes the API's
        ``{"vcpus", "memoryMb", "diskMb"}``. Any other field of ``POST /v1/sandboxes`` goes by its
        snake_case name (``timeout_action="pause"``, ``internet_access=False``, ``ports=[3000]``), its
        value in the API's shape. Invalid fields raise :class:`sandpit.ValidationError` naming them.
        """
        named = {
            "template": template,
            "env": env,
            "timeout_ms": timeout_ms,
            "metadata": metadata,
            "resources": resources,
            "cwd": cwd,
            "snapshot_id": snapshot_id,
            "network_policy": network_policy,
            **fields,
        }
        request = {_camel(k): v for k, v in named.items() if v is not None}
        client = _client(api_url, api_key, config)
        return cls(client.json("POST", "/sandboxes", json=request), client)

    @classmethod
    def connect(
        cls,
        sandbox_id: str,
        *,
        api_url: Optional[str] = None,
        api_key: Optional[str] = None,
        config: Optional[ConnectionConfig] = None,
    ) -> "Sandbox":
        """An existing sandbox by id; :class:`sandpit.SandboxNotFoundError` if there is none."""
        client = _client(api_url, api_key, config)
        return cls(client.json("GET", f"/sandboxes/{path_segment(sandbox_id)}"), client)

    @classmethod
    def list(
        cls,
        *,
        status: Union[str, Iterable[str], None] = None,
        metadata: Optional[Mapping[str, str]] = None,
        include_destroyed: bool = False,
        limit: Optional[int] = None,
        api_url: Optional[str] = None,
        api_key: Optional[str] = None,
        config: Optional[ConnectionConfig] = None,
    ) -> List["Sandbox"]:
        """The organisation's sandboxes, newest first: only those in ``status`` (one or several) and with
        every ``metadata`` pair, if given; destroyed ones only with ``include_destroyed=True``."""
        client = _client(api_url, api_key, config)
        query: Dict[str, Any] = {
            "status": status if status is None or isinstance(status, str) else ",".join(status),
            "includeDestroyed": True if include_destroyed else None,
            "limit": limit,
        }
        for key, value in (metadata or {}).items():
            query[f"metadata.{key}"] = value
        answer = client.json("GET", "/sandboxes", query=query)
        return [cls(info, client) for info in answer["sandboxes"]]

    @property
    def id(self) -> str:
        return str(self.info["id"])

    @property
    def status(self) -> str:
        """Lifecycle state: ``creating``, ``running``, ``paused``, ``destroyed``, ``error``... as of the last answer."""
        return str(self.info["status"])

    @property
    def template(self) -> str:
        return str(self.info["template"])

    @property
    def metadata(self) -> Dict[str, str]:
        return dict(self.info.get("metadata") or {})

    @property
    def env_keys(self) -> List[str]:
        """Names of the sandbox's environment variables (values are never returned)."""
        return list(self.info.get("envKeys") or [])

    @property
    def resources(self) -> Dict[str, int]:
        return dict(self.info.get("resources") or {})

    @property
    def cwd(self) -> str:
        return str(self.info["cwd"])

    @property
    def expires_at(self) -> Optional[str]:
        """When the server destroys the sandbox (RFC 3339) unless its timeout is extended."""
        return self.info.get("expiresAt")

    def refresh(self) -> "Sandbox":
        """Fetches the sandbox's attributes again."""
        self.info = self._client.json("GET", self._path())
        return self

    def set_timeout(self, timeout_ms: int) -> None:
        """The sandbox is destroyed ``timeout_ms`` milliseconds from now (1 s to 24 h), replacing the old expiry."""
        self.info = self._client.json("POST", f"{self._path()}/timeout", json={"timeoutMs": timeout_ms})

    def set_metadata(self, patch: Mapping[str, Optional[str]]) -> Dict[str, str]:
        """Merges metadata: a string sets the key, None removes it, keys left out stay. Returns the result."""
        self.info = self._client.json("PATCH", self._path(), json={"metadata": dict(patch)})
        return self.metadata

    def pause(self) -> None:
        """Saves memory and processes and stops the sandbox (``paused``; no expiry while paused)."""
        self.info = self._client.json("POST", f"{self._path()}/pause")

    def resume(self) -> None:
        """Restores a paused sandbox with its processes and memory as they were."""
        self.info = self._client.json("POST", f"{self._path()}/resume")

    def snapshot(self, name: Optional[str] = None) -> Snapshot:
        """Snapshots the sandbox with its memory and processes; the sandbox keeps running."""
        request = {} if name is None else {"name": name}
        return Snapshot.from_api(self._client.json("POST", f"{self._path()}/snapshots", json=request))

    def fork(self, count: int = 1) -> List["Sandbox"]:
        """``count`` new running sandboxes that continue this one (files, processes and memory)."""
        answer = self._client.json("POST", f"{self._path()}/fork", json={"count": count})
        return [Sandbox(info, self._client) for info in answer["sandboxes"]]

    def kill(self) -> None:
        """Destroys the sandbox; killing it twice succeeds."""
        self._client.json("DELETE", self._path())

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.kill()

    def __repr__(self) -> str:
        return f"Sandbox(id={self.id!r}, status={self.status!r}, template={self.template!r})"

    def _path(self) -> str:
        return f"/sandboxes/{path_segment(self.id)}"
