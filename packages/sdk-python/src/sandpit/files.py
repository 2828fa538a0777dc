"""``sandbox.files``: read, write, list and remove files inside a sandbox."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import IO, Any, Dict, List, Literal, Mapping, Optional, Union, overload

from ._http import ApiClient, path_segment
from .errors import NotFoundError, SandpitError


@dataclass(frozen=True)
class EntryInfo:
    """One entry of a directory listing."""

    name: str
    path: str
    #: ``file``, ``dir``, ``symlink`` or ``other``.
    type: str
    size: int
    #: Permission bits in octal, e.g. ``0644``.
    mode: str
    mtime: str
    #: Target of a symlink.
    target: Optional[str] = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> "EntryInfo":
        return cls(
            name=data["name"],
            path=data["path"],
            type=data["type"],
            size=data["size"],
            mode=data["mode"],
            mtime=data["mtime"],
            target=data.get("target"),
        )


@dataclass(frozen=True)
class WriteInfo:
    """What the server stored: the file's path and its size in bytes."""

    path: str
    size: int


def _mode(mode: Union[str, int, None]) -> Optional[str]:
    if mode is None or isinstance(mode, str):
        return mode
    if isinstance(mode, bool) or not 0 <= mode <= 0o7777:
        raise ValueError("mode must be between 0 and 0o7777")
    return format(mode, "03o")


class Files:
    """Reads and writes files in one sandbox; reached as ``sandbox.files``."""

    def __init__(self, client: ApiClient, sandbox_id: str) -> None:
        self._client = client
        self._sandbox_id = sandbox_id

    @overload
    def read(self, path: str, format: Literal["text"] = ...) -> str: ...

    @overload
    def read(self, path: str, format: Literal["bytes"]) -> bytes: ...

    def read(self, path: str, format: Literal["text", "bytes"] = "text") -> Union[str, bytes]:
        """A file's content: UTF-8 text by default, or ``format="bytes"``. Raises
        :class:`sandpit.FileNotFoundError` when there is no such file."""
        data = self._client.bytes("GET", self._path(""), query={"path": path})
        return data if format == "bytes" else data.decode("utf-8")

    def write(self, path: str, data: Union[str, bytes, IO[bytes]], *, mode: Union[str, int, None] = None) -> WriteInfo:
        """Writes a file, creating its parent directories and replacing what was there. Text is written
        as UTF-8; a binary file object is streamed as it is read (and then not retried). ``mode`` is the
        permission bits (``"755"`` or ``0o755``), 644 by default."""
        body = data.encode("utf-8") if isinstance(data, str) else data
        query = {"path": path, "mode": _mode(mode)}
        answer = self._client.json("PUT", self._path(""), query=query, body=body)
        return WriteInfo(path=answer["path"], size=answer["size"])

    def list(self, path: str) -> List[EntryInfo]:
        """A directory's entries (not recursive)."""
        answer = self._client.json("GET", self._path("/list"), query={"path": path})
        return [EntryInfo.from_api(e) for e in answer["entries"]]

    def exists(self, path: str) -> bool:
        """Whether a file, directory or symlink is at ``path``."""
        normalized = posixpath.normpath(path)
        if normalized == "/":
            return True
        parent, name = posixpath.split(normalized)
        try:
            return any(entry.name == name for entry in self.list(parent))
        except NotFoundError:
            return False
        except SandpitError as err:
            # A file where a directory is expected on the way (``/etc/hosts/x``): nothing can be there.
            if err.code == "bad_request" and "not a directory" in err.message:
                return False
            raise

    def remove(self, path: str, *, recursive: bool = False) -> None:
        """Removes a file, or a directory with ``recursive=True``."""
        self._client.json("DELETE", self._path(""), query={"path": path, "recursive": True if recursive else None})

    def make_dir(self, path: str, *, parents: bool = True, mode: Union[str, int, None] = None) -> None:
        """Creates a directory, and its missing parents unless ``parents=False``."""
        request: Dict[str, Any] = {"path": path, "parents": parents}
        if mode is not None:
            request["mode"] = _mode(mode)
        self._client.json("POST", self._path("/mkdir"), json=request)

    def _path(self, suffix: str) -> str:
        return f"/sandboxes/{path_segment(self._sandbox_id)}/files{suffix}"
