"""The prompt API's wire models; they live in :mod:`somaagent.types.prompts` (the SDK needs them
without the server extra) and are re-exported here under their old names.
"""

from __future__ import annotations

from somaagent.types.prompts import (
    MAX_CHAIN as MAX_CHAIN,
)
from somaagent.types.prompts import (
    ChainRenderRequest as ChainRenderRequest,
)
from somaagent.types.prompts import (
    LabelUpdate as LabelUpdate,
)
from somaagent.types.prompts import (
    PromptDiff as PromptDiff,
)
from somaagent.types.prompts import (
    PromptLabels as PromptLabels,
)
from somaagent.types.prompts import (
    PromptSummary as PromptSummary,
)
from somaagent.types.prompts import (
    PromptVersion as PromptVersion,
)
from somaagent.types.prompts import (
    RenderedChain as RenderedChain,
)
from somaagent.types.prompts import (
    RenderedPrompt as RenderedPrompt,
)
from somaagent.types.prompts import (
    RenderRequest as RenderRequest,
)
from somaagent.types.prompts import (
    Source as Source,
)
from somaagent.types.prompts import (
    VariablePublic as VariablePublic,
)

__all__ = [
    "MAX_CHAIN",
    "ChainRenderRequest",
    "LabelUpdate",
    "PromptDiff",
    "PromptLabels",
    "PromptSummary",
    "PromptVersion",
    "RenderRequest",
    "RenderedChain",
    "RenderedPrompt",
    "Source",
    "VariablePublic",
]
