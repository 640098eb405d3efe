"""The chat domain: conversations, their messages, and the conversation turn (history, context
fitting, grounding, routing and fallback, storing the reply); see ``README.md``.

The public services are :class:`~somaagent.chat.conversations.ConversationService` and
:class:`~somaagent.chat.turns.ChatTurns`; the gateway's app factory wires them.
"""

from __future__ import annotations
