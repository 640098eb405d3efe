"""``soma chat``: send one message and print the reply, or talk in a session (no message)."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from typing import Any

import click

from somaagent.cli import _render
from somaagent.cli._config import CliState, pass_state
from somaagent.cli.prompts import template_variables
from somaagent.errors import APIError, SomaAgentError
from somaagent.sdk import Client
from somaagent.types import Message

_EXIT_WORDS = frozenset({"/exit", "/quit", "exit", "quit"})
_NEW_WORDS = frozenset({"/new"})


@dataclass
class _Session:
    """One conversation through the CLI: the first message creates it, later ones continue it.

    A conversation made from ``--prompt`` is created with the first message and deleted again
    if the gateway refuses that message, as :meth:`Client.chat` does for the ones it makes: a
    refused request leaves nothing behind.
    """

    client: Client
    conversation_id: str | None
    model: str | None
    collection: str | None
    max_tokens: int | None
    temperature: float | None
    stream: bool
    as_json: bool
    prompt_ref: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)

    def send(self, message: str) -> None:
        """Send one message and print the reply and its footer."""
        made: str | None = None
        if self.conversation_id is None and self.prompt_ref is not None:
            made = self.client.conversations.create(
                prompt=self.prompt_ref, variables=self.variables, model=self.model
            ).id
            self.conversation_id = made
        try:
            reply = self._stream(message) if self.stream else self._send(message)
        except APIError:
            if made is not None:  # the template's conversation goes with its refused message
                self.conversation_id = None
                with contextlib.suppress(SomaAgentError):
                    self.client.conversations.delete(made)
            raise
        if reply is not None:
            self.conversation_id = reply.conversation_id

    def _send(self, message: str) -> Message:
        exchange = self.client.chat(
            message,
            conversation_id=self.conversation_id,
            model=self.model,
            collection=self.collection,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
        )
        if self.as_json:
            _render.as_json(exchange)
        else:
            _render.reply(exchange.reply.content)
            _render.footer(exchange.reply)
        return exchange.reply

    def _stream(self, message: str) -> Message | None:
        printed = False
        try:
            with self.client.chat(
                message,
                conversation_id=self.conversation_id,
                model=self.model,
                collection=self.collection,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                stream=True,
            ) as events:
                for event in events:
                    if self.as_json:
                        _render.json_line(event)
                    elif event.event == "message.delta":
                        _render.delta(str(event.data.get("delta", "")))
                        printed = True
        except SomaAgentError:
            if printed:  # end the partial reply's line before the error
                _render.end_of_stream()
            raise
        if not self.as_json:
            _render.end_of_stream()
            if events.reply is not None:
                _render.footer(events.reply)
        return events.reply


@click.command()
@click.argument("message", required=False)
@click.option("--stream", is_flag=True, help="Print the reply as it is generated.")
@click.option(
    "--conversation",
    "conversation_id",
    metavar="ID",
    help="Continue this conversation (default: start a new one).",
)
@click.option("--model", metavar="MODEL", help="A model name, or `auto` to let the router pick.")
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    metavar="N",
    help="The most tokens the reply may have.",
)
@click.option(
    "--temperature",
    type=click.FloatRange(0.0, 2.0),
    metavar="T",
    help="Sampling temperature, 0 (deterministic) to 2.",
)
@click.option(
    "--prompt",
    "prompt_ref",
    metavar="NAME[@VERSION|:LABEL]",
    help="Start the conversation with a stored prompt template as its system prompt.",
)
@click.option(
    "--collection",
    metavar="NAME",
    help="Ground the answer in this memory collection; the sources are listed under it.",
)
@click.option(
    "--var", "pairs", multiple=True, metavar="NAME=VALUE", help="A --prompt variable (repeatable)."
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the exchange as JSON (with --stream: one JSON event per line).",
)
@pass_state
def chat(
    state: CliState,
    message: str | None,
    stream: bool,
    conversation_id: str | None,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    prompt_ref: str | None,
    collection: str | None,
    pairs: tuple[str, ...],
    as_json: bool,
) -> None:
    """Send MESSAGE (`-` reads it from stdin) and print the reply; with no MESSAGE, start an
    interactive session that keeps one conversation (/new starts another, /exit or Ctrl-D
    ends it).

    The footer (on stderr) names the model, tokens, cost, latency and the conversation, whose
    id continues it: soma chat --conversation ID "and then?"
    """
    if message == "-":
        message = sys.stdin.read().strip()
        if not message:
            raise click.UsageError("the message is empty")
    elif message is not None and not message.strip():
        raise click.UsageError("the message is empty")
    if prompt_ref is not None and conversation_id is not None:
        raise click.UsageError("--prompt starts a new conversation; drop --conversation")
    if pairs and prompt_ref is None:
        raise click.UsageError("--var needs --prompt")
    with state.resolve().client() as client:
        session = _Session(
            client,
            conversation_id=conversation_id,
            model=model,
            collection=collection,
            max_tokens=max_tokens,
            temperature=temperature,
            stream=stream,
            as_json=as_json,
            prompt_ref=prompt_ref,
        )
        if prompt_ref is not None:
            session.variables = template_variables(client, prompt_ref, pairs)
        if message is not None:
            session.send(message)
        else:
            _repl(session, base_url=client.base_url)


def _repl(session: _Session, *, base_url: str) -> None:
    """Read messages until /exit or end of input; an error ends only its own turn."""
    _render.note(
        f"chatting with {base_url}"
        + (f" in conversation {session.conversation_id}" if session.conversation_id else "")
        + "; /new starts a new conversation, /exit or Ctrl-D ends"
    )
    while True:
        try:
            line = click.prompt("you", prompt_suffix="> ", default="", show_default=False)
        except click.Abort:  # Ctrl-D or Ctrl-C at the prompt
            click.echo(err=True)
            break
        text = line.strip()
        if not text:
            continue
        if text in _EXIT_WORDS:
            break
        if text in _NEW_WORDS:
            session.conversation_id = None
            _render.note("a new conversation starts with your next message")
            continue
        try:
            session.send(text)
        except SomaAgentError as exc:
            _render.error(_render.describe(exc))
    if session.conversation_id is not None:
        _render.note(f"continue it with: soma chat --conversation {session.conversation_id}")
