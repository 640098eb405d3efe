"""The operator's sandbox policy, and what a sandbox tier cannot enforce.

A network allow-list is enforced only in the ``bwrap`` tier (its own network namespace and the
egress proxy). The ``landlock`` tier cannot: seccomp sees sockets and addresses, not host names,
and Landlock's network rules are per TCP port, so it can only allow all network or none; the
``rlimits`` tier confines nothing. Rather than fake a host list there, such a capsule is
refused when it is executed (a 403 ``capsule-permissions-unenforceable`` naming the tier and
what it needs), unless the operator allows unconfined runs. Installing it is not refused: the
version may be run by another gateway, one with bubblewrap, on the same database.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from somaagent.capsules.manifest import Manifest
from somaagent.capsules.sandbox import Tier

__all__ = ["UNENFORCEABLE", "SandboxPolicy", "unenforceable"]

UNENFORCEABLE = "urn:somaagent:problem:capsule-permissions-unenforceable"


@dataclass(frozen=True, slots=True)
class SandboxPolicy:
    """The operator's sandbox settings."""

    root: Path
    tier: Literal["auto", "bwrap", "landlock", "rlimits"] = "auto"
    allow_unconfined: bool = False
    """Run capsules whose permissions the tier cannot enforce (e.g. a network allow-list)."""
    max_concurrent: int = 16
    """Sandboxed processes at once; more calls wait their turn (the machine stays usable)."""
    egress_mb: int = 64
    """Bytes (MiB) the egress proxy relays for one execution when its manifest sets no
    ``permissions.egress_mb``."""
    warm_pool: int = 0
    """Sandboxes kept pre-started per capsule version (each used for one call; ``warm.py``);
    0: every call starts its own."""


def unenforceable(manifest: Manifest, tier: Tier) -> str | None:
    """What in ``manifest``'s permissions ``tier`` cannot enforce, or ``None``."""
    if manifest.kind == "builtin" or manifest.url is not None:
        return None  # run by the gateway itself, not in a sandbox
    perms = manifest.permissions
    if tier == "rlimits":
        return (
            "the rlimits tier confines neither network nor filesystem (it needs the bwrap tier: "
            "bubblewrap with unprivileged user namespaces, or the landlock tier: Linux 5.13+)"
        )
    if isinstance(perms.network, list) and perms.network and tier != "bwrap":
        # bwrap enforces the list with its own network namespace and the egress proxy.
        return (
            f"the {tier} tier can grant all network or none, not an allow-list of hosts "
            f"(permissions.network: {', '.join(perms.network)}); the bwrap tier enforces "
            "allow-lists: install bubblewrap (Debian: apt-get install bubblewrap) where "
            "unprivileged user namespaces work, and set SOMA_CAPSULES_SANDBOX=auto or bwrap"
        )
    return None
