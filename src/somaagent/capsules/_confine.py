"""The ``landlock`` sandbox tier's launcher: confine this process, then exec the capsule.

Copied next to a capsule's code and run by a bare interpreter (``python -I -S``), so it uses
the standard library only (``ctypes`` for the system calls). Both mechanisms are unprivileged
and need ``no_new_privs``, which ``setpriv`` has already set:

* Landlock (Linux 5.13+): the process may read and execute only the listed read-only paths and
  read and write only the listed read-write ones (the work folder, ``/dev/null``); with ABI 4+
  it may neither connect nor bind TCP sockets; with ABI 6+ it may not signal processes outside
  its domain or reach abstract unix sockets.
* seccomp: without network, ``socket()`` for IPv4 and IPv6 fails with ``EACCES`` (this covers
  UDP, which Landlock does not) and ``io_uring_setup`` fails (its operations bypass seccomp).

Usage: ``python -I -S _confine.py CONFIG_JSON -- ARGV...`` where the config is
``{"ro": [paths], "rw": [paths], "net": false}``. Exit status 126 when confinement fails.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import sys

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # the same on every architecture
_VERSION_FLAG = 1
_RULE_PATH_BENEATH = 1
_FILE_RIGHTS = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 14) | (1 << 15)
_READ = (1 << 0) | (1 << 2) | (1 << 3)  # execute, read file, read dir
_SECCOMP_ARCH = {"x86_64": (0xC000003E, 41, 425), "aarch64": (0xC00000B7, 198, 425)}


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


_libc = ctypes.CDLL(None, use_errno=True)


def _fail(what: str) -> None:
    error = ctypes.get_errno()
    sys.stderr.write(f"sandbox: {what} failed: {os.strerror(error)}\n")
    sys.exit(126)


def abi_version() -> int:
    """The kernel's Landlock ABI version (0: none)."""
    version = _libc.syscall(
        _CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_VERSION_FLAG)
    )
    return max(int(version), 0)


def _fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1  # execute .. make_sym (ABI 1)
    if abi >= 2:
        rights |= 1 << 13  # refer
    if abi >= 3:
        rights |= 1 << 14  # truncate
    if abi >= 5:
        rights |= 1 << 15  # ioctl_dev
    return rights


def landlock(read_only: list[str], read_write: list[str], network: bool) -> None:
    """Restrict this process (and what it execs) to the paths given, and TCP unless allowed."""
    abi = abi_version()
    if abi < 1:
        _fail("Landlock (not available in this kernel)")
    handled = _fs_rights(abi)
    attr = _RulesetAttr(handled, 0, 0)
    size = 8
    if abi >= 4:
        size = 16
        attr.handled_access_net = 0 if network else (1 << 0) | (1 << 1)
    if abi >= 6:
        size = 24
        attr.scoped = (1 << 0) | (1 << 1)
    ruleset = _libc.syscall(
        _CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)
    )
    if ruleset < 0:
        _fail("landlock_create_ruleset")
    for paths, rights in ((read_only, _READ), (read_write, handled)):
        for path in paths:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a path that is not here grants nothing
            allowed = rights & handled
            if not os.path.isdir(path):
                allowed &= _FILE_RIGHTS
            rule = _PathBeneath(allowed, fd)
            done = _libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0)
            os.close(fd)
            if done < 0:
                _fail(f"landlock_add_rule({path})")
    if _libc.syscall(_RESTRICT_SELF, ruleset, 0) < 0:
        _fail("landlock_restrict_self")
    os.close(ruleset)


def no_inet_sockets() -> None:
    """seccomp: IPv4/IPv6 ``socket()`` fails with EACCES; ``io_uring_setup`` with EPERM."""
    arch = _SECCOMP_ARCH.get(platform.machine())
    if arch is None:
        _fail(f"seccomp (no filter for {platform.machine()})")
        return
    audit_arch, nr_socket, nr_io_uring = arch
    load, jeq, ret = 0x20, 0x15, 0x06
    allow, kill = 0x7FFF0000, 0x80000000
    program = [
        (load, 0, 0, 4),  # the architecture
        (jeq, 1, 0, audit_arch),
        (ret, 0, 0, kill),
        (load, 0, 0, 0),  # the system call number
        (jeq, 0, 1, nr_io_uring),
        (ret, 0, 0, 0x00050000 | 1),  # EPERM
        (jeq, 0, 4, nr_socket),
        (load, 0, 0, 16),  # socket()'s domain
        (jeq, 1, 0, 2),  # AF_INET
        (jeq, 0, 1, 10),  # AF_INET6
        (ret, 0, 0, 0x00050000 | 13),  # EACCES
        (ret, 0, 0, allow),
    ]
    filters = (_SockFilter * len(program))(*[_SockFilter(*item) for item in program])
    fprog = _SockFprog(len(program), filters)
    if _libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
        _fail("seccomp")


def main() -> None:
    config = json.loads(sys.argv[1])
    argv = sys.argv[sys.argv.index("--") + 1 :]
    if _libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS (setpriv set it too)
        _fail("no_new_privs")
    if not config.get("net"):
        no_inet_sockets()
    landlock(list(config.get("ro", [])), list(config.get("rw", [])), bool(config.get("net")))
    if argv[0] == sys.executable and argv[-2].endswith("_soma_child.py"):
        # The capsule's MCP server on this same interpreter: run it here (already confined)
        # instead of starting a second interpreter.
        import runpy

        sys.argv = argv[-2:]
        runpy.run_path(argv[-2], run_name="__main__")
        return
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
