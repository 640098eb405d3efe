"""``soma chat``: send one message and print the reply."""

from __future__ import annotations

import sys

import click

from somaagent.cli import _render
from somaagent.cli._config import CliState, pass_state
from somaagent.cli.prompts import template_variables
from somaagent.errors import SomaAgentError
from somaagent.sdk import Client


@click.command()
@click.argument("message")
@click.option("--stream", is_flag=True, help="Print the reply as it is generated.")
@click.option(
    "--conversation",
    "conversation_id",
    metavar="ID",
    help="Continue this conversation (default: start a new one).",
)
@click.option("--model", metavar="MODEL", help="A model name, or `auto` to let the router pick.")
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
    message: str,
    stream: bool,
    conversation_id: str | None,
    model: str | None,
    prompt_ref: str | None,
    collection: str | None,
    pairs: tuple[str, ...],
    as_json: bool,
) -> None:
    """Send MESSAGE (`-` reads it from stdin) and print the reply.

    The footer (on stderr) names the model, tokens, cost, latency and the conversation, whose
    id continues it: soma chat --conversation ID "and then?"
    """
    if message == "-":
        message = sys.stdin.read().strip()
    if not message.strip():
        raise click.UsageError("the message is empty")
    if prompt_ref is not None and conversation_id is not None:
        raise click.UsageError("--prompt starts a new conversation; drop --conversation")
    if pairs and prompt_ref is None:
        raise click.UsageError("--var needs --prompt")
    with state.resolve().client() as client:
        if prompt_ref is not None:
            variables = template_variables(client, prompt_ref, pairs)
            conversation_id = client.conversations.create(
                prompt=prompt_ref, variables=variables, model=model
            ).id
        if stream:
            _stream(
                client,
                message,
                conversation_id=conversation_id,
                model=model,
                collection=collection,
                as_json=as_json,
            )
            return
        exchange = client.chat(
            message, conversation_id=conversation_id, model=model, collection=collection
        )
    if as_json:
        _render.as_json(exchange)
    else:
        _render.reply(exchange.reply.content)
        _render.footer(exchange.reply)


def _stream(
    client: Client,
    message: str,
    *,
    conversation_id: str | None,
    model: str | None,
    collection: str | None,
    as_json: bool,
) -> None:
    printed = False
    try:
        with client.chat(
            message,
            conversation_id=conversation_id,
            model=model,
            collection=collection,
            stream=True,
        ) as events:
            for event in events:
                if as_json:
                    _render.json_line(event)
                elif event.event == "message.delta":
                    _render.delta(str(event.data.get("delta", "")))
                    printed = True
    except SomaAgentError:
        if printed:  # end the partial reply's line before the error
            _render.end_of_stream()
        raise
    if not as_json:
        _render.end_of_stream()
        if events.reply is not None:
            _render.footer(events.reply)
