"""The runner: one tool call in a fresh sandboxed process, over MCP.

Each call gets a private working directory and (as root) its own uid; the capsule's code is
unpacked once per content hash into a read-only cache. The official ``mcp`` client does the
handshake and the call; the result is checked against the tool's pinned output schema
(``results.py``), so a capsule cannot return what its manifest does not promise. A capsule with
a network allow-list gets an egress proxy for the call (``egress.py``, bwrap tier), with a byte
cap (a call over it fails with that reason, whatever the capsule returned); with a warm
pool (``warm.py``) a call may be served by a process started before it, used for that call only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import shutil
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Hashable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import mcp_types
from mcp import ClientSession

from somaagent.capsules.egress import DEFAULT_EGRESS_BYTES, egress_proxy
from somaagent.capsules.manifest import Manifest, ToolSpec, tool_sha256
from somaagent.capsules.results import Outcome, finish, schema_problem, tool_from_mcp
from somaagent.capsules.sandbox import (
    CODE_DIR,
    CONFINE_NAME,
    RELAY_NAME,
    WORK_DIR,
    Limits,
    SandboxSpec,
    Tier,
    build_command,
    sandbox_python,
    take_uid,
)
from somaagent.capsules.transport import SandboxedProcess
from somaagent.capsules.warm import WarmPool, WarmProcess
from somaagent.errors import ValidationError

__all__ = ["Outcome", "Runner", "finish", "limits_for", "schema_problem", "tool_from_mcp"]

_CHILD = Path(__file__).with_name("_child.py")
_CHILD_NAME = "_soma_child.py"
_CONFINE = Path(__file__).with_name("_confine.py")
_RELAY = Path(__file__).with_name("_relay.py")


@functools.cache
def _runtime_version() -> str:
    digest = hashlib.sha256(_CHILD.read_bytes() + _CONFINE.read_bytes() + _RELAY.read_bytes())
    return digest.hexdigest()[:12]


def limits_for(manifest: Manifest) -> Limits:
    """The sandbox limits a manifest's permissions ask for."""
    perms = manifest.permissions
    return Limits(
        timeout_s=perms.timeout_s,
        memory_mb=perms.memory_mb,
        cpu_s=perms.cpu_s,
        processes=perms.processes,
        output_bytes=perms.output_kb * 1024,
    )


class Runner:
    """Starts sandboxed capsule processes under one root folder, with one tier."""

    def __init__(
        self,
        root: Path,
        tier: Tier,
        *,
        max_concurrent: int = 16,
        allow_private: bool = False,
        warm: WarmPool | None = None,
        egress_bytes: int = DEFAULT_EGRESS_BYTES,
    ) -> None:
        self.root = root
        self.egress_bytes = egress_bytes
        """The egress proxy's byte cap per execution when the manifest sets none."""
        self.tier = tier
        self.warm = warm
        """Pre-started single-use sandboxes (``warm.py``); ``None``: every call is cold."""
        self.allow_private = allow_private
        """Let the egress proxy reach loopback, link-local and private addresses."""
        self._slots = anyio.Semaphore(max_concurrent)
        for folder in (root, root / "code", root / "work"):
            folder.mkdir(parents=True, exist_ok=True)
            # Other uids (each sandbox's) must be able to pass through to their own folders.
            if folder.stat().st_mode & 0o711 != 0o711:
                folder.chmod(0o711)

    def code_dir(self, manifest: Manifest, archive: bytes) -> Path:
        """The capsule's files unpacked read-only, once per content hash."""
        assert manifest.sha256 is not None
        # Keyed by the runtime files too, so an upgrade never runs an old copy of them.
        target = self.root / "code" / f"{manifest.sha256}-{_runtime_version()}"
        if target.is_dir():
            return target
        staging = self.root / "code" / f".{manifest.sha256}.{uuid.uuid4().hex}"
        staging.mkdir(mode=0o755)
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            tar.extractall(staging, filter="data")
        (staging / "manifest.json").write_text(json.dumps(manifest.model_dump(mode="json")))
        shutil.copyfile(_CHILD, staging / _CHILD_NAME)
        shutil.copyfile(_CONFINE, staging / CONFINE_NAME)
        shutil.copyfile(_RELAY, staging / RELAY_NAME)
        for path in [staging, *staging.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            staging.rename(target)
        except OSError:  # another call unpacked it first
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def _argv(self, manifest: Manifest, code: Path) -> tuple[list[str], list[str]]:
        # Inside bubblewrap the code is at /capsule; without it, at its host path.
        root = CODE_DIR if self.tier == "bwrap" else str(code)
        if manifest.kind == "python":
            python, extra = sandbox_python()
            child = [f"{root}/{_CHILD_NAME}", f"{root}/manifest.json"]
            return [python, "-I", "-S", "-B", *child], extra
        assert manifest.command is not None
        return [arg.replace(CODE_DIR, root, 1) for arg in manifest.command], []

    async def call(
        self,
        manifest: Manifest,
        archive: bytes,
        tool: ToolSpec,
        arguments: dict[str, Any],
        *,
        check_pins: bool = False,
    ) -> Outcome:
        """Run ``tool`` once in a fresh sandbox and return what it gave back."""
        async with self._slots:
            return await self._call(manifest, archive, tool, arguments, check_pins=check_pins)

    async def _call(
        self,
        manifest: Manifest,
        archive: bytes,
        tool: ToolSpec,
        arguments: dict[str, Any],
        *,
        check_pins: bool,
    ) -> Outcome:
        started = time.perf_counter()
        perms = manifest.permissions
        hosts = perms.network if isinstance(perms.network, list) else []
        if self.warm is not None and not hosts and manifest.url is None:
            key = self.warm_key(manifest)
            warm = self.warm.take(key)
            self.warm.refill(key, lambda: self._open_warm(manifest, archive))
            if warm is not None:
                try:
                    session = contextlib.nullcontext(warm.session)
                    return await self._session(
                        warm.process, manifest, tool, arguments, started, check_pins, session
                    )
                finally:
                    warm.released.set()  # used once: its task kills it and cleans up
        limits = limits_for(manifest)
        code = await anyio.to_thread.run_sync(self.code_dir, manifest, archive)
        uid = take_uid()
        work = self._work_dir(uid)
        argv, extra = self._argv(manifest, code)
        try:
            async with contextlib.AsyncExitStack() as stack:
                # bwrap: allowed hosts through the egress proxy; its network namespace stays shut.
                proxy = None
                if hosts and self.tier == "bwrap":
                    cap = perms.egress_mb * 1024 * 1024 if perms.egress_mb else self.egress_bytes
                    proxy = await stack.enter_async_context(
                        egress_proxy(
                            self.root,
                            hosts,
                            allow_private=self.allow_private,
                            uid=uid,
                            max_bytes=cap,
                        )
                    )
                spec = SandboxSpec(
                    argv=argv,
                    code_dir=code,
                    work_dir=work,
                    limits=limits,
                    network=perms.wants_network and proxy is None,
                    read_only=[] if perms.filesystem == "none" else list(perms.filesystem),
                    extra_ro=extra,
                    uid=uid,
                    egress=proxy.socket_path if proxy is not None else None,
                )
                process = SandboxedProcess(
                    build_command(spec, self.tier),
                    cwd=work,
                    uid=uid,
                    limits=limits,
                    always_sweep=self.tier != "bwrap",
                    home=self._home(work),
                )
                outcome = await self._session(
                    process,
                    manifest,
                    tool,
                    arguments,
                    started,
                    check_pins,
                    _client_session(process),
                )
                if proxy is not None and proxy.exceeded is not None:
                    # over the cap is a failed call, even if the capsule swallowed the cut
                    said = f" ({outcome.error})" if outcome.is_error and outcome.error else ""
                    return Outcome.failed(
                        f"capsule {manifest.name}: {proxy.exceeded}{said}"[:2000],
                        tier=self.tier,
                        started=started,
                    )
                if proxy is not None and outcome.is_error:
                    outcome.error = _with_refusals(outcome.error, proxy.refused)
                return outcome
        finally:
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(work, ignore_errors=True))

    def warm_key(self, manifest: Manifest) -> Hashable:
        """What warm processes are kept per: the capsule version's content and the tier."""
        return (manifest.name, manifest.sha256, _runtime_version(), self.tier)

    @contextlib.asynccontextmanager
    async def _open_warm(self, manifest: Manifest, archive: bytes) -> AsyncIterator[WarmProcess]:
        """One sandbox for the warm pool, started and past the MCP handshake."""
        limits = limits_for(manifest)
        code = await anyio.to_thread.run_sync(self.code_dir, manifest, archive)
        uid = take_uid()
        work = self._work_dir(uid)
        argv, extra = self._argv(manifest, code)
        perms = manifest.permissions
        spec = SandboxSpec(
            argv=argv,
            code_dir=code,
            work_dir=work,
            limits=limits,
            read_only=[] if perms.filesystem == "none" else list(perms.filesystem),
            extra_ro=extra,
            uid=uid,
        )
        process = SandboxedProcess(
            build_command(spec, self.tier),
            cwd=work,
            uid=uid,
            limits=limits,
            always_sweep=True,  # its one call may have left anything behind
            home=self._home(work),
        )
        try:
            async with process.streams() as (read, write), ClientSession(read, write) as session:
                with anyio.fail_after(limits.timeout_s):
                    await session.initialize()
                yield WarmProcess(session=session, process=process)
        finally:
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(work, ignore_errors=True))

    async def list_tools(self, manifest: Manifest, archive: bytes) -> list[ToolSpec]:
        """The tools an ``mcp`` capsule's stdio server lists, asked in the sandbox."""
        limits = limits_for(manifest)
        code = await anyio.to_thread.run_sync(self.code_dir, manifest, archive)
        uid = take_uid()
        work = self._work_dir(uid)
        argv, extra = self._argv(manifest, code)
        spec = SandboxSpec(
            argv=argv, code_dir=code, work_dir=work, limits=limits, extra_ro=extra, uid=uid
        )
        process = SandboxedProcess(
            build_command(spec, self.tier), cwd=work, uid=uid, limits=limits, home=self._home(work)
        )
        try:
            with anyio.fail_after(limits.timeout_s):
                return await _listed(process)
        except Exception as exc:
            raise ValidationError(
                f"could not list the tools of {manifest.name}'s MCP server: "
                f"{process.failure or _describe(exc)}",
                errors=[
                    {"loc": ["manifest", "command"], "msg": "server failed", "type": "value_error"}
                ],
            ) from exc
        finally:
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(work, ignore_errors=True))

    def _home(self, work: Path) -> str:
        return WORK_DIR if self.tier == "bwrap" else str(work)

    def _work_dir(self, uid: int | None) -> Path:
        work = self.root / "work" / uuid.uuid4().hex
        work.mkdir(mode=0o700)
        if uid is not None:
            os.chown(work, uid, uid)
        return work

    async def _session(
        self,
        process: SandboxedProcess,
        manifest: Manifest,
        tool: ToolSpec,
        arguments: dict[str, Any],
        started: float,
        check_pins: bool,
        opened: AbstractAsyncContextManager[ClientSession],
    ) -> Outcome:
        limits = process.limits
        result: mcp_types.CallToolResult | None = None
        error: str | None = None
        with anyio.move_on_after(limits.timeout_s) as scope:
            try:
                async with opened as session:
                    if check_pins:
                        error = await _pin_problem(session, tool)
                    if error is None:
                        # A plain tools/call: the client's own output check would list the
                        # tools first (a round trip); finish() checks the pinned schema instead.
                        request = mcp_types.CallToolRequest(
                            params=mcp_types.CallToolRequestParams(
                                name=tool.name, arguments=arguments
                            )
                        )
                        result = await session.send_request(request, mcp_types.CallToolResult)
            except Exception as exc:  # the process died or spoke nonsense: say why below
                error = process.failure or _describe(exc)
        if scope.cancelled_caught:
            process.timed_out()
            await process.kill()
            error = process.failure
        if error is None and process.failure is not None and result is None:
            error = process.failure
        if error is not None or result is None:
            return Outcome.failed(
                f"capsule {manifest.name}: {error or 'no result'}", tier=self.tier, started=started
            )
        return finish(result, tool, tier=self.tier, started=started)


def _with_refusals(error: str | None, refused: list[str]) -> str:
    """A failed call's reason, with what the egress proxy refused when the capsule hid it."""
    error = error or "tool error"
    hidden = [reason for reason in dict.fromkeys(refused) if reason not in error]
    if not hidden:
        return error
    return f"{error} (the egress proxy refused: {'; '.join(hidden)[:500]})"


async def _pin_problem(session: ClientSession, tool: ToolSpec) -> str | None:
    listed = await session.list_tools()
    for item in listed.tools:
        if item.name == tool.name:
            if tool_sha256(tool_from_mcp(item)) != tool.sha256:
                return (
                    f"the server's definition of tool {tool.name!r} differs from the pinned one "
                    "(a changed description or schema needs a new capsule version)"
                )
            return None
    return f"the server no longer offers tool {tool.name!r}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in exc.exceptions)
    text = str(exc) or type(exc).__name__
    return text[:500]


@contextlib.asynccontextmanager
async def _client_session(process: SandboxedProcess) -> AsyncIterator[ClientSession]:
    """An initialised MCP client session with the sandboxed process."""
    async with process.streams() as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def _listed(process: SandboxedProcess) -> list[ToolSpec]:
    async with _client_session(process) as session:
        listed = await session.list_tools()
    return [tool_from_mcp(tool) for tool in listed.tools]
