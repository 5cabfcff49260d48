"""A Jinja sandbox whose templates cannot hang the process or exhaust its memory.

Jinja's ImmutableSandboxedEnvironment keeps a template away from Python's internals; it does not stop
one from asking for too much: `'A' * 4000000000`, `range(100000)` inside `range(100000)`,
`'%0999999999d' % 1`. This one bounds what a render may do, and names the limit a template hit
(a SecurityError, which agents.templates reports as a TemplateFailure):

- a string or list it builds holds at most MAX_CHARS characters or items (`*`, `+`, `%`, str.format,
  padding, indent, replace, batch, namespace assignments), and an integer at most MAX_INT_BITS bits;
- a width or count given to a padding, formatting or batching filter or method is at most MAX_WIDTH;
- one render makes at most MAX_WORK calls and range() items (nested loops, recursive macros);
- the rendered text is at most MAX_CHARS characters, checked as it streams out.

Intercepting the operators also keeps Jinja from folding `'A' * 4000000000` while compiling. Spec authors
are trusted (a spec can name any importable function as a tool): these limits catch mistakes and hostile
values in a template's inputs, not a hostile author.
"""

from __future__ import annotations

import functools
import operator
import re
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jinja2 import Template, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, generate_lorem_ipsum

from agents.bounds import MAX_CHARS

MAX_WORK = 250_000
MAX_WIDTH = 10_000
MAX_INT_BITS = 10_000
_LIPSUM_MAX = 100
_PADDING = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_SIZED = (str, list, tuple)


class _Budget:
    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_WORK


_budget: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


@contextmanager
def _render_budget() -> Iterator[None]:
    token = _budget.set(_Budget())
    try:
        yield
    finally:
        _budget.reset(token)


def _spend(steps: int) -> None:
    budget = _budget.get()
    if budget is None:
        return
    budget.left -= steps
    if budget.left < 0:
        raise SecurityError(f"the template does more than {MAX_WORK:,} steps of work (calls and loop items)")


def _check_size(size: int, what: str) -> None:
    if size > MAX_CHARS:
        raise SecurityError(f"{what} would be {size:,} long, more than the {MAX_CHARS:,} a template may build")


def _check_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise SecurityError(f"a number of about {bits:,} bits, more than the {MAX_INT_BITS:,} a template may build")


def _check_width(value: Any) -> None:
    if isinstance(value, int) and abs(value) > MAX_WIDTH:
        raise SecurityError(f"a width or count of {value:,}, more than the {MAX_WIDTH:,} a template may use")


def _check_widths(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        _check_width(value)


def _check_printf(fmt: str) -> None:
    for width, precision in _PRINTF_FIELD.findall(fmt):
        for number in (width, precision):
            if number == "*":
                raise SecurityError("a '*' width in a % format is not allowed in templates")
            if number:
                _check_width(int(number))


def _check_format_string(fmt: str) -> None:
    for _literal, field, spec, _conversion in string.Formatter().parse(fmt):
        if field is not None and spec:
            if "{" in spec:
                raise SecurityError("a nested {} field in a format spec is not allowed in templates")
            for number in re.findall(r"\d+", spec):
                _check_width(int(number))


def _check_replace(text: Any, old: Any = "", new: Any = "", count: Any = None, *_: Any) -> None:
    text, old, new = str(text), str(old), str(new)
    times = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    _check_size(len(text) + times * max(0, len(new) - len(old)), "a replaced text")


def _check_indent(text: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    _check_width(pad)
    text = str(text)
    _check_size(len(text) + pad * (text.count("\n") + 1), "an indented text")


def check_binop(op: str, left: Any, right: Any) -> None:
    """Refuse `left op right` when its result would be too big to build (SecurityError)."""
    if op == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, _SIZED) and isinstance(times, int):
                _check_size(len(seq) * times, "a repeated value")
        if isinstance(left, int) and isinstance(right, int):
            _check_bits(left.bit_length() + right.bit_length())
    elif op == "**":
        if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
            _check_bits(left.bit_length() * right)
    elif op == "+":
        if isinstance(left, _SIZED) and isinstance(right, _SIZED):
            _check_size(len(left) + len(right), "a joined value")
    elif op == "%" and isinstance(left, str):
        _check_printf(left)


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
    wrapped = getattr(obj, "__wrapped__", None)  # the sandbox's stand-in for str.format
    if isinstance(getattr(wrapped, "__self__", None), str) and wrapped.__name__ in ("format", "format_map"):
        _check_format_string(wrapped.__self__)
    if isinstance(owner, str):
        if name in _PADDING:
            _check_widths(args, kwargs)
        elif name == "replace":
            _check_replace(owner, *args)


def _guarded_filter(func: Callable[..., Any], check: Callable[..., None]) -> Callable[..., Any]:
    skip = 1 if getattr(func, "jinja_pass_arg", None) else 0  # the context or environment Jinja passes first

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _spend(1)
        check(*args[skip:], **kwargs)
        return func(*args, **kwargs)

    return guarded


def _widths_after_value(_value: Any, *args: Any, **kwargs: Any) -> None:
    _check_widths(args, kwargs)


def _printf_value(value: Any, *_: Any, **__: Any) -> None:
    _check_printf(str(value))


_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": _widths_after_value, "batch": _widths_after_value, "slice": _widths_after_value,
    "indent": _check_indent, "replace": _check_replace, "format": _printf_value,
}


class _BoundedNamespace(Namespace):
    """`namespace()`, whose attributes (the only state a loop can carry) stay within the size limit."""

    def __setitem__(self, name: str, value: Any) -> None:
        if isinstance(value, _SIZED):
            _check_size(len(value), f"namespace attribute {name!r}")
        super().__setitem__(name, value)


def _lipsum(*args: Any, **kwargs: Any) -> str:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and abs(value) > _LIPSUM_MAX:
            raise SecurityError(f"lipsum() arguments above {_LIPSUM_MAX} are not allowed in templates")
    return generate_lorem_ipsum(*args, **kwargs)


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with the limits of this module on every render."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals.update(namespace=_BoundedNamespace, lipsum=_lipsum)
        for name, check in _FILTER_CHECKS.items():
            self.filters[name] = _guarded_filter(self.filters[name], check)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        _spend(1)
        _check_call(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, range):
            _spend(len(result))
        return result


def render_bounded(template: Template, context: dict[str, Any]) -> str:
    """Render within this module's limits: at most MAX_WORK steps, at most MAX_CHARS characters out."""
    parts: list[str] = []
    size = 0
    with _render_budget():
        for part in template.generate(**context):
            size += len(part)
            if size > MAX_CHARS:
                raise SecurityError(f"the rendered text is longer than the {MAX_CHARS:,} characters a template may produce")
            parts.append(part)
    return "".join(parts)


# --- the same limits, found before anything runs: constant expressions and loops in a template -----

_BINOPS: dict[str, Callable[[Any, Any], Any]] = {"*": operator.mul, "**": operator.pow, "+": operator.add, "%": operator.mod,
                                                 "-": operator.sub, "//": operator.floordiv}


def _constant(node: nodes.Node) -> Any:
    """The value of a constant expression, checked as a render would check it; nodes.Impossible if not constant."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.Neg):
        return -_constant(node.node)
    if isinstance(node, nodes.BinExpr) and node.operator in _BINOPS:
        left, right = _constant(node.left), _constant(node.right)
        check_binop(node.operator, left, right)
        try:
            return _BINOPS[node.operator](left, right)
        except Exception:  # noqa: BLE001 - 1 // 0 and the like: the render will say so
            raise nodes.Impossible() from None
    raise nodes.Impossible()


def _loop_length(node: nodes.For) -> int:
    call = node.iter
    if not (isinstance(call, nodes.Call) and isinstance(call.node, nodes.Name) and call.node.name == "range"):
        return 1
    try:
        return len(range(*(_constant(arg) for arg in call.args)))
    except (nodes.Impossible, TypeError, ValueError, OverflowError):
        return 1


def limit_problems(ast: nodes.Template) -> list[str]:
    """What in a parsed template breaks a limit whatever its inputs: constant expressions, constant loops."""
    problems: list[str] = []
    for node in ast.find_all(nodes.BinExpr):
        try:
            _constant(node)
        except nodes.Impossible:
            pass
        except SecurityError as exc:
            problems.append(str(exc))
    stack: list[tuple[nodes.Node, int]] = [(ast, 1)]
    while stack:
        node, work = stack.pop()
        if isinstance(node, nodes.For):
            work *= _loop_length(node)
            if work > MAX_WORK:
                problems.append(f"loops over constant ranges take more than {MAX_WORK:,} steps")
                break
        stack.extend((child, work) for child in node.iter_child_nodes())
    return list(dict.fromkeys(problems))
