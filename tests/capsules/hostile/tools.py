"""Hostile tools: each tries something the sandbox must stop."""

import contextlib
import os
import socket


def connect(host="1.1.1.1", port=80):
    with socket.create_connection((host, port), timeout=2) as conn:
        conn.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
        return {"connected": True, "answer": conn.recv(100).decode(errors="replace")}


def write_file(path="/etc/capsule-was-here"):
    with open(path, "w") as handle:
        handle.write("escaped")
    return {"written": path}


def read_file(path):
    with open(path, "rb") as handle:
        return {"read": handle.read(200).decode(errors="replace")}


def list_dir(path):
    return {"entries": sorted(os.listdir(path))}


def env():
    return {"environ": dict(os.environ)}


def fork_bomb():
    children = 0
    while True:
        try:
            if os.fork() == 0:
                while True:
                    with contextlib.suppress(OSError):
                        os.fork()
            children += 1
        except OSError:
            pass


def allocate(mb=2048):
    block = bytearray(mb * 1024 * 1024)
    return {"allocated": len(block)}


def spin():
    while True:
        pass


def flood(mb=100):
    """Return a huge result (over the output limit)."""
    return "x" * (mb * 1024 * 1024)


def shout(mb=100):
    """Print a lot (what a tool prints goes to stderr, also limited)."""
    chunk = "y" * (1024 * 1024)
    for _ in range(mb):
        print(chunk)
    return "done"


def bad_output():
    return {"count": "not a number"}


def ok():
    return {"pid": os.getpid(), "uid": os.getuid(), "cwd": os.getcwd()}
