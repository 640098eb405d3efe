"""The chat domain: conversations, their messages, and the conversation turn (history, context
fitting, grounding, routing and fallback, storing the reply); see ``README.md``.

The public services are :class:`~somaagent.chat.conversations.ConversationService`,
:class:`~somaagent.chat.turns.ChatTurns` and (stateless, OpenAI-style completions)
:class:`~somaagent.chat.completions.ChatCompletions`; the gateway's app factory wires them.
"""

from __future__ import annotations
