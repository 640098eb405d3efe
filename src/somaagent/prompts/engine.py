"""Compiling and rendering templates in Jinja2's sandbox.

:class:`PromptEngine` compiles a :class:`~somaagent.prompts.template.TemplateSpec` once (a
syntax error, an include, an underscore attribute or a variable the spec does not declare is
a :class:`~somaagent.errors.ValidationError` with line and column; a body over the size limit is
a :class:`~somaagent.errors.PayloadTooLargeError`), checks a render's variables against the
declarations (missing, undeclared, wrong type: a 422 naming each), and renders in
:class:`~somaagent.prompts._guard.PromptEnvironment` with ``StrictUndefined``, under an output
limit and a deadline.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import anyio.to_thread
from jinja2 import (
    Template,
    TemplateError,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
    meta,
    nodes,
)
from jinja2.exceptions import SecurityError

from somaagent.errors import PayloadTooLargeError, ValidationError
from somaagent.prompts._diagnostics import (
    Position,
    error_line,
    find_in_line,
    normalize_newlines,
    parse_with_positions,
)
from somaagent.prompts._guard import (
    TEMPLATE_FILENAME,
    PromptEnvironment,
    RenderLimits,
    RenderTimeoutError,
    ResourceLimitError,
    deadline,
)
from somaagent.prompts.template import TemplateSpec, a_type, check_type, json_type_name

__all__ = ["CompiledTemplate", "PromptEngine", "RenderLimits"]

Loc = Sequence[str | int]
_BODY_LOC: tuple[str, ...] = ("body", "body")
_VARIABLES_LOC: tuple[str, ...] = ("body", "variables")

_STATEMENTS: dict[type[nodes.Node], str] = {
    nodes.Extends: "extends",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from",
}


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """A spec and its compiled body.

    Attributes:
        spec: the template's spec.
        template: the compiled Jinja2 template.
        referenced: the variables the body reads.
    """

    spec: TemplateSpec
    template: Template
    referenced: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Problem:
    message: str
    position: Position
    kind: str


def _invalid(name: str, problems: Sequence[_Problem], loc: Loc) -> ValidationError:
    def where(p: _Problem) -> str:
        return f"line {p.position.line}, column {p.position.column}: {p.message}"

    errors: list[dict[str, Any]] = [
        {
            "loc": list(loc),
            "msg": where(p),
            "type": p.kind,
            "line": p.position.line,
            "column": p.position.column,
        }
        for p in problems
    ]
    detail = "; ".join(where(p) for p in problems)
    return ValidationError(f"template {name!r} does not compile: {detail}", errors=errors)


class PromptEngine:
    """Compiles and renders templates; safe to share between threads and tasks.

    Args:
        limits: size, output and time limits.
        cache_size: how many compiled bodies to keep (bodies are immutable, so a body's
            compiled form can be reused by every version and tenant that has it).
    """

    def __init__(self, limits: RenderLimits | None = None, *, cache_size: int = 256) -> None:
        self.limits = limits or RenderLimits()
        self.environment = PromptEnvironment(self.limits)
        # read when a template compiles: every ``{{ ... }}`` goes through it
        self.environment.finalize = _printable
        self._cache: OrderedDict[str, tuple[Template, frozenset[str], nodes.Template]] = (
            OrderedDict()
        )
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # -- compiling ---------------------------------------------------------------------------

    def compile(self, spec: TemplateSpec, *, loc: Loc = _BODY_LOC) -> CompiledTemplate:
        """Compile ``spec``'s body and check it uses only declared variables.

        Raises:
            PayloadTooLargeError: the body is over ``limits.max_template_chars``.
            ValidationError: a syntax error, a forbidden construct or an undeclared variable,
                each with its line and column.
        """
        size, limit = len(spec.body), self.limits.max_template_chars
        if size > limit:
            raise PayloadTooLargeError(
                f"template {spec.name!r} is {size:,} characters; the limit is {limit:,}",
                errors=[{"loc": list(loc), "msg": "template too large", "type": "too_large"}],
            )
        key = hashlib.sha256(spec.body.encode()).hexdigest()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        if cached is None:
            cached = self._build(spec.name, spec.body, loc)
            with self._lock:
                self._cache[key] = cached
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        template, referenced, ast = cached
        undeclared = referenced - {v.name for v in spec.variables}
        if undeclared:
            source = normalize_newlines(spec.body)
            problems = [
                _Problem(
                    f"{node.name!r} is not a declared variable; declare it under `variables`",
                    find_in_line(source, node.lineno, node.name),
                    "undeclared_variable",
                )
                for node in _first_uses(ast, undeclared)
            ]
            raise _invalid(spec.name, problems, loc)
        return CompiledTemplate(spec=spec, template=template, referenced=referenced)

    def _build(
        self, name: str, body: str, loc: Loc
    ) -> tuple[Template, frozenset[str], nodes.Template]:
        env = self.environment
        source = normalize_newlines(body)
        try:
            ast = parse_with_positions(env, source)
        except TemplateSyntaxError as exc:
            position: Position = getattr(exc, "position", Position(exc.lineno, 1))
            problem = _Problem(exc.message or "syntax error", position, "syntax")
            raise _invalid(name, [problem], loc) from None
        problems = list(_forbidden(ast, source))
        if problems:
            raise _invalid(name, problems, loc)
        try:
            referenced = frozenset(meta.find_undeclared_variables(ast) - set(env.globals))
            code = env.compile(ast, filename=TEMPLATE_FILENAME)
        except TemplateSyntaxError as exc:  # unknown filters and tests
            message = exc.message or "invalid template"
            quoted = message.split("'")
            position = (
                find_in_line(source, exc.lineno, quoted[1])
                if len(quoted) > 2
                else Position(exc.lineno, 1)
            )
            raise _invalid(name, [_Problem(message, position, "syntax")], loc) from None
        template = env.template_class.from_code(env, code, env.make_globals(None))
        # ``~`` compiles to calls of these module-level helpers: bound them like the rest.
        namespace = template.root_render_func.__globals__
        for helper in ("str_join", "markup_join"):
            namespace[helper] = env.bounded_join(namespace[helper])
        return template, referenced, ast

    # -- variables ---------------------------------------------------------------------------

    def bind(
        self, spec: TemplateSpec, variables: Mapping[str, Any], *, loc: Loc = _VARIABLES_LOC
    ) -> dict[str, Any]:
        """Check ``variables`` against ``spec`` and add the defaults.

        Raises:
            ValidationError: naming every missing, undeclared or mistyped variable.
        """
        errors: list[dict[str, Any]] = []
        declared = {v.name: v for v in spec.variables}
        for key in variables:
            if key not in declared:
                names = ", ".join(sorted(declared)) or "none"
                errors.append(
                    {
                        "loc": [*loc, key],
                        "msg": f"{key!r} is not a variable of template {spec.name!r} "
                        f"(it declares: {names})",
                        "type": "undeclared_variable",
                    }
                )
        context: dict[str, Any] = {}
        for name, variable in declared.items():
            value = variables.get(name)
            if value is None and not variable.required:
                context[name] = variable.default
            elif name not in variables:
                errors.append(
                    {
                        "loc": [*loc, name],
                        "msg": f"required variable {name!r} is missing",
                        "type": "missing",
                    }
                )
            elif not check_type(value, variable.type):
                errors.append(
                    {
                        "loc": [*loc, name],
                        "msg": f"{name!r} must be {a_type(variable.type)}, "
                        f"not {a_type(json_type_name(value))}",
                        "type": "type_error",
                    }
                )
            else:
                context[name] = value
        if errors:
            detail = "; ".join(e["msg"] for e in errors)
            raise ValidationError(f"invalid variables for {spec.name!r}: {detail}", errors=errors)
        return context

    # -- rendering ---------------------------------------------------------------------------

    def render(
        self,
        compiled: CompiledTemplate,
        variables: Mapping[str, Any],
        *,
        loc: Loc = _VARIABLES_LOC,
    ) -> str:
        """Render ``compiled`` with ``variables`` (blocking; see :meth:`render_async`).

        Returns:
            The rendered text, without leading and trailing whitespace.

        Raises:
            ValidationError: bad variables, a sandbox violation, an error while rendering,
                or a limit exceeded (output size, value size, time).
        """
        context = self.bind(compiled.spec, variables, loc=loc)
        limit = self.limits.max_output_chars
        chunks: list[str] = []
        size = 0
        stream = cast(Generator[str, None, None], compiled.template.generate(context))
        try:
            with deadline(self.limits.timeout_s):
                for chunk in stream:
                    size += len(chunk)
                    if size > limit:
                        raise ResourceLimitError(
                            f"the rendered text is over the limit of {limit:,} characters"
                        )
                    chunks.append(chunk)
        except (
            TemplateError,
            ResourceLimitError,
            ArithmeticError,
            LookupError,
            TypeError,
            ValueError,
            RecursionError,
        ) as exc:
            raise _render_error(compiled.spec.name, exc) from None
        finally:
            stream.close()
        return "".join(chunks).strip()

    async def render_async(
        self,
        compiled: CompiledTemplate,
        variables: Mapping[str, Any],
        *,
        loc: Loc = _VARIABLES_LOC,
    ) -> str:
        """:meth:`render` in a worker thread, so the event loop keeps serving."""
        work = functools.partial(self.render, compiled, variables, loc=loc)
        return await anyio.to_thread.run_sync(work)


_PRINTABLE = (str, int, float, bool, type(None), range, Undefined)


def _printable(value: Any) -> Any:
    """``value`` as ``{{ ... }}`` prints it, when it prints as data.

    A helper object (``cycler``, ``joiner``, ``namespace``), a function or a method would
    print as Python's repr, with a memory address: a prompt should never contain that, and
    the author almost always meant ``cycler.next()`` or ``ns.attribute``. Lists and dicts
    are checked item by item, since they print their items' reprs.

    Raises:
        TypeError: the value (or an item of it) is not data; a 422 naming the template.
    """
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, _PRINTABLE):
            continue
        if isinstance(item, list | tuple):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        else:
            kind = type(item).__name__
            hint = {
                "Cycler": ": print cycler.next() or cycler.current",
                "Namespace": ": print one of its attributes",
            }.get(kind, "")
            raise TypeError(f"a {kind} object cannot be printed in a prompt{hint}")
    return value


def _render_error(name: str, exc: BaseException) -> ValidationError:
    if isinstance(exc, ValidationError):
        return exc
    kind, what = "template_error", "failed"
    if isinstance(exc, SecurityError):
        kind, what = "template_security", "was stopped by the sandbox"
    elif isinstance(exc, RenderTimeoutError):
        kind, what = "template_timeout", "took too long"
    elif isinstance(exc, ResourceLimitError):
        kind, what = "template_limit", "exceeded a limit"
    elif isinstance(exc, UndefinedError):
        kind, what = "template_undefined", "used something undefined"
    elif isinstance(exc, RecursionError):
        exc = RecursionError("too much recursion")
    line = error_line(exc)
    where = f" at line {line}" if line is not None else ""
    message = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    error: dict[str, Any] = {"loc": ["template", name], "msg": message, "type": kind}
    if line is not None:
        error["line"] = line
    return ValidationError(f"template {name!r} {what}{where}: {message}", errors=[error])


def _forbidden(ast: nodes.Template, source: str) -> list[_Problem]:
    problems: list[_Problem] = []
    for kind, keyword in _STATEMENTS.items():
        for node in ast.find_all(kind):
            problems.append(
                _Problem(
                    f"`{keyword}` is not supported: a prompt cannot load other templates "
                    "(render several with a chain instead)",
                    find_in_line(source, node.lineno, keyword),
                    "forbidden_statement",
                )
            )
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        attribute: object = None
        if isinstance(node, nodes.Getattr):
            attribute = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            attribute = node.arg.value
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            first = node.args[0]
            attribute = first.value if isinstance(first, nodes.Const) else None
        if isinstance(attribute, str) and attribute.startswith("_"):
            problems.append(
                _Problem(
                    f"access to {attribute!r} is not allowed: names starting with '_' are "
                    "internals",
                    find_in_line(source, node.lineno, attribute, word=False),
                    "unsafe_attribute",
                )
            )
    return sorted(problems, key=lambda p: (p.position.line, p.position.column))


def _first_uses(ast: nodes.Template, names: frozenset[str]) -> list[nodes.Name]:
    first: dict[str, nodes.Name] = {}
    for node in ast.find_all(nodes.Name):
        if node.ctx == "load" and node.name in names and node.name not in first:
            first[node.name] = node
    return sorted(first.values(), key=lambda n: (n.lineno, n.name))
