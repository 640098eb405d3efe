"""The template spec and its file format; they live in :mod:`somaagent.types.templates` (the SDK
and the CLI need them without the server extra) and are re-exported here under their old names.
"""

from __future__ import annotations

from somaagent.types.templates import (
    FILE_SUFFIXES as FILE_SUFFIXES,
)
from somaagent.types.templates import (
    LABEL_PATTERN as LABEL_PATTERN,
)
from somaagent.types.templates import (
    NAME_PATTERN as NAME_PATTERN,
)
from somaagent.types.templates import (
    RESERVED_NAMES as RESERVED_NAMES,
)
from somaagent.types.templates import (
    PromptRef as PromptRef,
)
from somaagent.types.templates import (
    Role as Role,
)
from somaagent.types.templates import (
    TemplateSpec as TemplateSpec,
)
from somaagent.types.templates import (
    VariableSpec as VariableSpec,
)
from somaagent.types.templates import (
    VariableType as VariableType,
)
from somaagent.types.templates import (
    a_type as a_type,
)
from somaagent.types.templates import (
    check_type as check_type,
)
from somaagent.types.templates import (
    dump_template_text as dump_template_text,
)
from somaagent.types.templates import (
    iter_template_files as iter_template_files,
)
from somaagent.types.templates import (
    json_type_name as json_type_name,
)
from somaagent.types.templates import (
    load_template_file as load_template_file,
)
from somaagent.types.templates import (
    parse_ref as parse_ref,
)
from somaagent.types.templates import (
    parse_template_text as parse_template_text,
)

__all__ = [
    "FILE_SUFFIXES",
    "LABEL_PATTERN",
    "NAME_PATTERN",
    "RESERVED_NAMES",
    "PromptRef",
    "Role",
    "TemplateSpec",
    "VariableSpec",
    "VariableType",
    "a_type",
    "check_type",
    "dump_template_text",
    "iter_template_files",
    "json_type_name",
    "load_template_file",
    "parse_ref",
    "parse_template_text",
]
