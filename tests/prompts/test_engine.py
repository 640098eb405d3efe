"""The sandboxed engine: compiling, variables, the sandbox, limits, and error positions."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from somaagent.errors import PayloadTooLargeError, ValidationError
from somaagent.prompts._guard import RenderLimits
from somaagent.prompts.engine import PromptEngine
from somaagent.prompts.template import TemplateSpec, a_type


def spec(body: str, *variables: dict[str, Any], role: str = "user") -> TemplateSpec:
    return TemplateSpec.model_validate(
        {"name": "t", "role": role, "body": body, "variables": list(variables)}
    )


def render(engine: PromptEngine, body: str, values: dict[str, Any] | None = None) -> str:
    """Render ``body`` with every value declared as ``any``."""
    values = values or {}
    compiled = engine.compile(spec(body, *({"name": k, "type": "any"} for k in values)))
    return engine.render(compiled, values)


def render_error(engine: PromptEngine, body: str, values: dict[str, Any] | None = None) -> Any:
    with pytest.raises(ValidationError) as caught:
        render(engine, body, values)
    return caught.value


def test_renders_with_variables_defaults_and_no_autoescaping(engine: PromptEngine) -> None:
    template = spec(
        "{{ greeting }}, {{ who }}! <b>{{ extra }}</b>"
        "{% if tags %} {{ tags|join(', ') }}{% endif %}",
        {"name": "who"},
        {"name": "greeting", "default": "Hello"},
        {"name": "extra", "default": "&"},
        {"name": "tags", "type": "list", "required": False},
    )
    compiled = engine.compile(template)
    assert compiled.referenced == {"greeting", "who", "extra", "tags"}
    assert engine.render(compiled, {"who": "Ada"}) == "Hello, Ada! <b>&</b>"
    assert engine.render(compiled, {"who": "A", "tags": ["x", "y"]}) == "Hello, A! <b>&</b> x, y"


@pytest.mark.parametrize(
    ("declared", "value", "ok"),
    [
        ("string", "s", True),
        ("string", 1, False),
        ("integer", 3, True),
        ("integer", 3.5, False),
        ("integer", True, False),
        ("number", 3.5, True),
        ("number", 3, True),
        ("boolean", False, True),
        ("boolean", 0, False),
        ("list", [1], True),
        ("list", {"a": 1}, False),
        ("object", {"a": 1}, True),
        ("object", None, False),
        ("any", None, True),
    ],
)
def test_variable_types(engine: PromptEngine, declared: str, value: Any, ok: bool) -> None:
    compiled = engine.compile(spec("{{ v }}", {"name": "v", "type": declared}))
    if ok:
        engine.render(compiled, {"v": value})
        return
    with pytest.raises(ValidationError) as caught:
        engine.render(compiled, {"v": value})
    assert caught.value.errors == [
        {
            "loc": ["body", "variables", "v"],
            "msg": caught.value.errors[0]["msg"],
            "type": "type_error",
        }
    ]
    assert f"'v' must be {a_type(declared)}" in caught.value.message


def test_every_bad_variable_is_named_at_once(engine: PromptEngine) -> None:
    compiled = engine.compile(spec("{{ a }}{{ b }}", {"name": "a"}, {"name": "b"}))
    with pytest.raises(ValidationError) as caught:
        engine.render(compiled, {"b": 1, "c": 2}, loc=("body", "prompt", "variables"))
    assert sorted((e["loc"][-1], e["type"]) for e in caught.value.errors) == [
        ("a", "missing"),
        ("b", "type_error"),
        ("c", "undeclared_variable"),
    ]
    assert all(e["loc"][:3] == ["body", "prompt", "variables"] for e in caught.value.errors)


def test_strict_undefined_fails_instead_of_printing_nothing(engine: PromptEngine) -> None:
    error = render_error(engine, "{{ user.name }}", {"user": {}})
    assert error.errors[0]["type"] == "template_undefined"
    assert "has no attribute 'name'" in error.message


SSTI = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__base__.__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ config.items() }}",
    "{{ request.application.__globals__ }}",
    "{{ ''|attr('__class__') }}",
    "{{ ()['__class__'] }}",
    "{% include 'secrets.txt' %}",
    "{% extends 'base.html' %}",
    "{% import 'macros' as m %}",
    "{% from 'macros' import m %}",
]


@pytest.mark.parametrize("payload", SSTI)
def test_template_injection_payloads_do_not_compile(engine: PromptEngine, payload: str) -> None:
    with pytest.raises(ValidationError) as caught:
        engine.compile(spec(payload))
    assert caught.value.errors[0]["type"] in {
        "unsafe_attribute",
        "undeclared_variable",
        "forbidden_statement",
    }


DYNAMIC = [
    ("{{ x|attr(a) }}", {"x": "", "a": "__class__"}),
    ("{{ x[a] }}", {"x": "", "a": "__class__"}),
    ("{{ x|attr(a)|attr(b) }}", {"x": "", "a": "__class__", "b": "__subclasses__"}),
    ("{{ '{0.__class__}'.format(x) }}", {"x": ""}),
    ("{{ '{0.' ~ a ~ '}' }}{{ ('{0.' ~ a ~ '}').format(x) }}", {"x": "", "a": "__class__"}),
    ("{{ x.append(1) }}", {"x": []}),
    ("{{ x.update({'a': 1}) }}", {"x": {}}),
    ("{{ x.pop() }}", {"x": [1]}),
]


@pytest.mark.parametrize(("body", "values"), DYNAMIC)
def test_the_sandbox_stops_what_only_shows_at_render_time(
    engine: PromptEngine, body: str, values: dict[str, Any]
) -> None:
    error = render_error(engine, body, values)
    # A chain of unsafe lookups may stop at the undefined value the first one left behind.
    assert error.errors[0]["type"] in {"template_security", "template_undefined"}
    assert error.errors[0]["line"] == 1
    assert "<class" not in error.message


LIMITS = [
    ("{{ 'a' * 10000000 }}", "repetition"),
    ("{{ [1] * 10000000 }}", "repetition"),
    ("{{ 9 ** 999999 }}", "too large a number"),
    ("{{ range(100000)|list|length }}", "range()"),
    ("{{ '%09999999d' % 1 }}", "width or precision"),
    ("{{ '{:>9999999}'.format(1) }}", "width or precision"),
    ("{{ '{:{}}'.format(1, 9999999) }}", "width"),
    ("{{ 'x'|center(9999999) }}", "center width"),
    ("{{ 'x'.ljust(9999999) }}", "ljust width"),
    ("{{ ('a\n' * 100000)|indent(100) }}", "indent"),
    ("{{ ('a' * 400000)|replace('a', 'bb') }}", "replace"),
    ("{{ ('a' * 400000).replace('a', 'bb') }}", "replace"),
    ("{{ ('ab' * 1000)|wordwrap(99999) }}", "wordwrap width"),
    ("{% set a = 'x' * 400000 %}{% set b = a ~ a %}", "~"),
    ("{% set a = 'x' * 400000 %}{{ (a + a)|length }}", "+"),
    (
        "{% set ns = namespace(s='ab') %}{% for i in range(30) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "~",
    ),
    ("{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}", "rendered text"),
]


@pytest.mark.parametrize(("body", "message"), LIMITS)
def test_limits_stop_runaway_templates(engine: PromptEngine, body: str, message: str) -> None:
    started = time.monotonic()
    error = render_error(engine, body)
    assert error.errors[0]["type"] == "template_limit"
    assert message in error.message
    assert time.monotonic() - started < 2


def test_a_deadline_stops_endless_loops_and_restores_the_tracer() -> None:
    engine = PromptEngine(RenderLimits(timeout_s=0.2))
    calls: list[str] = []

    def outer(frame: Any, event: str, arg: Any) -> None:
        calls.append(event)

    sys.settrace(outer)
    try:
        started = time.monotonic()
        error = render_error(
            engine,
            "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
        )
        elapsed = time.monotonic() - started
        assert sys.gettrace() is outer
    finally:
        sys.settrace(None)
    assert error.errors[0]["type"] == "template_timeout"
    assert elapsed < 2


def test_recursion_is_an_error_not_a_crash(engine: PromptEngine) -> None:
    error = render_error(engine, "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}")
    assert "recursion" in error.message


def test_oversized_bodies_are_payload_too_large() -> None:
    engine = PromptEngine(RenderLimits(max_template_chars=100))
    with pytest.raises(PayloadTooLargeError, match="101 characters; the limit is 100"):
        engine.compile(spec("x" * 101))


@pytest.mark.parametrize(
    ("body", "line", "column", "message"),
    [
        ("Hello {{ name }", 1, 15, "unexpected '}'"),
        ("a\nb {{ x + }} c", 2, 10, "unexpected 'end of print statement'"),
        ("line1\n  {% foo %}", 2, 6, "unknown tag 'foo'"),
        ("ok\n{{ 'abc }}", 2, 4, "unexpected char"),
        ("x\n{{ a $ b }}", 2, 6, "unexpected char '$'"),
        ("{% if x %}{% endfor %}", 1, 14, "unknown tag 'endfor'"),
        ("{% for x in y %}\n{{ x }}\n", 2, 8, "endfor"),
        ("{{ x.y( }}", 1, 9, "expected ')'"),
        ("one\ntwo {{ x|nosuchfilter }}", 2, 10, "No filter named 'nosuchfilter'"),
        ("a\r\nb\r\n{{ }}", 3, 4, "Expected an expression"),
    ],
)
def test_syntax_errors_have_line_and_column(
    engine: PromptEngine, body: str, line: int, column: int, message: str
) -> None:
    variables = [{"name": n, "type": "any"} for n in ("name", "x", "y", "a", "b")]
    with pytest.raises(ValidationError) as caught:
        engine.compile(spec(body, *variables))
    error = caught.value.errors[0]
    assert (error["line"], error["column"]) == (line, column), error
    assert error["type"] == "syntax"
    assert message in error["msg"]
    assert f"line {line}, column {column}" in caught.value.message


def test_undeclared_variables_are_located(engine: PromptEngine) -> None:
    with pytest.raises(ValidationError) as caught:
        engine.compile(spec("Hi {{ name }}\n  {{ extra|upper }} {{ name }}", {"name": "name"}))
    assert [(e["line"], e["column"]) for e in caught.value.errors] == [(2, 6)]
    assert "'extra' is not a declared variable" in caught.value.message


def test_loop_and_set_names_are_not_variables(engine: PromptEngine) -> None:
    body = (
        "{% set n = items|length %}"
        "{% for i in items %}{{ loop.index }}/{{ n }}:{{ i }} {% endfor %}"
    )
    compiled = engine.compile(spec(body, {"name": "items", "type": "list"}))
    assert engine.render(compiled, {"items": ["a", "b"]}) == "1/2:a 2/2:b"


def test_runtime_errors_carry_the_template_line(engine: PromptEngine) -> None:
    error = render_error(engine, "fine\nfine\n{{ x / 0 }}", {"x": 1})
    assert error.errors[0] == {
        "loc": ["template", "t"],
        "msg": "division by zero",
        "type": "template_error",
        "line": 3,
    }


@pytest.mark.anyio
async def test_render_async_runs_off_the_event_loop(engine: PromptEngine) -> None:
    compiled = engine.compile(spec("{{ x }}", {"name": "x"}))
    assert await engine.render_async(compiled, {"x": "ok"}) == "ok"
