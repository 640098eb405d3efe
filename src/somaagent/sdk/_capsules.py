"""``client.capsules``: install, list, remove and execute capsules (sandboxed tool packages).

::

    client.capsules.install("calculator")                 # from the shipped catalog
    client.capsules.install("./mytool")                    # a folder with capsule.yaml
    result = client.capsules.execute("calculator", arguments={"expression": "2*(3+4)"})
    print(result.text, result.sandbox_tier)                # 14 bwrap

The calls are built here once, with no I/O; a local folder is packed into a ``.tar.gz`` with
the standard library before it is uploaded.
"""

from __future__ import annotations

import base64
import builtins
import io
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from somaagent.sdk._base import APICall
from somaagent.sdk._calls import AsyncSender, SyncSender, drop_none, model_parser, no_content
from somaagent.types import Page
from somaagent.types.capsules import Capsule, CapsuleVersion, Execution

__all__ = ["AsyncCapsules", "Capsules", "pack_folder"]

_SKIP = {"__pycache__", ".git", ".venv", "node_modules", ".pytest_cache", ".mypy_cache"}


def pack_folder(folder: str | os.PathLike[str]) -> bytes:
    """A capsule folder as ``.tar.gz`` bytes (caches and VCS folders left out)."""
    root = Path(folder)
    if not (root / "capsule.yaml").is_file() and not (root / "capsule.json").is_file():
        raise ValueError(f"{root} holds no capsule.yaml")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if any(part in _SKIP for part in rel.parts) or path.suffix == ".pyc":
                continue
            if path.is_file() and not path.is_symlink():
                archive.add(path, arcname=rel.as_posix(), recursive=False)
    return buffer.getvalue()


def _name(name: str, suffix: str = "") -> str:
    if not name:
        raise ValueError("a capsule name must be a non-empty string")
    return f"/v1/capsules/{quote(name, safe='@')}{suffix}"


def _capsule_list(response: httpx.Response) -> builtins.list[Capsule]:
    return [Capsule.model_validate(item) for item in response.json()["data"]]


def _version_list(response: httpx.Response) -> builtins.list[CapsuleVersion]:
    return [CapsuleVersion.model_validate(item) for item in response.json()["data"]]


def install_body(source: str | os.PathLike[str] | bytes) -> dict[str, str]:
    """The install request for a catalog id, a local folder or archive, or archive bytes."""
    if isinstance(source, bytes):
        return {"archive_base64": base64.b64encode(source).decode()}
    path = Path(source)
    text = os.fspath(source)
    if path.is_dir():
        return {"archive_base64": base64.b64encode(pack_folder(path)).decode()}
    if path.is_file():
        return {"archive_base64": base64.b64encode(path.read_bytes()).decode()}
    if os.sep in text or text.startswith("."):
        raise FileNotFoundError(f"no such capsule folder or archive: {text}")
    return {"id": text}


def list_call(*, installed: bool | None, query: str | None) -> APICall[builtins.list[Capsule]]:
    params = drop_none(installed=None if installed is None else str(installed).lower(), q=query)
    return APICall("GET", "/v1/capsules", _capsule_list, params=params or None)


def install_call(source: str | os.PathLike[str] | bytes) -> APICall[Capsule]:
    return APICall("POST", "/v1/capsules", model_parser(Capsule), json=install_body(source))


def get_call(name: str) -> APICall[Capsule]:
    return APICall("GET", _name(name), model_parser(Capsule))


def versions_call(name: str) -> APICall[builtins.list[CapsuleVersion]]:
    return APICall("GET", _name(name, "/versions"), _version_list)


def uninstall_call(name: str) -> APICall[None]:
    return APICall("DELETE", _name(name), no_content)


def execute_call(
    name: str, tool: str | None, arguments: Mapping[str, Any] | None, version: str | None
) -> APICall[Execution]:
    ref = f"{name}@{version}" if version else name
    body = {"tool": tool, "arguments": dict(arguments or {})}
    return APICall("POST", _name(ref, "/execute"), model_parser(Execution), json=body)


def executions_call(
    capsule: str | None, *, limit: int, cursor: str | None
) -> APICall[Page[Execution]]:
    params = drop_none(capsule=capsule, limit=limit, cursor=cursor)
    return APICall("GET", "/v1/capsules/executions", model_parser(Page[Execution]), params=params)


class Capsules:
    """``client.capsules``: sandboxed, versioned tool packages that speak MCP."""

    def __init__(self, client: SyncSender) -> None:
        self._client = client

    def list(
        self, *, installed: bool | None = None, query: str | None = None
    ) -> builtins.list[Capsule]:
        """The tenant's installed capsules and the catalog's others (``installed`` filters)."""
        return self._client._call(list_call(installed=installed, query=query))

    def get(self, name: str) -> Capsule:
        """One capsule: the installed version, else the catalog's entry."""
        return self._client._call(get_call(name))

    def versions(self, name: str) -> builtins.list[CapsuleVersion]:
        """Every stored version of an installed capsule, newest first."""
        return self._client._call(versions_call(name))

    def install(self, source: str | os.PathLike[str] | bytes) -> Capsule:
        """Install a catalog id (``"calculator"``), a local folder or archive, or archive bytes.

        Raises:
            ConflictError: that version is installed with different content (bump the version).
            ValidationError: the manifest is invalid (``errors`` names the fields).
        """
        return self._client._call(install_call(source))

    def uninstall(self, name: str) -> None:
        """Uninstall a capsule (its stored versions stay)."""
        self._client._call(uninstall_call(name))

    def execute(
        self,
        name: str,
        tool: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        *,
        version: str | None = None,
    ) -> Execution:
        """Call a tool (default: the capsule's first) in its sandbox; check ``is_error``."""
        return self._client._call(execute_call(name, tool, arguments, version))

    def executions(
        self, capsule: str | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Execution]:
        """The tenant's recorded tool calls, newest first."""
        return self._client._call(executions_call(capsule, limit=limit, cursor=cursor))


class AsyncCapsules:
    """``client.capsules`` on :class:`~somaagent.AsyncClient`."""

    def __init__(self, client: AsyncSender) -> None:
        self._client = client

    async def list(
        self, *, installed: bool | None = None, query: str | None = None
    ) -> builtins.list[Capsule]:
        """The tenant's installed capsules and the catalog's others (``installed`` filters)."""
        return await self._client._call(list_call(installed=installed, query=query))

    async def get(self, name: str) -> Capsule:
        """One capsule: the installed version, else the catalog's entry."""
        return await self._client._call(get_call(name))

    async def versions(self, name: str) -> builtins.list[CapsuleVersion]:
        """Every stored version of an installed capsule, newest first."""
        return await self._client._call(versions_call(name))

    async def install(self, source: str | os.PathLike[str] | bytes) -> Capsule:
        """Install a catalog id, a local folder or archive, or archive bytes."""
        return await self._client._call(install_call(source))

    async def uninstall(self, name: str) -> None:
        """Uninstall a capsule (its stored versions stay)."""
        await self._client._call(uninstall_call(name))

    async def execute(
        self,
        name: str,
        tool: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        *,
        version: str | None = None,
    ) -> Execution:
        """Call a tool (default: the capsule's first) in its sandbox; check ``is_error``."""
        return await self._client._call(execute_call(name, tool, arguments, version))

    async def executions(
        self, capsule: str | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Execution]:
        """The tenant's recorded tool calls, newest first."""
        return await self._client._call(executions_call(capsule, limit=limit, cursor=cursor))
