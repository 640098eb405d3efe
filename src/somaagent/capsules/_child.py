"""The MCP stdio server that runs a python capsule inside the sandbox.

This file is copied into the sandbox and run by a bare interpreter (``python -I -S``), so it
uses the standard library only: importing the ``mcp`` package cost ~0.55 s per start here,
over the whole cold-call budget, while this speaks the same newline-delimited JSON-RPC
(``initialize``, ``tools/list``, ``tools/call``, ``ping``) in a few milliseconds. The gateway
talks to it with the official ``mcp`` client.

Usage: ``python -I -S _child.py MANIFEST.json``. The manifest's ``entry`` module (relative to
the manifest's folder) holds one function per tool, called with the arguments as keywords.
A function returns a dict (the structured result), or any other JSON value (wrapped as
``{"result": value}``); raising an exception makes an ``isError`` result.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
from typing import Any

PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")


def _tool_result(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {
            "content": [{"type": "text", "text": json.dumps(value, ensure_ascii=False)}],
            "structuredContent": value,
            "isError": False,
        }
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": {"result": value},
        "isError": False,
    }


def _error_result(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}


class _Server:
    def __init__(self, manifest_path: str) -> None:
        with open(manifest_path, encoding="utf-8") as handle:
            self.manifest = json.load(handle)
        base = os.path.dirname(os.path.abspath(manifest_path))
        sys.path.insert(0, base)
        entry = os.path.join(base, self.manifest["entry"])
        spec = importlib.util.spec_from_file_location("capsule_tools", entry)
        if spec is None or spec.loader is None:
            raise ImportError(entry)
        self.module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.module)

    def tools(self) -> list[dict[str, Any]]:
        out = []
        for tool in self.manifest["tools"]:
            item = {"name": tool["name"], "description": tool.get("description", "")}
            item["inputSchema"] = tool.get("input_schema") or {"type": "object"}
            if tool.get("output_schema") is not None:
                item["outputSchema"] = tool["output_schema"]
            out.append(item)
        return out

    def call(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        known = {tool["name"] for tool in self.manifest["tools"]}
        function = getattr(self.module, str(name), None) if name in known else None
        if function is None:
            return _error_result(f"unknown tool: {name}")
        try:
            value = function(**(params.get("arguments") or {}))
        except MemoryError:
            return _error_result("MemoryError: the capsule ran out of its memory limit")
        except Exception as exc:  # the tool's own failure is a result, not a crash
            import traceback  # only when a tool fails: it costs start-up time otherwise

            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            return _error_result(detail[:2000])
        try:
            return _tool_result(value)
        except (TypeError, ValueError) as exc:
            return _error_result(f"the tool returned a value that is not JSON: {exc}")

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        method = message.get("method")
        params = message.get("params") or {}
        if method == "initialize":
            asked = params.get("protocolVersion")
            return {
                "protocolVersion": asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[-1],
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {
                    "name": self.manifest.get("name", "capsule"),
                    "version": self.manifest.get("version", "0.0.0"),
                },
            }
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": self.tools()}
        if method == "tools/call":
            return self.call(params)
        raise LookupError(method)


def main() -> None:
    # Keep the protocol channel to ourselves: what the tool prints goes to stderr.
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n")
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), write_through=True)
    server = _Server(sys.argv[1])
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if "id" not in message or "method" not in message:
            continue  # notifications and responses need no answer
        reply = {"jsonrpc": "2.0", "id": message["id"]}
        try:
            with contextlib.redirect_stdout(sys.stderr):
                reply["result"] = server.handle(message)
        except LookupError as exc:
            reply["error"] = {"code": -32601, "message": f"method not found: {exc}"}
        try:
            text = json.dumps(reply, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            text = json.dumps(
                {"jsonrpc": "2.0", "id": message["id"], "result": _error_result(str(exc))}
            )
        channel.write(text + "\n")
        channel.flush()


if __name__ == "__main__":
    main()
