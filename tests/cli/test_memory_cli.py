"""``soma memory`` against the real gateway on loopback: create a collection, index a folder of
Markdown, search and retrieve with sources, delete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from somaagent.cli import main
from somaagent.cli.memory import memory
from tests.cli.conftest import Invoke
from tests.fakes.fixtures import FakeVendor
from tests.memory.served import Running, serve_gateway


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeVendor) -> Iterator[Running]:
    with serve_gateway(tmp_path_factory.mktemp("gateway"), fake_openai) as running:
        yield running


@pytest.fixture(autouse=True)
def _wired(served: Running, monkeypatch: pytest.MonkeyPatch, config_dir: Path) -> None:
    """The CLI pointed at the served gateway, with ``soma memory`` registered."""
    monkeypatch.setenv("SOMA_API_KEY", served.admin_key)
    monkeypatch.setenv("SOMA_BASE_URL", served.base_url)
    if "memory" not in main.commands:  # until the CLI registers the group itself
        main.add_command(memory)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "ops").mkdir(parents=True)
    (root / "deploy.md").write_text(
        "# Deploy\n\nDeploys run from the main branch.\n\n## Rollback\n\n"
        "Roll back with soma rollback and the release id."
    )
    (root / "ops" / "oncall.md").write_text("# On-call\n\nThe on-call rota changes on Mondays.")
    return root


def test_create_index_search_retrieve_delete(invoke: Invoke, docs: Path) -> None:
    created = invoke("memory", "create", "runbook", "--description", "Ops runbook")
    assert created.exit_code == 0, created.output
    assert "created runbook" in created.stdout
    duplicate = invoke("memory", "create", "runbook")
    assert duplicate.exit_code == 1 and "already exists" in duplicate.stderr

    indexed = invoke("memory", "index", "runbook", str(docs), "--meta", "team=ops")
    assert indexed.exit_code == 0, indexed.output
    assert "indexed 2 document(s)" in indexed.stdout
    again = invoke("memory", "index", "runbook", str(docs), "--meta", "team=ops")
    assert "indexed 0 document(s)" in again.stdout and "2 unchanged" in again.stdout

    listed = invoke("memory", "list")
    assert "runbook" in listed.stdout and "Ops runbook" in listed.stdout

    found = invoke("memory", "search", "runbook", "how do I roll back a release", "-k", "2")
    assert found.exit_code == 0, found.output
    first = found.stdout.splitlines()[0]
    assert first.startswith("1. deploy.md › Deploy › Rollback")
    filtered = invoke(
        "memory", "search", "runbook", "rota", "--filter", '{"team": {"eq": "ops"}}', "--json"
    )
    hits = json.loads(filtered.stdout)["data"]
    assert hits and all(h["metadata"] == {"team": "ops"} for h in hits)

    context = invoke("memory", "retrieve", "runbook", "when does the on-call rota change")
    assert context.exit_code == 0, context.output
    assert context.stdout.startswith("[1] ops/oncall.md › On-call")
    assert "Sources" in context.stdout and "[1] ops/oncall.md" in context.stdout
    assert "tokens" in context.stderr

    as_json = json.loads(invoke("memory", "retrieve", "runbook", "deploy", "--json").stdout)
    assert as_json["sources"][0]["document_id"] == "deploy.md"

    removed = invoke("memory", "delete", "runbook", "--document", "ops/oncall.md")
    assert removed.exit_code == 0 and "deleted ops/oncall.md from runbook" in removed.stdout
    shown = json.loads(invoke("memory", "list", "--json").stdout)
    assert [c["document_count"] for c in shown["data"] if c["name"] == "runbook"] == [1]
    assert invoke("memory", "delete", "runbook").exit_code == 0
    missing = invoke("memory", "search", "runbook", "anything")
    assert missing.exit_code == 3 and "not found" in missing.stderr


def test_bad_input_is_a_clear_error(invoke: Invoke, tmp_path: Path) -> None:
    invoke("memory", "create", "scratch")
    (tmp_path / "blob.md").write_bytes(b"\x00\x01\x02")
    binary = invoke("memory", "index", "scratch", str(tmp_path / "blob.md"))
    assert binary.exit_code == 1 and "binary" in binary.stderr
    bad_filter = invoke("memory", "search", "scratch", "q", "--filter", "[1]")
    assert bad_filter.exit_code == 2 and "--filter" in bad_filter.stderr
    bad_op = invoke("memory", "search", "scratch", "q", "--filter", '{"a": {"like": 1}}')
    assert bad_op.exit_code == 1 and "unknown operator" in bad_op.stderr
    bad_meta = invoke("memory", "index", "scratch", str(tmp_path), "--meta", "novalue")
    assert bad_meta.exit_code == 2
    invoke("memory", "delete", "scratch")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_indexing_shows_a_progress_bar_in_a_terminal(
    served: Running, config_dir: Path, tmp_path: Path
) -> None:
    import pty

    folder = tmp_path / "many"
    folder.mkdir()
    for number in range(30):
        (folder / f"page{number:02}.md").write_text(f"# Page {number}\n\nAbout topic {number}.")
    env = {
        **os.environ,
        "SOMA_API_KEY": served.admin_key,
        "SOMA_BASE_URL": served.base_url,
        "SOMA_CONFIG_DIR": str(config_dir),
        "TERM": "xterm-256color",
        "COLUMNS": "100",
    }
    code = (
        "import sys; from somaagent.cli import main; from somaagent.cli.memory import memory\n"
        "'memory' in main.commands or main.add_command(memory)\n"
        "sys.exit(main())"
    )
    subprocess.run([sys.executable, "-c", code, "memory", "create", "pages"], env=env, check=True)
    leader, follower = pty.openpty()
    args = ["memory", "index", "pages", str(folder), "--batch-size", "3"]
    with subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=follower, stderr=follower, env=env
    ) as process:
        os.close(follower)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        output = b"".join(chunks).decode(errors="replace")
        assert process.wait(timeout=60) == 0, output
    os.close(leader)
    assert "indexing" in output and "30/30" in output and "━" in output  # the Rich bar
    assert "indexed 30 document(s)" in output
