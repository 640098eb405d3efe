"""The sandbox: how a capsule's process is started, confined and limited.

Two tiers, chosen once per gateway and recorded with every execution:

``bwrap``
    bubblewrap in new user, PID, network, IPC, UTS and cgroup namespaces: a read-only root
    that holds only the system directories (``/usr`` and the dynamic linker's files), the
    capsule's code read-only at ``/capsule``, a private writable ``/work`` and ``/tmp``, a
    network namespace of its own (a loopback, no route out), ``no_new_privs`` set, and
    everything in the namespace killed when the capsule's process dies. A capsule whose
    manifest allows a list of hosts reaches them, and only them, through the gateway's egress
    proxy (``egress.py``) over a Unix socket bound into the sandbox.
``landlock``
    where user namespaces are unavailable: Landlock lets the process read only the system
    directories and its code, and write only its work folder; seccomp denies it IPv4 and IPv6
    sockets (and io_uring) unless the capsule has network (``_confine.py`` applies both, then
    execs the capsule). No PID or network namespace: the per-execution uid and the process
    limit contain what it starts.
``rlimits``
    only the limits below and a scrubbed environment. It confines neither the filesystem nor the
    network, so a capsule runs there only when the operator allows unconfined capsules.

Both tiers apply resource limits with ``prlimit`` (address space, CPU seconds, process count,
file size, no core dumps), drop privileges with ``setpriv`` (``no_new_privs``), start the
process in its own session so a timeout kills the whole group, and pass a scrubbed environment
(nothing of the gateway's: no ``SOMA_*``, no provider keys). Run as root, each execution gets
its own unprivileged uid from a pool, so the process limit is per sandbox (the kernel does not
apply ``RLIMIT_NPROC`` to root) and one sandbox cannot signal or read another's files.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "CODE_DIR",
    "CONFINE_NAME",
    "EGRESS_SOCKET",
    "PROXY_PORT",
    "RELAY_NAME",
    "WORK_DIR",
    "Limits",
    "SandboxSpec",
    "Tier",
    "build_command",
    "detect_tier",
    "sandbox_python",
    "scrubbed_env",
    "sweep_uid",
    "take_uid",
]

log = logging.getLogger(__name__)

Tier = Literal["bwrap", "landlock", "rlimits"]
CODE_DIR = "/capsule"
WORK_DIR = "/work"
_UID_BASE = 200_000
_UID_POOL = 4096
_uids = itertools.cycle(range(_UID_BASE, _UID_BASE + _UID_POOL))


@dataclass(frozen=True, slots=True)
class Limits:
    """What one execution may use."""

    timeout_s: float = 10.0
    memory_mb: int = 256
    cpu_s: int = 5
    processes: int = 16
    output_bytes: int = 1024 * 1024
    file_mb: int = 64


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """One process to start: its argv inside the sandbox and what it may see."""

    argv: list[str]
    code_dir: Path
    work_dir: Path
    limits: Limits
    network: bool = False
    read_only: list[str] = field(default_factory=list)
    extra_ro: list[str] = field(default_factory=list)
    """Host paths the runtime itself needs read-only (an interpreter outside ``/usr``)."""
    uid: int | None = None
    egress: Path | None = None
    """The egress proxy's Unix socket (``bwrap`` tier): bound into the sandbox, reached through
    the relay on the sandbox's own loopback, the only way out of its network namespace."""


def scrubbed_env(home: str = WORK_DIR) -> dict[str, str]:
    """The whole environment a capsule sees: no variable of the gateway's is passed on."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp" if home == WORK_DIR else home,  # outside bubblewrap /tmp is the host's
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def _world_reachable(path: Path) -> bool:
    """Whether another uid can reach ``path`` (every parent searchable, the file readable)."""
    try:
        for parent in reversed(path.parents):
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False


@functools.cache
def sandbox_python() -> tuple[str, list[str]]:
    """An interpreter the sandbox uid can run, and host paths to bind for it.

    The gateway's own interpreter when other users can reach it (its prefix is bound
    read-only), else the system's ``/usr/bin/python3``.
    """
    real = Path(os.path.realpath(sys.executable))
    if _world_reachable(real):
        prefix = sys.base_prefix
        return str(real), [] if prefix.startswith("/usr") else [prefix]
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if _world_reachable(Path(os.path.realpath(candidate))):
            return candidate, []
    return str(real), []


def take_uid() -> int | None:
    """A fresh uid for one execution when running as root, else ``None`` (keep our own)."""
    return next(_uids) if os.geteuid() == 0 else None


def _user_process_count() -> int:
    uid = os.getuid()
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += 1
            except OSError:
                continue
    return count


def _prlimit(limits: Limits, uid: int | None) -> list[str]:
    # As a non-root user, RLIMIT_NPROC counts every process of that user: leave room for them.
    nproc = limits.processes + (0 if uid is not None else _user_process_count())
    memory = limits.memory_mb * 1024 * 1024
    return [
        "prlimit",
        f"--as={memory}",
        f"--cpu={limits.cpu_s}",
        f"--nproc={nproc}",
        f"--fsize={limits.file_mb * 1024 * 1024}",
        "--core=0",
        "--nofile=256",
        "--",
    ]


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib64", "lib32", "libx32", "sbin"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for etc in (
        "/etc/ld.so.cache",
        "/etc/ld.so.conf",
        "/etc/ld.so.conf.d",
        "/etc/localtime",
        "/etc/alternatives",
        "/etc/ssl/certs",
    ):
        args += ["--ro-bind-try", etc, etc]
    return args


def _as_uid(uid: int | None) -> list[str]:
    # setpriv, not subprocess's user=/group=: uvloop's subprocesses do not take those.
    privileges = ["setpriv", "--no-new-privs"]
    if uid is not None:
        privileges += [f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    return [*privileges, "--"]


CONFINE_NAME = "_soma_confine.py"
RELAY_NAME = "_soma_relay.py"
EGRESS_SOCKET = "/run/soma-egress.sock"
PROXY_PORT = 3128
_SYSTEM_READ = [
    "/usr",
    "/bin",
    "/lib",
    "/lib64",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/ssl/certs",
    "/dev/urandom",
    "/dev/zero",
]


def _landlock(spec: SandboxSpec) -> list[str]:
    config = {
        "ro": [*_SYSTEM_READ, str(spec.code_dir), *spec.extra_ro, *spec.read_only],
        "rw": [str(spec.work_dir), "/dev/null"],
        "net": spec.network,
    }
    python, _ = sandbox_python()
    launcher = str(spec.code_dir / CONFINE_NAME)
    return [python, "-I", "-S", "-B", launcher, json.dumps(config), "--"]


def build_command(spec: SandboxSpec, tier: Tier) -> list[str]:
    """The host argv that starts ``spec.argv`` confined by ``tier``.

    ``prlimit`` sets the limits, then ``setpriv`` drops to the execution's uid and sets
    ``no_new_privs``, then (``bwrap`` tier) bubblewrap builds the namespaces.
    """
    limits = [*_prlimit(spec.limits, spec.uid), *_as_uid(spec.uid)]
    if tier == "rlimits":
        return [*limits, *spec.argv]
    if tier == "landlock":
        return [*limits, *_landlock(spec), *spec.argv]
    args = [
        "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        "capsule",
        *_system_binds(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--ro-bind",
        str(spec.code_dir),
        CODE_DIR,
        "--bind",
        str(spec.work_dir),
        WORK_DIR,
        "--chdir",
        WORK_DIR,
    ]
    argv = spec.argv
    env = scrubbed_env()
    extra_ro = list(spec.extra_ro)
    if spec.egress is not None:
        # Its own network namespace stays: the relay and the proxy's socket are the way out.
        python, runtime = sandbox_python()
        extra_ro += [path for path in runtime if path not in extra_ro]
        args += ["--bind", str(spec.egress), EGRESS_SOCKET]
        proxy = f"http://127.0.0.1:{PROXY_PORT}"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env[name] = proxy
        relay = f"{CODE_DIR}/{RELAY_NAME}"
        argv = [python, "-I", "-S", "-B", relay, EGRESS_SOCKET, str(PROXY_PORT), "--", *argv]
    elif spec.network:
        args += ["--share-net", "--ro-bind-try", "/etc/resolv.conf", "/etc/resolv.conf"]
        args += ["--ro-bind-try", "/etc/hosts", "/etc/hosts"]
    for path in [*extra_ro, *spec.read_only]:
        args += ["--ro-bind-try", path, path]
    args += ["--remount-ro", "/", "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return [*limits, *args, "--", *argv]


def _probe(tier: Tier, root: Path) -> str | None:
    """Run ``/bin/true`` in ``tier``; ``None`` when it works, else why not (one line)."""
    work = root / f"probe-{tier}"
    work.mkdir(parents=True, exist_ok=True)
    root.chmod(0o711)
    work.chmod(0o755)
    shutil.copyfile(Path(__file__).with_name("_confine.py"), work / CONFINE_NAME)
    (work / CONFINE_NAME).chmod(0o644)
    uid = take_uid()
    spec = SandboxSpec(argv=["/bin/true"], code_dir=work, work_dir=work, limits=Limits(), uid=uid)
    try:
        done = subprocess.run(
            build_command(spec, tier),
            env=scrubbed_env(),
            cwd=str(work),
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc) or type(exc).__name__
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if done.returncode == 0:
        return None
    said = done.stderr.decode(errors="replace").strip().splitlines()
    return f"exit {done.returncode}: {said[-1] if said else 'no message'}"


def _untraversable(root: Path) -> Path | None:
    """The first folder above ``root`` that other users cannot pass through (no ``o+x``):
    executions run as their own uids, so a sandbox root under it is out of their reach."""
    for folder in [*reversed(root.resolve().parents), root.resolve()]:
        try:
            if not folder.stat().st_mode & stat.S_IXOTH:
                return folder
        except OSError:
            return folder
    return None


@functools.cache
def detect_tier(root: Path) -> Tier:
    """The strongest tier that works here (probed once per sandbox root), logged with the
    reason each stronger one was passed over, so a weaker tier is never chosen silently."""
    passed_over: list[str] = []
    blocked = _untraversable(root) if os.geteuid() == 0 else None
    if blocked is not None:
        passed_over.append(
            f"{blocked} is not searchable by other users (mode o+x missing), so executions, "
            f"which run as their own uids, cannot reach the sandbox root {root}; set "
            "SOMA_CAPSULES_DIR to a folder outside it"
        )
    tier: Tier = "rlimits"
    if not shutil.which("bwrap"):
        passed_over.append("bwrap: not installed (Debian package 'bubblewrap')")
    elif (why := _probe("bwrap", root)) is None:
        tier = "bwrap"
    else:
        passed_over.append(f"bwrap: {why}")
    if tier == "rlimits":
        if (why := _probe("landlock", root)) is None:
            tier = "landlock"
        else:
            passed_over.append(f"landlock: {why}")
    if passed_over:
        log.warning("capsule sandbox tier: %s (%s)", tier, "; ".join(passed_over))
    else:
        log.info("capsule sandbox tier: %s", tier)
    return tier


def sweep_uid(uid: int | None) -> None:
    """Kill every process left running as an execution's uid (one that escaped its group)."""
    if uid is None:
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["kill", "-KILL", "-1"],
            user=uid,
            group=uid,
            extra_groups=[],
            capture_output=True,
            timeout=5,
            check=False,
        )
