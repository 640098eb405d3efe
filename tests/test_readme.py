"""The README's examples, run as written against a real gateway on the embedded default.

Every line of a ``bash`` block and every ``python`` block is one test, in README order, sharing
one shell state (``source``/``export`` carry over, as in a terminal) and one gateway: ``soma
serve`` in its own process on SQLite with the local model, which is the embedded default.
Replies are kept short (``SOMA_DEFAULT_MAX_TOKENS``), so the local model answers in a second.
The text of each example is the README's; the test substitutes only the README's placeholders:
the admin key it printed for ``soma_sk_...``, the id of the key created above for ``key_...``,
and this run's ports for ``127.0.0.1:8080`` and ``127.0.0.1:9090``.

What an example needs beyond the embedded default, the README says in a comment (``# needs
...``), and only these are understood (another ``needs`` fails the test):

* ``needs an OpenAI key``: run against a second gateway whose OpenAI provider is the
  OpenAI-wire fake of ``tests/fakes``, so the example still runs for real;
* ``needs the prometheus binary`` / ``needs Prometheus``: skipped, with the documented reason,
  only where the ``prometheus`` binary is missing;
* ``keeps running`` (a server): started in the background, stopped when the module ends;
* ``exit status 1: <why>``: the example's answer may be exit status 1 (``soma sre verify``
  says so when an SLO broke), with its report printed.

Lines that run ``make`` (``make run``, ``make test``, ...) are the Makefile's targets: the
gateway this test serves is what ``make run`` starts, and CI runs the others itself; they are
not collected.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.fakes._server import free_port
from tests.sre._prometheus import ServedGateway, serve_gateway
from tests.sre.conftest import gateway_settings

pytestmark = [pytest.mark.slow, pytest.mark.local_model]  # soma serve answers with the local model

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
KEY_PLACEHOLDER = "soma_sk_..."
KEY_ID_PLACEHOLDER = "key_..."
GATEWAY_URL = "http://127.0.0.1:8080"
PROMETHEUS_URL = "http://127.0.0.1:9090"
NO_PROMETHEUS = "the prometheus binary is not installed (Debian: apt-get install prometheus)"
NEEDS = {
    "needs an OpenAI key": "openai",
    "needs the prometheus binary": "prometheus",
    "needs Prometheus": "prometheus",
}
STEP_TIMEOUT_S = 240


@dataclass(frozen=True)
class Step:
    """One README example: a bash line, or a whole python block."""

    kind: str
    line: int
    text: str
    needs: frozenset[str]
    background: bool
    comment: str = ""

    @property
    def id(self) -> str:
        return f"README.md:{self.line}:{self.text.splitlines()[0][:48]}"


def _needs(comment: str, where: str) -> frozenset[str]:
    found = set()
    for phrase in re.findall(r"needs [\w ]+", comment):
        known = [name for marker, name in NEEDS.items() if phrase.startswith(marker)]
        if not known:
            raise AssertionError(
                f"{where}: '{phrase}' is not a requirement tests/test_readme.py knows"
            )
        found.update(known)
    return frozenset(found)


def steps(text: str) -> list[Step]:
    """The README's runnable examples, in order."""
    found: list[Step] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = re.match(r"^```(\w+)\s*$", lines[index])
        index += 1
        if opening is None:
            continue
        start = index
        while not lines[index].startswith("```"):
            index += 1
        body, index = lines[start:index], index + 1
        if opening[1] == "python":
            source = "\n".join(body) + "\n"
            first = body[0] if body else ""
            needs = _needs(first if first.startswith("#") else "", f"README.md:{start + 1}")
            found.append(Step("python", start + 1, source, needs, background=False))
        elif opening[1] == "bash":
            for offset, raw in enumerate(body):
                command, _, comment = raw.partition(" # ")
                command = command.strip()
                if (
                    not command
                    or command.startswith("#")
                    or re.match(r"^(\w+=\S+ )*make ", command)
                ):
                    continue
                where = f"README.md:{start + offset + 1}"
                found.append(
                    Step(
                        "bash",
                        start + offset + 1,
                        command,
                        _needs(comment, where),
                        background="keeps running" in comment,
                        comment=comment,
                    )
                )
    return found


STEPS = steps(README.read_text(encoding="utf-8"))


@dataclass
class Session:
    """The state the README's examples share: shell, gateways, substitutions."""

    workdir: Path
    env: dict[str, str]
    shell_state: Path
    substitutions: dict[str, str]
    openai: ServedGateway
    openai_key: str
    prometheus_url: str
    background: list[subprocess.Popen[str]] = field(default_factory=list)

    def render(self, text: str) -> str:
        for placeholder, value in self.substitutions.items():
            text = text.replace(placeholder, value)
        return text

    def step_env(self, step: Step) -> dict[str, str]:
        env = dict(self.env)
        if "openai" in step.needs:
            env.update({"SOMA_BASE_URL": self.openai.url, "SOMA_API_KEY": self.openai_key})
        return env


def _serve_embedded(
    data: Path, log: Path, output: IO[str]
) -> tuple[subprocess.Popen[str], str, str]:
    """``soma serve`` on the embedded default, writing to ``output`` (the file ``log``); its
    process, URL and first admin key."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOMA_")}
    env.update(
        {
            "SOMA_DATA_DIR": str(data),
            "SOMA_PORT": str(port),
            "SOMA_DEFAULT_MAX_TOKENS": "24",  # short answers: the local model takes ~1 s
            "SOMA_LOG_LEVEL": "warning",
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-c", "from somaagent.cli import main; main()", "serve"],
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(encoding="utf-8")
        key = re.search(r"soma_sk_[A-Za-z0-9_-]{20,}", log.read_text(encoding="utf-8"))
        try:
            if key and httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url, key[0]
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"the gateway did not start: {log.read_text(encoding='utf-8')}")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory, fake_openai: Any) -> Iterator[Session]:
    base = tmp_path_factory.mktemp("readme")
    data, workdir = base / "data", base / "work"
    workdir.mkdir()
    # the examples' relative paths, as in a clone
    (workdir / ".venv").symlink_to(Path(sys.prefix))
    for name in ("docs", "examples"):
        (workdir / name).symlink_to(ROOT / name)
    log = base / "gateway.log"
    output = log.open("w", encoding="utf-8")
    gateway, url, key = _serve_embedded(data, log, output)
    prometheus_url = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOMA_")}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "SOMA_BASE_URL": url,
            "SOMA_DATA_DIR": str(data),
            "SOMA_CONFIG_DIR": str(base / "config"),
            "SOMA_CHAOS_STATE_DIR": str(base / "chaos"),
            # where `soma slo prometheus` listens: the README's 127.0.0.1:9090, moved
            "SOMA_PROMETHEUS_URL": prometheus_url,
        }
    )
    try:
        with serve_gateway(gateway_settings(base / "openai", fake_openai)) as openai:
            openai_key = openai.client.headers["Authorization"].removeprefix("Bearer ")
            state = Session(
                workdir=workdir,
                env=env,
                shell_state=base / "shell.sh",
                substitutions={
                    KEY_PLACEHOLDER: key,
                    GATEWAY_URL: url,
                    PROMETHEUS_URL: prometheus_url,
                },
                openai=openai,
                openai_key=openai_key,
                prometheus_url=prometheus_url,
            )
            yield state
            for process in state.background:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
    finally:
        gateway.send_signal(signal.SIGINT)
        try:
            gateway.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait()
        output.close()


def _run(session: Session, step: Step) -> tuple[int, str]:
    text = session.render(step.text)
    env = session.step_env(step)
    if step.kind == "python":
        path = session.workdir / f"readme_{step.line}.py"
        path.write_text(text, encoding="utf-8")
        command = [sys.executable, str(path)]
    else:
        state = session.shell_state
        # one terminal: what a line exports or sources is there for the next one
        if "openai" in step.needs:  # this line alone talks to the OpenAI-backed gateway
            url, key = env["SOMA_BASE_URL"], env["SOMA_API_KEY"]
            script = (
                f'[ -f "{state}" ] && source "{state}"\n'
                f'export SOMA_BASE_URL="{url}" SOMA_API_KEY="{key}"\n{text}\n'
            )
        else:
            script = (
                f'[ -f "{state}" ] && source "{state}"\n{text}\n'
                f'rc=$?\nexport -p > "{state}"\nexit $rc\n'
            )
        command = ["bash", "--noprofile", "--norc", "-c", script]
    if step.background:
        process = subprocess.Popen(
            [
                "bash",
                "--noprofile",
                "--norc",
                "-c",
                f'[ -f "{session.shell_state}" ] && source "{session.shell_state}"; exec {text}',
            ],
            cwd=session.workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        session.background.append(process)
        return 0, ""
    result = subprocess.run(
        command,
        cwd=session.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"nothing became ready at {url}")


# What a command's output must show, beyond exiting 0: the first pattern that matches the
# command's text decides.
EXPECTED: list[tuple[str, str]] = [
    (r"^soma login", r"\S"),
    (r"^soma chat --stream", r"\w"),
    (r"^soma chat", r"\w"),
    (r"^soma conversations list", r"conv_|[0-9a-f]{8}"),
    (r"^soma route (?!train|report)", r"no model was called"),
    (r"^soma prompts push", r"support@1.*support@2"),
    (r"^soma prompts render", r"Soma"),
    (r"^soma prompts label", r"production"),
    (r"^soma prompts diff", r"invoice number"),
    (r"^soma memory create", r"handbook"),
    (r"^soma memory index", r"\d"),
    (r"^soma memory search", r"\.md"),
    (r"^soma slo rules", r""),
    (r"^soma slo", r"\w"),
    (r"^soma chaos list", r"memory-gateway-latency|memory_gateway_latency"),
    (r"^soma chaos manifest", r"kind: NetworkChaos"),
    (r"^soma chaos run", r"rolled back: yes"),
    (r"^soma loadtest run", r"PASSED"),
    (r"^soma sre verify", r"memory_gateway_latency: (passed|failed) .*memory-latency \(95%\)"),
    (r"^soma admin keys create", r'"key": "soma_sk_'),
    (r"^soma admin keys list", r"acme"),
    (r"^soma admin keys revoke", r"revoked|Revoked"),
    (r"^from openai import", r"\w"),
    (r"client\.route\(", r"smollm2-135m-local|gpt-|claude-"),
    (r"client\.memory", r"sre\.md"),
    (r"^from somaagent import", r"\w"),
]


@pytest.mark.parametrize("step", STEPS, ids=[step.id for step in STEPS])
def test_readme_example(session: Session, step: Step) -> None:
    if "prometheus" in step.needs and shutil.which("prometheus") is None:
        pytest.skip(f"{step.id} needs Prometheus: {NO_PROMETHEUS}")
    code, output = _run(session, step)
    if step.background:
        if "prometheus" in step.needs:
            _wait_ready(session.prometheus_url)
        return
    allowed = {0}
    if re.search(r"exit status 1: ", step.comment):  # the README says when 1 is the answer
        allowed.add(1)
    assert code in allowed, f"{step.id} exited {code}:\n{output}"
    assert "Traceback" not in output, output
    body = session.render(step.text)
    pattern = next(
        (expected for command, expected in EXPECTED if re.search(command, body, re.M)), r"\S|^$"
    )
    assert re.search(pattern, output, re.S), f"{step.id}: expected /{pattern}/ in:\n{output}"
    if step.text.startswith("soma admin keys create"):
        session.substitutions[KEY_ID_PLACEHOLDER] = json.loads(output)["id"]


def test_every_example_is_collected() -> None:
    """The parser sees the README's blocks: the ones this issue was about are among them."""
    texts = [step.text for step in STEPS]
    assert any(t.startswith("soma loadtest run gateway_smoke") for t in texts)
    assert any(t.startswith("soma sre verify") for t in texts)
    assert any(t.startswith("soma chaos run") for t in texts)
    assert any(
        "min_quality" in t and step.needs == {"openai"}
        for t, step in zip(texts, STEPS, strict=True)
    )
    assert not any(t.startswith("make ") for t in texts)
