"""What a plain ``pip install somaagent`` leaves out, and bad settings: one line, no traceback.

Each case runs ``soma`` in a fresh interpreter whose imports of an extra's packages fail, as
they do where the extra is not installed (a meta-path finder refuses them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Run as: python -c BLOCKED_SOMA "pkg1,pkg2" ARGS... : soma with those packages missing.
BLOCKED_SOMA = """
import importlib.abc, sys

blocked = set(filter(None, sys.argv[1].split(",")))

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing())
from somaagent.cli import main
main(sys.argv[2:], prog_name="soma")
"""

# The top-level modules of each extra that the CLI's commands use.
SERVER = (
    "fastapi,uvicorn,sqlalchemy,aiosqlite,alembic,pydantic_settings,prometheus_client,jinja2,"
    "tiktoken,aiohttp,orjson,numpy,chromadb,onnxruntime,tokenizers,safetensors,multipart"
)
SRE = "kubernetes,jsonschema,k6"


def _soma(
    blocked: str, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SOMA_")}
    environment.update(
        {
            "SOMA_CONFIG_DIR": str(cwd / "config"),
            "SOMA_DATA_DIR": str(cwd / "data"),
            "COLUMNS": "200",
            **(env or {}),
        }
    )
    return subprocess.run(
        [sys.executable, "-c", BLOCKED_SOMA, blocked, *args],
        capture_output=True,
        text=True,
        cwd=cwd,  # no .env of the repository's
        env=environment,
        timeout=60,
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "extra", "blocked"),
    [
        (["serve"], "server", SERVER),
        (["admin", "keys", "list"], "server", SERVER),
        (["chaos", "run", "memory_gateway_latency", "--local"], "sre", SRE),
        (["loadtest", "run", "gateway_smoke"], "sre", SRE),
    ],
    ids=lambda value: "-".join(value[:2]) if isinstance(value, list) else None,
)
def test_a_missing_extra_is_one_line_naming_it(
    args: list[str], extra: str, blocked: str, tmp_path: Path
) -> None:
    line = _one_error_line(_soma(blocked, *args, cwd=tmp_path))
    assert f"`soma {args[0]}` needs the {extra} extra" in line
    assert line.endswith(f"pip install 'somaagent[{extra}]'")


@pytest.mark.parametrize("missing", ["uvicorn", "pydantic_settings"])
def test_serve_names_the_one_missing_server_module(missing: str, tmp_path: Path) -> None:
    line = _one_error_line(_soma(missing, "serve", cwd=tmp_path))
    assert f"({missing} is missing): pip install 'somaagent[server]'" in line


@pytest.mark.parametrize("command", [["serve"], ["admin", "keys", "list"]], ids=["serve", "admin"])
def test_a_missing_database_driver_names_the_postgres_extra(
    command: list[str], tmp_path: Path
) -> None:
    env = {"SOMA_DATABASE_URL": "postgresql+asyncpg://soma:secret@127.0.0.1:9/soma"}
    line = _one_error_line(_soma("asyncpg", *command, cwd=tmp_path, env=env))
    assert "(asyncpg)" in line and line.endswith("pip install 'somaagent[postgres]'")
    assert "secret" not in line


def test_serve_with_an_unreachable_database_is_one_line_without_the_password(
    tmp_path: Path,
) -> None:
    from tests.fakes._server import free_port

    port = free_port()  # nothing listens there
    env = {"SOMA_DATABASE_URL": f"postgresql+asyncpg://soma:secret@127.0.0.1:{port}/soma"}
    line = _one_error_line(_soma("", "serve", cwd=tmp_path, env=env))
    assert line.startswith(
        f"error: could not connect to the database postgresql+asyncpg://soma:***@127.0.0.1:{port}"
    )
    assert "secret" not in line


def test_the_client_commands_need_no_extra(tmp_path: Path) -> None:
    # Everything but the SDK's own dependencies is missing: help and a client command work.
    result = _soma(f"{SERVER},{SRE}", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout and "(needs the server extra)" not in result.stdout
    logged_out = _soma(f"{SERVER},{SRE}", "chat", "hi", cwd=tmp_path)
    assert logged_out.returncode == 4  # it got as far as looking for a key
    assert logged_out.stderr.startswith("error: not logged in: run `soma login`")


@pytest.mark.parametrize(
    ("command", "env", "expected"),
    [
        (
            "serve",
            {"SOMA_PORT": "abc"},
            "SOMA_PORT='abc' is not valid (Input should be a valid integer, unable to parse string "
            "as an integer): set SOMA_PORT to a whole number, or unset it for the default",
        ),
        (
            "admin",
            {"SOMA_PORT": "abc"},
            "SOMA_PORT='abc' is not valid",
        ),
        (
            "serve",
            {"SOMA_MODE": "production"},
            "SOMA_DATABASE_URL must be set in production mode (set SOMA_DATABASE_URL=",
        ),
        (
            "admin",
            {"SOMA_MODE": "production"},
            "SOMA_DATABASE_URL must be set in production mode (set SOMA_DATABASE_URL=",
        ),
        ("serve", {"SOMA_MODE": "prod"}, "set SOMA_MODE to one of 'local' or 'production'"),
    ],
    ids=["port-serve", "port-admin", "production-serve", "production-admin", "mode-serve"],
)
def test_a_bad_setting_is_one_line_naming_it_and_the_fix(
    command: str, env: dict[str, str], expected: str, tmp_path: Path
) -> None:
    args = ["serve"] if command == "serve" else ["admin", "keys", "list"]
    line = _one_error_line(_soma("", *args, cwd=tmp_path, env=env))
    assert line.startswith("error: invalid settings: ")
    assert expected in line


def test_a_secret_setting_is_named_but_not_shown(tmp_path: Path) -> None:
    env = {"SOMA_MODE": "production", "SOMA_DATABASE_URL": "sqlite+aiosqlite:///x.db"}
    env["SOMA_OPENAI_API_KEY"] = "changeme"
    line = _one_error_line(_soma("", "serve", cwd=tmp_path, env=env))
    assert "SOMA_OPENAI_API_KEY is a placeholder" in line
