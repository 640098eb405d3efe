"""``pip install somaagent`` with no extras: a working SDK and CLI, and nothing heavy.

Builds the sdist and the wheel (``python -m build``: the wheel is built from the sdist, so the
sdist is proven complete), checks them with ``twine check``, installs the wheel with its
declared dependencies from the package index into a fresh virtual environment, and then, from
that environment:

* lists the modules ``import somaagent`` and ``import somaagent.cli`` load, and fails on any
  whose distribution is not httpx, pydantic, click, rich, platformdirs, PyYAML or one of their
  own dependencies (or the standard library);
* runs ``soma chat``, ``soma memory search`` and ``soma prompts render`` against a real gateway
  started from the development environment (SQLite, the fake OpenAI upstream, the test
  embedder);
* runs ``soma serve``, ``soma admin`` and ``soma chaos``, which need extras it lacks: each ends
  with one line naming the extra.

Slow (a build and an install): ``pytest -m slow tests/sdk/test_light_install.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from somaagent import Client
from tests.fakes.fixtures import FakeVendor

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = ("httpx", "pydantic", "click", "rich", "platformdirs", "pyyaml")
SDK_PACKAGES = ("somaagent.sdk", "somaagent.cli", "somaagent.types")
SDK_MODULES = ("somaagent", "somaagent._version", "somaagent.errors")

# Run in the fresh environment: the modules the imports add, each with its distribution, and
# the distributions that the allowed ones pull in (their requirements, extras left out).
LIST_MODULES = r"""
import importlib.metadata as md, json, re, sys, sysconfig

before = set(sys.modules)
import somaagent, somaagent.cli
added = sorted(set(sys.modules) - before)
stdlib = set(sys.stdlib_module_names)
stdlib_dirs = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])

def in_stdlib(name):  # listed, or a file of the standard library's (_sysconfigdata_...)
    path = getattr(sys.modules.get(name), "__file__", None) or ""
    return name in stdlib or (path.startswith(stdlib_dirs) and "-packages" not in path)

owners = md.packages_distributions()
tops = {m.split(".")[0] for m in added} - {"somaagent"}
third_party = sorted(m for m in tops if not in_stdlib(m))

def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()

allowed, stack = set(), [canonical(n) for n in sys.argv[1].split(",")]
while stack:
    name = stack.pop()
    if name in allowed:
        continue
    allowed.add(name)
    try:
        requirements = md.requires(name) or []
    except md.PackageNotFoundError:  # a requirement for other Pythons, not installed
        continue
    for requirement in requirements:
        if "extra ==" in requirement.partition(";")[2]:
            continue
        stack.append(canonical(re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)))
print(json.dumps({
    "somaagent": [m for m in added if m.split(".")[0] == "somaagent"],
    "third_party": {m: [canonical(d) for d in owners.get(m, [])] for m in third_party},
    "allowed": sorted(allowed),
}))
"""


@dataclass(frozen=True)
class Fresh:
    """The fresh environment with the wheel installed."""

    python: Path
    soma: Path
    dist: Path


def _run(*args: str | Path, timeout: float = 600, **kwargs: object) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,  # type: ignore[call-overload]
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return str(result.stdout)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Fresh:
    dist = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", dist, ROOT, cwd=ROOT)
    wheels = sorted(dist.glob("somaagent-*.whl"))
    sdists = sorted(dist.glob("somaagent-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in dist.iterdir())
    _run(sys.executable, "-m", "twine", "check", "--strict", wheels[0], sdists[0])

    home = tmp_path_factory.mktemp("fresh")
    venv.create(home / "venv", with_pip=True, clear=True)
    python = home / "venv" / "bin" / "python"
    # The wheel's declared dependencies come from the package index: they must be enough.
    _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheels[0])
    return Fresh(python=python, soma=home / "venv" / "bin" / "soma", dist=dist)


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOMA_")}
    env.pop("PYTHONPATH", None)  # only what the fresh environment has
    env.update({"SOMA_CONFIG_DIR": str(tmp_path / "config"), "COLUMNS": "200", **extra})
    return env


def test_the_installed_distributions_are_the_declared_ones(fresh: Fresh) -> None:
    frozen = _run(fresh.python, "-m", "pip", "list", "--format=json")
    names = {p["name"].lower() for p in json.loads(frozen)}
    assert "somaagent" in names
    for heavy in ("fastapi", "sqlalchemy", "numpy", "uvicorn", "jinja2", "kubernetes"):
        assert heavy not in names


def test_importing_the_sdk_and_cli_loads_only_the_allowed_packages(
    fresh: Fresh, tmp_path: Path
) -> None:
    out = _run(fresh.python, "-c", LIST_MODULES, ",".join(ALLOWED), env=_environment(tmp_path))
    listing = json.loads(out)
    allowed = set(listing["allowed"])
    assert {"httpx", "pydantic", "click", "rich", "platformdirs", "pyyaml"} <= allowed
    outside = {
        module: owners
        for module, owners in listing["third_party"].items()
        if not owners or not set(owners) <= allowed
    }
    assert outside == {}, f"modules from outside the allowed set: {outside}"
    server_code = [
        m
        for m in listing["somaagent"]
        if m not in SDK_MODULES
        and not m.startswith(tuple(p + "." for p in SDK_PACKAGES))
        and m not in SDK_PACKAGES
    ]
    assert server_code == [], f"server modules loaded by the SDK or CLI: {server_code}"
    assert "somaagent.cli" in listing["somaagent"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeVendor) -> Iterator[Client]:
    """The real gateway from the development environment, with memory; its admin client."""
    pytest.importorskip("fastapi", reason="the real gateway needs the server extra")
    from tests.memory.served import serve_gateway

    with (
        serve_gateway(tmp_path_factory.mktemp("light-gateway"), fake_openai) as running,
        Client(api_key=running.admin_key, base_url=running.base_url) as client,
    ):
        yield client


def test_the_light_cli_works_against_a_real_gateway(
    fresh: Fresh, gateway: Client, tmp_path: Path
) -> None:
    env = _environment(tmp_path, SOMA_API_KEY=gateway.api_key, SOMA_BASE_URL=gateway.base_url)

    def soma(*args: str) -> str:
        return _run(fresh.soma, *args, env=env, timeout=60)

    assert "Echo: hello from a light install" in soma("chat", "hello from a light install")

    gateway.memory.create("light_handbook")
    gateway.memory.index(
        "light_handbook", [{"id": "refunds.md", "text": "Refunds take five business days."}]
    )
    found = json.loads(soma("memory", "search", "light_handbook", "refunds", "--json"))
    assert [hit["document_id"] for hit in found["data"]][:1] == ["refunds.md"]

    template = tmp_path / "light_greeting.prompt"
    template.write_text("---\nvariables:\n  name: {type: string}\n---\nHello {{ name }}!\n")
    soma("prompts", "push", str(template))
    assert soma("prompts", "render", "light_greeting", "--var", "name=Ada") == "Hello Ada!\n"


@pytest.mark.parametrize(
    ("args", "extra"),
    [(["serve"], "server"), (["admin", "keys", "list"], "server"), (["chaos", "list"], "sre")],
    ids=["serve", "admin", "chaos"],
)
def test_a_command_needing_an_extra_names_it(
    fresh: Fresh, tmp_path: Path, args: list[str], extra: str
) -> None:
    result = subprocess.run(
        [str(fresh.soma), *args],
        capture_output=True,
        text=True,
        env=_environment(tmp_path),
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"needs the {extra} extra" in line
    assert line.endswith(f"pip install 'somaagent[{extra}]'")
