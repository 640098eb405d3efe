"""``soma chat`` in a real (pseudo-)terminal: Markdown rendering and streamed output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sdk.stub_gateway import ALICE_KEY

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")


def _run_in_terminal(
    args: list[str], *, base_url: str, config_dir: Path, typed: str | None = None
) -> str:
    import pty

    leader, follower = pty.openpty()
    env = {
        **os.environ,
        "SOMA_API_KEY": ALICE_KEY,
        "SOMA_BASE_URL": base_url,
        "SOMA_CONFIG_DIR": str(config_dir),
        "TERM": "xterm-256color",
        "COLUMNS": "100",
    }
    env.pop("NO_COLOR", None)
    code = "import sys; from somaagent.cli import main; sys.exit(main())"
    with subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
    ) as process:
        os.close(follower)
        if typed is not None:  # what a person types, read by the terminal's line discipline
            os.write(leader, typed.encode())
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=30) == 0, b"".join(chunks).decode(errors="replace")
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_a_reply_is_rendered_as_markdown(base_url: str, config_dir: Path) -> None:
    out = _run_in_terminal(["chat", "make **this** bold"], base_url=base_url, config_dir=config_dir)
    assert "this" in out
    assert "**this**" not in out  # Rich rendered the Markdown instead of printing it
    assert "\x1b[" in out  # with terminal styling
    assert "stub-echo-1" in out


def test_a_stream_prints_the_text_as_it_comes(base_url: str, config_dir: Path) -> None:
    out = _run_in_terminal(
        ["chat", "--stream", "one two three"], base_url=base_url, config_dir=config_dir
    )
    assert "Echo: one two three" in out
    assert "conversation conv_" in out


def test_every_line_ends_with_a_newline(base_url: str, config_dir: Path) -> None:
    with_stream = _run_in_terminal(
        ["chat", "--stream", "one two three"], base_url=base_url, config_dir=config_dir
    )
    whole = _run_in_terminal(["chat", "one two three"], base_url=base_url, config_dir=config_dir)
    for out in (with_stream, whole):
        reply, footer = out.split("\r\n")[:2]
        assert reply.rstrip() == "Echo: one two three"  # the reply's line is ended ...
        assert "conversation conv_" in footer and "Echo" not in footer  # ... before the footer
        assert out.endswith("\x1b[0m\r\n")  # and the footer's line is ended too


def test_a_session_in_a_terminal(base_url: str, config_dir: Path) -> None:
    out = _run_in_terminal(
        ["chat"], base_url=base_url, config_dir=config_dir, typed="hello there\n/exit\n"
    )
    assert "you> " in out
    assert "Echo: hello there" in out
    assert "continue it with: soma chat --conversation conv_" in out
