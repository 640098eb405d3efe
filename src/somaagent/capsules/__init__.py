"""Capsules: installable, versioned tool packages that run confined and speak MCP.

A capsule is a manifest (:mod:`~somaagent.capsules.manifest`), its files
(:mod:`~somaagent.capsules.package`) and, for ``python`` capsules, a module whose functions are
the tools. :class:`CapsuleService` installs them per tenant (versions are immutable and tool
definitions pinned by hash) and executes their tools in the sandbox
(:mod:`~somaagent.capsules.sandbox`, :mod:`~somaagent.capsules.runner`) over MCP stdio with the
official ``mcp`` client; :mod:`~somaagent.capsules.mcp_server` serves a tenant's capsules as an
MCP server.
"""

from __future__ import annotations

from somaagent.capsules.hosted import HostServices
from somaagent.capsules.manifest import Manifest, Permissions, ToolSpec
from somaagent.capsules.package import Package, from_archive, from_folder
from somaagent.capsules.service import CapsuleService, SandboxPolicy

__all__ = [
    "CapsuleService",
    "HostServices",
    "Manifest",
    "Package",
    "Permissions",
    "SandboxPolicy",
    "ToolSpec",
    "from_archive",
    "from_folder",
]
