"""``soma chat``, ``soma models`` and ``soma conversations`` against the real gateway.

The interactive session, the sampling options reaching the model, a refused message leaving
nothing behind, and the note a rate-limited wait prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from click.testing import Result

from somaagent import Client, PayloadTooLargeError
from tests.cli.conftest import Invoke
from tests.cli.gateway import MODEL, Gateway, serve_gateway
from tests.fakes.fixtures import FakeVendor

pytest.importorskip("fastapi", reason="the real gateway needs the server extra")

Soma = Callable[..., Result]
MAX_BYTES = 4096


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeVendor) -> Iterator[Gateway]:
    with serve_gateway(
        tmp_path_factory.mktemp("chat-cli"), fake_openai, max_request_bytes=MAX_BYTES
    ) as running:
        yield running


@pytest.fixture
def soma(gateway: Gateway, invoke: Invoke) -> Soma:
    return gateway.soma(invoke)


def _conversation_ids(gateway: Gateway) -> set[str]:
    with Client(api_key=gateway.admin_key, base_url=gateway.base_url) as client:
        return {c.id for c in client.conversations.list(limit=100).data}


def _upstream_bodies(fake_openai: FakeVendor) -> list[dict[str, object]]:
    return [r.json for r in fake_openai.requests.snapshot() if r.path.endswith("/chat/completions")]


def test_a_session_keeps_one_conversation(soma: Soma, gateway: Gateway) -> None:
    before = _conversation_ids(gateway)
    result = soma("chat", input="first line\n\nsecond line\n/exit\n")
    assert result.exit_code == 0, result.output
    assert "Echo: first line" in result.stdout and "Echo: second line" in result.stdout
    assert "/exit or Ctrl-D ends" in result.stderr
    made = _conversation_ids(gateway) - before
    assert len(made) == 1  # both turns went to one conversation
    (conversation_id,) = made
    assert f"continue it with: soma chat --conversation {conversation_id}" in result.stderr
    with Client(api_key=gateway.admin_key, base_url=gateway.base_url) as client:
        contents = [m.content for m in client.conversations.messages(conversation_id).data]
    assert contents == ["first line", "Echo: first line", "second line", "Echo: second line"]


def test_a_session_ends_at_end_of_input_and_new_starts_another(
    soma: Soma, gateway: Gateway
) -> None:
    before = _conversation_ids(gateway)
    result = soma("chat", "--stream", input="one\n/new\ntwo\n")  # no /exit: end of input
    assert result.exit_code == 0, result.output
    assert "Echo: one\n" in result.stdout and "Echo: two\n" in result.stdout
    assert len(_conversation_ids(gateway) - before) == 2


def test_an_error_ends_only_its_turn(soma: Soma, gateway: Gateway) -> None:
    result = soma("chat", input="x" * (MAX_BYTES * 2) + "\nstill here\n")
    assert result.exit_code == 0, result.output
    assert "HTTP 413" in result.stderr
    assert "Echo: still here" in result.stdout


def test_max_tokens_and_temperature_reach_the_model(soma: Soma, fake_openai: FakeVendor) -> None:
    fake_openai.clear()
    result = soma("chat", "tuned", "--max-tokens", "7", "--temperature", "0.25")
    assert result.exit_code == 0, result.output
    (body,) = _upstream_bodies(fake_openai)
    assert body["temperature"] == 0.25
    assert 7 in (body.get("max_tokens"), body.get("max_completion_tokens"))
    bad = soma("chat", "tuned", "--temperature", "3")
    assert bad.exit_code == 2 and "--temperature" in bad.stderr


@pytest.mark.parametrize("stream", [False, True], ids=["send", "stream"])
def test_a_refused_message_leaves_no_conversation(
    soma: Soma, gateway: Gateway, stream: bool
) -> None:
    before = _conversation_ids(gateway)
    args = ["chat", "x" * (MAX_BYTES * 2), *(["--stream"] if stream else [])]
    result = soma(*args)
    assert result.exit_code == 1
    assert "HTTP 413" in result.stderr and "Traceback" not in result.output
    assert _conversation_ids(gateway) == before


def test_a_refused_message_leaves_no_template_conversation(
    soma: Soma, gateway: Gateway, tmp_path: pytest.TempPathFactory
) -> None:
    template = tmp_path / "refusal_test.prompt"  # type: ignore[operator]
    template.write_text("You answer briefly.\n")
    assert soma("prompts", "push", str(template)).exit_code == 0
    before = _conversation_ids(gateway)
    result = soma("chat", "x" * (MAX_BYTES * 2), "--prompt", "refusal_test")
    assert result.exit_code == 1 and "HTTP 413" in result.stderr
    assert _conversation_ids(gateway) == before
    ok = soma("chat", "fine", "--prompt", "refusal_test")
    assert ok.exit_code == 0 and "Echo: fine" in ok.stdout


def test_the_sdk_refusal_leaves_nothing_either(gateway: Gateway) -> None:
    before = _conversation_ids(gateway)
    with Client(api_key=gateway.admin_key, base_url=gateway.base_url) as client:
        with pytest.raises(PayloadTooLargeError):
            client.chat("y" * (MAX_BYTES * 2))
        with pytest.raises(PayloadTooLargeError):  # noqa: SIM117
            with client.chat("y" * (MAX_BYTES * 2), stream=True) as events:
                list(events)
    assert _conversation_ids(gateway) == before


def test_conversations_list_shows_the_model(soma: Soma) -> None:
    made = soma("chat", "which model?", "--model", MODEL, "--json")
    conversation_id = json.loads(made.stdout)["reply"]["conversation_id"]
    listed = soma("conversations", "list", "--limit", "100")
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if conversation_id in line)
    assert MODEL in row


def test_models_lists_the_available_models_with_prices(soma: Soma) -> None:
    as_json = soma("models", "--json")
    assert as_json.exit_code == 0, as_json.output
    listed = json.loads(as_json.stdout)
    assert MODEL in {m["id"] for m in listed}
    assert all(m["available"] for m in listed)
    everything = json.loads(soma("models", "--all", "--json").stdout)
    assert len(everything) > len(listed)  # providers without a key are in the registry too

    table = soma("models")
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if line.split()[:1] == [MODEL])
    mini = next(m for m in listed if m["id"] == MODEL)
    assert f"${mini['input_cost_per_mtok']:,.2f}" in row
    assert f"${mini['output_cost_per_mtok']:,.2f}" in row
    hidden = len(everything) - len(listed)
    assert f"{hidden} models not configured here (--all lists them)" in table.stderr
    full = soma("models", "--all")
    assert {m["id"] for m in everything} <= {
        line.split()[0] for line in full.stdout.splitlines() if line.split()
    }


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeVendor) -> Iterator[Gateway]:
    with serve_gateway(
        tmp_path_factory.mktemp("limited-cli"), fake_openai, rate_limit_per_minute=2
    ) as running:
        yield running


def test_a_rate_limited_wait_is_said_on_stderr(
    limited: Gateway, invoke: Invoke, _no_retry_waits: list[float]
) -> None:
    soma = limited.soma(invoke)
    results = [soma("conversations", "list") for _ in range(3)]
    assert results[0].exit_code == 0 and results[1].exit_code == 0
    refused = results[2]
    assert refused.exit_code == 1 and "HTTP 429" in refused.stderr
    notes = [line for line in refused.stderr.splitlines() if "retrying" in line]
    assert len(notes) == 2  # one per retry (the conftest skips the real waits)
    for note, wait in zip(notes, _no_retry_waits, strict=True):
        seconds = f"{wait:.1f}".removesuffix(".0")
        assert note == f"rate limited, retrying in {seconds} s"


def test_the_model_column_falls_back_to_the_latest_reply(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from datetime import UTC, datetime

    from somaagent.cli import _render
    from somaagent.types import Conversation, Page

    now = datetime.now(UTC)
    rows = [
        Conversation(id="conv_fixed", model="gpt-4o", created_at=now, updated_at=now),
        Conversation(
            id="conv_replied", last_model="claude-3-haiku", created_at=now, updated_at=now
        ),
        Conversation(id="conv_new", created_at=now, updated_at=now),
    ]
    _render.conversations_table(Page[Conversation](data=rows, has_more=False))
    cells = [[c.strip() for c in line.split("│")] for line in capsys.readouterr().out.splitlines()]
    model = {row[0]: row[2] for row in cells if row[0].startswith("conv_")}
    assert model == {
        "conv_fixed": "gpt-4o",
        "conv_replied": "claude-3-haiku",
        "conv_new": "(default)",
    }
