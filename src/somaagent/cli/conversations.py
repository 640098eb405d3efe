"""``soma conversations list`` and ``soma conversations show``."""

from __future__ import annotations

import click

from somaagent.cli import _render
from somaagent.cli._config import CliState, pass_state
from somaagent.types import Message

_PAGE = 100  # the API's largest page, to fetch a whole conversation in few requests


@click.group()
def conversations() -> None:
    """List and read conversations."""


@conversations.command("list")
@click.option(
    "--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="Page size."
)
@click.option("--cursor", metavar="CURSOR", help="Where to continue (from the previous page).")
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@pass_state
def list_conversations(state: CliState, limit: int, cursor: str | None, as_json: bool) -> None:
    """List conversations, newest first."""
    with state.resolve().client() as client:
        page = client.conversations.list(limit=limit, cursor=cursor)
    if as_json:
        _render.as_json(page)
    else:
        _render.conversations_table(page)


@conversations.command("show")
@click.argument("conversation_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the conversation as JSON.")
@pass_state
def show(state: CliState, conversation_id: str, as_json: bool) -> None:
    """Show a conversation and all its messages."""
    with state.resolve().client() as client:
        conversation = client.conversations.get(conversation_id)
        messages: list[Message] = []
        cursor: str | None = None
        while True:
            page = client.conversations.messages(conversation_id, limit=_PAGE, cursor=cursor)
            messages += page.data
            cursor = page.next_cursor
            if not (page.has_more and cursor):
                break
    if as_json:
        _render.as_json(
            {
                "conversation": conversation.model_dump(mode="json"),
                "messages": [m.model_dump(mode="json") for m in messages],
            }
        )
    else:
        _render.conversation_detail(conversation, messages)
