"""``soma chat``: text, Markdown-free plain output off a terminal, JSON, streams, errors."""

from __future__ import annotations

import json

import pytest

from somaagent import MessageExchange, StreamEvent
from tests.cli.conftest import Invoke
from tests.sdk.stub_gateway import ALICE_KEY, StubGateway


@pytest.fixture
def logged_in(invoke: Invoke, base_url: str) -> None:
    assert invoke("login", "--base-url", base_url, "--api-key", ALICE_KEY).exit_code == 0


@pytest.mark.usefixtures("logged_in")
def test_chat_prints_the_reply_and_a_footer(invoke: Invoke, stub: StubGateway) -> None:
    result = invoke("chat", "hello there")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Echo: hello there\n"
    footer = result.stderr.strip()
    assert "stub-echo-1" in footer
    assert "6 tokens (3 in, 3 out)" in footer
    assert "$0.000006" in footer
    assert "12 ms" in footer
    assert "conversation conv_" in footer
    assert len(stub.requests_to("/v1/conversations", "POST")) == 1  # a new conversation


@pytest.mark.usefixtures("logged_in")
def test_chat_json_prints_the_exchange(invoke: Invoke) -> None:
    result = invoke("chat", "hi", "--json", "--model", "stub-big")
    assert result.exit_code == 0, result.output
    exchange = MessageExchange.model_validate_json(result.stdout)
    assert exchange.message.content == "hi"
    assert exchange.reply.content == "Echo: hi"
    assert exchange.reply.model == "stub-big"
    assert result.stderr == ""


@pytest.mark.usefixtures("logged_in")
def test_chat_continues_a_conversation(invoke: Invoke, stub: StubGateway) -> None:
    first = MessageExchange.model_validate_json(invoke("chat", "one", "--json").stdout)
    conversation_id = first.reply.conversation_id
    result = invoke("chat", "two", "--conversation", conversation_id, "--json")
    assert result.exit_code == 0, result.output
    assert MessageExchange.model_validate_json(result.stdout).reply.conversation_id == (
        conversation_id
    )
    assert len(stub.requests_to("/v1/conversations", "POST")) == 1


@pytest.mark.usefixtures("logged_in")
def test_chat_stream_prints_the_text(invoke: Invoke) -> None:
    result = invoke("chat", "a streamed answer", "--stream")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Echo: a streamed answer\n"
    assert "stub-echo-1" in result.stderr


@pytest.mark.usefixtures("logged_in")
def test_chat_stream_json_prints_one_event_per_line(invoke: Invoke) -> None:
    result = invoke("chat", "x y", "--stream", "--json")
    assert result.exit_code == 0, result.output
    events = [StreamEvent.model_validate_json(line) for line in result.stdout.splitlines()]
    assert [e.event for e in events] == [
        "message.created",
        "message.delta",
        "message.delta",
        "message.delta",
        "message.completed",
    ]
    assert [e.id for e in events] == ["1", "2", "3", "4", "5"]
    assert all(json.loads(line) for line in result.stdout.splitlines())


@pytest.mark.usefixtures("logged_in")
def test_chat_reads_the_message_from_stdin(invoke: Invoke) -> None:
    result = invoke("chat", "-", input="from a pipe\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Echo: from a pipe\n"


@pytest.mark.usefixtures("logged_in")
def test_an_unknown_conversation_exits_3(invoke: Invoke) -> None:
    result = invoke("chat", "hi", "--conversation", "conv_nope")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: conversation conv_nope not found (HTTP 404")
    assert result.stderr.count("\n") == 1
    assert isinstance(result.exception, SystemExit)  # no traceback


def test_a_bad_key_exits_4(invoke: Invoke, base_url: str) -> None:
    result = invoke("--base-url", base_url, "--api-key", "soma_sk_bad", "chat", "hi")
    assert result.exit_code == 4
    assert result.stderr.startswith("error: missing or invalid API key (HTTP 401")
    assert "soma login" in result.stderr


def test_no_key_exits_4(invoke: Invoke, base_url: str) -> None:
    result = invoke("--base-url", base_url, "chat", "hi")
    assert result.exit_code == 4
    assert "not logged in" in result.stderr


@pytest.mark.usefixtures("logged_in")
def test_an_error_event_mid_stream_exits_1(invoke: Invoke) -> None:
    result = invoke("chat", "boom !error", "--stream")
    assert result.exit_code == 1
    assert result.stdout == "Echo: boom !error\n"  # the partial reply, its line ended
    assert result.stderr.startswith("error: the model failed mid-stream (HTTP 502")


@pytest.mark.usefixtures("logged_in")
def test_a_truncated_stream_is_an_error(invoke: Invoke) -> None:
    result = invoke("chat", "cut !truncate", "--stream")
    assert result.exit_code == 1
    assert "message.completed" in result.stderr


@pytest.mark.usefixtures("logged_in")
def test_server_errors_exit_1_after_retries(
    invoke: Invoke, stub: StubGateway, _no_retry_waits: list[float]
) -> None:
    stub.fail_next(3, 503, path="/v1/conversations")
    result = invoke("chat", "hi")
    assert result.exit_code == 1
    assert "HTTP 503" in result.stderr
    assert len(_no_retry_waits) == 2


@pytest.mark.usefixtures("logged_in")
def test_an_empty_message_is_a_usage_error(invoke: Invoke) -> None:
    assert invoke("chat", "  ").exit_code == 2
