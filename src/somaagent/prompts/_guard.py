"""The sandboxed Jinja2 environment and its resource limits.

Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` is the security boundary: it
refuses access to internals (``__class__``, ``__globals__``, ``_TemplateReference__context``,
...), unsafe callables, and changes to lists and dicts. What it does not bound is work and
memory, so this environment adds best-effort limits against templates that would exhaust the
gateway: a bounded ``range``, checks of the known amplifiers before they run (``*`` on strings
and lists, ``**``, ``~`` and ``+``, printf and ``str.format`` widths, ``center``/``ljust``/
``rjust``/``zfill``/``indent``/``replace``/``join``), a size check of every filter's and call's
result, and a wall-clock deadline enforced by a line tracer on the template's own code.
"""

from __future__ import annotations

import functools
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from jinja2 import StrictUndefined
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Joiner, Namespace

TEMPLATE_FILENAME = "<prompt>"
"""The file name compiled templates carry: how the deadline tracer and error lines find them."""


@dataclass(frozen=True, slots=True)
class RenderLimits:
    """Limits on templates and their rendering.

    Attributes:
        max_template_chars: the longest body accepted (a longer one is a 413).
        max_output_chars: the longest rendered text, and the largest value a template may
            build on the way there.
        max_range: the most items ``range()`` may produce, and the widest padding a template
            may ask for.
        timeout_s: wall-clock seconds one render may take.
    """

    max_template_chars: int = 65_536
    max_output_chars: int = 500_000
    max_range: int = 10_000
    timeout_s: float = 2.0


class ResourceLimitError(Exception):
    """A template asked for more than :class:`RenderLimits` allows."""


class RenderTimeoutError(ResourceLimitError):
    """A render ran past its deadline."""


# -- pre-checks of the amplifiers ------------------------------------------------------------

_FORMAT_FIELD = re.compile(r"\{[^{}]*\}")
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d+|\*)?(?:\.(\d+|\*))?")
_DIGITS = re.compile(r"\d+")
_NESTED_FIELD = re.compile(r"\{[^{}]*\{")


class _Checker:
    """Size checks, parameterised by the limits."""

    def __init__(self, limits: RenderLimits) -> None:
        self.max_value = limits.max_output_chars
        self.max_width = limits.max_range

    def size(self, value: object, what: str) -> None:
        if isinstance(value, str | list | tuple | dict) and len(value) > self.max_value:
            raise ResourceLimitError(
                f"{what} would build a value of {len(value):,} items or characters; "
                f"the limit is {self.max_value:,}"
            )

    def planned(self, size: int, what: str) -> None:
        if size > self.max_value:
            raise ResourceLimitError(
                f"{what} would build a value of {size:,} characters or items; "
                f"the limit is {self.max_value:,}"
            )

    def width(self, value: object, what: str) -> None:
        if isinstance(value, int) and value > self.max_width:
            raise ResourceLimitError(f"{what} of {value:,} is over the limit of {self.max_width:,}")

    def format_string(self, template: object, what: str) -> None:
        if not isinstance(template, str):
            return
        specs = [m.group(0) for m in _FORMAT_FIELD.finditer(template)]
        numbers = [n for spec in specs for n in _DIGITS.findall(spec)]
        numbers += [n for m in _PRINTF_SPEC.finditer(template) for n in m.groups() if n]
        for number in numbers:
            if number.isdigit():
                self.width(int(number), f"a width or precision in {what}")

    def str_method(
        self, text: str, method: str, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> None:
        first = args[0] if args else None
        if method in {"center", "ljust", "rjust", "zfill"}:
            self.width(first, f"str.{method} width")
        elif method == "expandtabs":
            tab = first if isinstance(first, int) else kwargs.get("tabsize", 8)
            if isinstance(tab, int):
                self.planned(len(text) + text.count("\t") * tab, "str.expandtabs")
        elif method == "replace" and len(args) >= 2:
            self.replace(text, args[0], args[1])
        elif method == "join" and first is not None:
            self.join(first, text)

    def replace(self, text: object, old: object, new: object) -> None:
        if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
            hits = text.count(old) if old else len(text) + 1
            self.planned(len(text) + hits * max(0, len(new) - len(old)), "replace")

    def join(self, items: object, separator: object) -> None:
        if isinstance(items, list | tuple) and isinstance(separator, str):
            parts = sum(len(x) if isinstance(x, str) else 20 for x in items)
            self.planned(parts + len(separator) * max(0, len(items) - 1), "join")

    def binop(self, operator: str, left: Any, right: Any) -> None:
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int):
                    self.planned(len(seq) * count, "repetition with *")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                bits = max(left.bit_length(), 1) * right
                if bits > 65_536:
                    raise ResourceLimitError(f"{left} ** {right} is too large a number")
        elif operator == "%":
            self.format_string(left, "a % format")
        elif operator == "+" and isinstance(left, str | list | tuple):
            size = len(left) + (len(right) if isinstance(right, str | list | tuple) else 0)
            self.planned(size, "+")


def _filter_checks(checker: _Checker) -> dict[str, Callable[[Sequence[Any], dict[str, Any]], None]]:
    """Checks run before a filter, given the filter's value and arguments."""

    def arg(args: Sequence[Any], kwargs: dict[str, Any], index: int, name: str) -> Any:
        return args[index] if len(args) > index else kwargs.get(name)

    def center(args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        checker.width(arg(args, kwargs, 1, "width"), "center width")

    def indent(args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        width = arg(args, kwargs, 1, "width")
        pad = width if isinstance(width, int) else len(width) if isinstance(width, str) else 4
        checker.width(pad, "indent width")
        text = args[0] if args and isinstance(args[0], str) else ""
        checker.planned(len(text) + (text.count("\n") + 1) * pad, "indent")

    def fmt(args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        checker.format_string(arg(args, kwargs, 0, "value"), "the format filter")

    def replace(args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        checker.replace(
            arg(args, kwargs, 0, "s"), arg(args, kwargs, 1, "old"), arg(args, kwargs, 2, "new")
        )

    def join(args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        separator = arg(args, kwargs, 1, "d")
        checker.join(arg(args, kwargs, 0, "value"), "" if separator is None else separator)

    def wordwrap(args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        checker.width(arg(args, kwargs, 1, "width"), "wordwrap width")

    return {
        "center": center,
        "indent": indent,
        "format": fmt,
        "replace": replace,
        "join": join,
        "wordwrap": wordwrap,
    }


def _guard_filter(
    name: str,
    function: Callable[..., Any],
    checker: _Checker,
    check: Callable[[Sequence[Any], dict[str, Any]], None] | None,
) -> Callable[..., Any]:
    # Filters marked pass_context/pass_eval_context/pass_environment get that object first.
    offset = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(function)  # keeps ``jinja_pass_arg``, which Jinja reads from __dict__
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if check is not None:
            check(args[offset:], kwargs)
        result = function(*args, **kwargs)
        checker.size(result, f"the {name} filter")
        return result

    return guarded


class PromptEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox prompts render in: ``StrictUndefined``, no autoescaping, bounded work."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, limits: RenderLimits) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,  # prompts are not HTML
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
            cache_size=0,
        )
        self.limits = limits
        self.checker = _Checker(limits)
        checks = _filter_checks(self.checker)
        self.filters = {
            name: _guard_filter(name, function, self.checker, checks.get(name))
            for name, function in self.filters.items()
        }
        # No ``lipsum``: it is of no use in a prompt. ``range`` is bounded more tightly.
        self.globals = {
            "range": self._range,
            "dict": dict,
            "namespace": Namespace,
            "cycler": Cycler,
            "joiner": Joiner,
        }

    def _range(self, *args: int) -> range:
        numbers = range(*args)
        if len(numbers) > self.limits.max_range:
            raise ResourceLimitError(
                f"range() of {len(numbers):,} items is over the limit of {self.limits.max_range:,}"
            )
        return numbers

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        self.checker.binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            __self.checker.str_method(owner, getattr(__obj, "__name__", ""), args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        __self.checker.size(result, f"calling {getattr(__obj, '__name__', 'a function')}")
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template: str = value.__self__
        checker = self.checker

        @functools.wraps(wrapped)
        def checked(*args: Any, **kwargs: Any) -> str:
            checker.format_string(template, "str.format")
            if _NESTED_FIELD.search(template):  # widths given as arguments: {:{width}}
                for argument in (*args, *kwargs.values()):
                    checker.width(argument, "a width in str.format")
            return wrapped(*args, **kwargs)

        return checked

    def bounded_join(
        self, joiner: Callable[[Iterable[Any]], str]
    ) -> Callable[[Iterable[Any]], str]:
        """``joiner`` (Jinja's ``~`` operator) with a size check before it joins."""
        checker = self.checker

        def join(seq: Iterable[Any]) -> str:
            parts = list(seq)
            checker.planned(sum(len(p) if isinstance(p, str) else 20 for p in parts), "~")
            return joiner(parts)

        return join


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`RenderTimeoutError` in template code running past ``seconds``.

    A tracer on this thread follows the compiled template's frames line by line (loop
    iterations included) and checks the clock every 256 events; other frames are only seen
    when they start. It replaces any tracer already set (a debugger's, coverage's) for the
    duration, and puts it back after.
    """
    end = time.monotonic() + seconds
    events = 0

    def check() -> None:
        nonlocal events
        events += 1
        if events & 0xFF == 0 and time.monotonic() > end:
            raise RenderTimeoutError(f"rendering took longer than {seconds:g} s")

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        check()
        return local

    def on_call(frame: FrameType, event: str, arg: Any) -> Any:
        check()
        return local if frame.f_code.co_filename == TEMPLATE_FILENAME else None

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        yield
    finally:
        sys.settrace(previous)
