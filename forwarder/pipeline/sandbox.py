"""The template sandbox: Jinja's immutable sandbox, with a bound on what one render may cost.

Templates run on the event loop, once per alert, so a template that loops
for seconds or builds a gigabyte string stalls every client. Jinja's
sandbox stops templates from reaching Python internals; this one also bounds
their cost:

* every string, list or output a template builds is at most
  :data:`MAX_TEXT` characters (items), checked *before* the allocation where
  the size can be known in advance (``*``, ``+``, ``%``, ``center``,
  ``indent``, ``join``, ``replace``, ``format``, …);
* integers are at most :data:`MAX_INT_BITS` bits (``10 ** 100000`` is
  refused, not computed);
* one render runs at most :data:`MAX_LOOP_STEPS` steps, a step being a loop
  iteration (nested loops included) or a call (methods, macros, globals),
  and ``range()`` is capped at that length;
* constant expressions are not folded at compile time for the guarded
  operators, and :func:`check_constants` evaluates them under the same
  bounds at load, so ``{{ 'x' * 10**9 }}`` is a config error, not a gigabyte.

A template over a bound fails with :class:`jinja2.exceptions.SecurityError`,
which the mapping reports like any refused template. The bounds are far
above what an alert template needs (BigPanda keeps 2048 characters of a
description and 512 of an attribute).

The module is a little over 400 lines on purpose: every guard is small and
they only make sense together, as one list of what a template may cost.
"""

from __future__ import annotations

import re
import threading
import types
from collections.abc import Callable, Iterable
from typing import Any, Final

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEnvironment,
    SandboxedFormatter,
)

MAX_TEXT: Final = 65_536
"""Longest string (and longest list) a template may build, and its longest output."""
MAX_INT_BITS: Final = 4_096
"""Largest integer a template may compute, in bits (about 1233 decimal digits)."""
MAX_LOOP_STEPS: Final = 10_000
"""Steps one render may take: loop iterations and calls, all together."""

# The operators whose results can be far larger than their operands; Jinja
# neither folds them at compile time nor runs them directly when they are
# intercepted (jinja2.nodes.BinExpr.as_const, CodeGenerator.binop).
_GUARDED_BINOPS: Final = frozenset({"*", "**", "+", "%"})
# printf-style conversions: flags, then width and precision (``*`` takes them from the args).
_PRINTF: Final = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_NUMBER: Final = re.compile(r"\d+")


def _refuse(what: str) -> SecurityError:
    return SecurityError(f"template too costly: {what}")


def _size(value: Any) -> int:
    """The size a bound applies to: characters, items, or 0 for anything else."""
    if isinstance(value, str | list | tuple):
        return len(value)
    return 0


def check_size(value: Any, what: str) -> Any:
    """``value`` if it is within :data:`MAX_TEXT` and :data:`MAX_INT_BITS`, else refuse."""
    if _size(value) > MAX_TEXT:
        raise _refuse(f"{what} would be longer than {MAX_TEXT}")
    if type(value) is int and value.bit_length() > MAX_INT_BITS:
        raise _refuse(f"{what} would be an integer over {MAX_INT_BITS} bits")
    return value


def _check_width(width: Any, what: str) -> None:
    if isinstance(width, int) and width > MAX_TEXT:
        raise _refuse(f"{what} width {width} is over {MAX_TEXT}")
    if isinstance(width, str) and len(width) > MAX_TEXT:
        raise _refuse(f"{what} is longer than {MAX_TEXT}")


def _check_printf(fmt: str) -> None:
    for m in _PRINTF.finditer(fmt):
        for part in m.groups():
            if part == "*":
                raise _refuse("a '*' width or precision in a format")
            if part is not None and int(part) > MAX_TEXT:
                raise _refuse(f"format width {part} is over {MAX_TEXT}")


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``left <operator> right`` before computing it if the result would be too big."""
    if operator == "**":
        # |left| ** right has at least (bit_length - 1) * right + 1 bits.
        if (
            type(left) is int
            and type(right) is int
            and right > 0
            and (left.bit_length() - 1) * right > MAX_INT_BITS
        ):
            raise _refuse(f"power with exponent {right} would be over {MAX_INT_BITS} bits")
    elif operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
                raise _refuse(f"product would be over {MAX_INT_BITS} bits")
            return
        seq, count = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(count, int) and count > 0 and _size(seq) * count > MAX_TEXT:
            raise _refuse(f"repetition would be longer than {MAX_TEXT}")
    elif operator == "+":
        if _size(left) + _size(right) > MAX_TEXT:
            raise _refuse(f"concatenation would be longer than {MAX_TEXT}")
    elif operator == "%" and isinstance(left, str):
        _check_printf(left)


class _Steps(threading.local):
    """Loop iterations left in the current render (per thread: renders never interleave)."""

    left = MAX_LOOP_STEPS


_steps = _Steps()


def _loop_step() -> str:
    """Charged once per loop iteration by code the sandbox adds to every loop body."""
    _steps.left -= 1
    if _steps.left < 0:
        raise _refuse(f"more than {MAX_LOOP_STEPS} loop iterations and calls")
    return ""


def _bounded_range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_LOOP_STEPS:
        raise _refuse(f"range of {len(rng)} items is over {MAX_LOOP_STEPS}")
    return rng


def _bounded_concat(parts: Iterable[str]) -> str:
    """``"".join`` that stops as soon as the text passes :data:`MAX_TEXT`."""
    out: list[str] = []
    append = out.append
    size = 0
    for part in parts:
        size += len(part)
        if size > MAX_TEXT:
            raise _refuse(f"output would be longer than {MAX_TEXT}")
        append(part)
    return "".join(out)


class _BoundedFormatter(SandboxedFormatter):
    """``str.format`` in the sandbox, refusing widths and precisions over :data:`MAX_TEXT`."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        for number in _NUMBER.findall(format_spec):
            if int(number) > MAX_TEXT:
                raise _refuse(f"format width {number} is over {MAX_TEXT}")
        return check_size(super().format_field(value, format_spec), "formatted text")


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, with ``~`` joined by the bounded ``concat``."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # ``concat`` is environment.concat in every generated function (write_commons).
        self.write("concat(map(str, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")


# Methods of str whose first argument is a width.
_WIDTH_METHODS: Final = frozenset({"center", "ljust", "rjust", "zfill"})


def _check_str_method(name: str, text: str, args: tuple[Any, ...]) -> None:
    """Refuse a ``str`` method call whose result would be too large, before running it."""
    if name in _WIDTH_METHODS and args:
        _check_width(args[0], f"str.{name}")
    elif name == "expandtabs":
        tab = args[0] if args else 8
        if isinstance(tab, int) and len(text) + text.count("\t") * tab > MAX_TEXT:
            raise _refuse(f"expanded text would be longer than {MAX_TEXT}")
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, str) and isinstance(new, str):
            count = text.count(old) if old else len(text) + 1
            if len(text) + count * (len(new) - len(old)) > MAX_TEXT:
                raise _refuse(f"replaced text would be longer than {MAX_TEXT}")
    elif name == "join" and args and isinstance(args[0], list | tuple):
        _check_join(text, list(args[0]))


def _check_join(separator: str, items: list[Any]) -> None:
    """Refuse a join whose text would be too long (items as ``str`` makes them)."""
    total = len(separator) * max(len(items) - 1, 0)
    if total > MAX_TEXT:
        raise _refuse(f"joined text would be longer than {MAX_TEXT}")
    for item in items:
        total += len(item) if isinstance(item, str) else len(str(item))
        if total > MAX_TEXT:
            raise _refuse(f"joined text would be longer than {MAX_TEXT}")


def _materialized(value: Any) -> Any:
    """A join's items as a list (a range or generator is read once, here), else ``value``."""
    if isinstance(value, str | list | tuple | dict) or not hasattr(value, "__iter__"):
        return value
    return list(value)


# Built-in filters with a size or count argument that can make the result
# (or the work) huge: ``center(10**9)``, ``batch(10**9, 'x')``, ``slice(10**9)``.
_WIDTH_FILTERS: Final = frozenset({"batch", "center", "indent", "slice", "tojson", "wordwrap"})
# Built-in filters whose result can be larger than their input; only these are
# wrapped, so the others (lower, default, …) cost nothing extra.
_GROWING_FILTERS: Final = _WIDTH_FILTERS | frozenset(
    {"e", "escape", "forceescape", "format", "join", "list", "pprint", "replace", "string"}
    | {"sum", "urlencode", "urlize", "xmlattr"}
)


def _check_filter(name: str, value: Any, params: list[Any]) -> None:
    """Refuse a filter call whose result would be too large, before running it."""
    if name in _WIDTH_FILTERS:
        for p in params:
            if type(p) is int and p > MAX_TEXT:
                raise _refuse(f"the {name} filter's argument {p} is over {MAX_TEXT}")
    if not isinstance(value, str):
        if name == "join" and isinstance(value, list | tuple):
            _check_join(params[0] if params and isinstance(params[0], str) else "", list(value))
        return
    if name == "indent" and params:
        unit = params[0]
        grow = len(unit) if isinstance(unit, str) else unit if type(unit) is int else 0
        if len(value) + (value.count("\n") + 1) * grow > MAX_TEXT:
            raise _refuse(f"indented text would be longer than {MAX_TEXT}")
    elif name == "wordwrap":
        width = params[0] if params and type(params[0]) is int and params[0] > 0 else 79
        lines = 2 * len(value) // width + value.count("\n") + 1
        for p in params:
            if isinstance(p, str) and len(value) + lines * len(p) > MAX_TEXT:
                raise _refuse(f"wrapped text would be longer than {MAX_TEXT}")
    elif name == "format":
        _check_printf(value)
    elif name == "replace" and len(params) >= 2:
        _check_str_method("replace", value, (params[0], params[1]))
    elif name == "join":
        _check_join(params[0] if params and isinstance(params[0], str) else "", list(value))


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A built-in filter with its size checks: arguments before, result after."""
    passes = getattr(func, "jinja_pass_arg", None)
    skip = 0 if passes is None else 1  # the context, eval context or environment

    def guarded(*args: Any, **kwargs: Any) -> Any:
        value = args[skip] if len(args) > skip else None
        if name == "join" and value is not None:
            value = _materialized(value)
            args = (*args[:skip], value, *args[skip + 1 :])
        _check_filter(name, value, [*args[skip + 1 :], *kwargs.values()])
        return check_size(func(*args, **kwargs), f"the {name} filter's result")

    if passes is not None:
        guarded.jinja_pass_arg = passes  # type: ignore[attr-defined]
    guarded.__name__ = getattr(func, "__name__", name)
    return guarded


class _Template(jinja2.Template):
    """A template whose every render starts with a full step budget."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        """Render as Jinja does (``Template.render``), after resetting the budget."""
        _steps.left = MAX_LOOP_STEPS
        ctx = self.new_context(dict(*args, **kwargs))
        try:
            return _bounded_concat(self.root_render_func(ctx))
        except Exception:
            self.environment.handle_exception()


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with the cost bounds of this module."""

    code_generator_class = _CodeGenerator
    template_class = _Template
    intercepted_binops = _GUARDED_BINOPS
    concat = staticmethod(_bounded_concat)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _bounded_range
        self.globals[_STEP] = _loop_step
        lipsum = self.globals.get("lipsum")
        if callable(lipsum):
            self.globals["lipsum"] = _bounded_lipsum(lipsum)
        for name in _GROWING_FILTERS:
            self.filters[name] = _guard_filter(name, self.filters[name])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """Run an intercepted operator once its result is known to be within bounds."""
        _check_binop(operator, left, right)
        return check_size(self.binop_table[operator](left, right), f"'{operator}'")

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Call from a template: one step of the budget, and growing ``str`` methods checked first.

        Charging calls bounds macro recursion that fans out (a macro calling
        itself twice per level) as loops are bounded.
        """
        if obj is not _loop_step:  # that one charges itself
            _loop_step()
        text = getattr(obj, "__self__", None)
        if isinstance(obj, types.BuiltinMethodType) and isinstance(text, str):
            if obj.__name__ == "join" and args:
                args = (_materialized(args[0]), *args[1:])
            _check_str_method(obj.__name__, text, args)
        return check_size(super().call(context, obj, *args, **kwargs), "a call's result")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` and ``format_map`` through the bounded formatter."""
        if not isinstance(value, types.MethodType | types.BuiltinMethodType):
            return None
        name = value.__name__
        text = getattr(value, "__self__", None)
        if name not in ("format", "format_map") or not isinstance(text, str):
            return None
        formatter = _BoundedFormatter(self)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if name == "format_map":
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs, args = args[0], ()
            return str(check_size(formatter.vformat(text, args, kwargs), "formatted text"))

        return wrapper

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Parse, then charge one loop step at the start of every loop body."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            step = nodes.Call(nodes.Name(_STEP, "load"), [], [], None, None)
            loop.body.insert(0, nodes.ExprStmt(step))
        return tree


# A global name templates cannot spell by accident; calling it only spends a step.
_STEP: Final = "_forwarder_loop_step"


def _bounded_lipsum(lipsum: Callable[..., Any]) -> Callable[..., Any]:
    def bounded(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> Any:
        if n * max > MAX_TEXT:
            raise _refuse(f"lipsum of {n} paragraphs of {max} words")
        return lipsum(n=n, html=html, min=min, max=max)

    return bounded


def check_constants(template: nodes.Template) -> None:
    """Refuse, at load, constant expressions that would break a bound at every render.

    The guarded operators are not folded at compile time, so ``{{ 'x' *
    10**9 }}`` would only fail when an alert arrives; evaluating the constant
    parts under the same checks makes it a config error instead. Raises
    :class:`SecurityError` naming the bound.
    """
    for node in template.find_all(nodes.BinExpr):
        _constant(node)
    for call in template.find_all(nodes.Call):
        if isinstance(call.node, nodes.Name) and call.node.name == "range":
            args = [_constant(a) for a in call.args]
            if args and all(type(a) is int for a in args):
                _bounded_range(*args)
    for flt in template.find_all(nodes.Filter):
        if flt.name in _WIDTH_FILTERS:
            for arg in flt.args:
                value = _constant(arg)
                if type(value) is int and value > MAX_TEXT:
                    raise _refuse(f"the {flt.name} filter's argument {value} is over {MAX_TEXT}")


class _NotConstant(Exception):
    pass


def _constant(node: nodes.Node) -> Any:
    """The value of a constant expression under the sandbox's checks; None if not constant."""
    try:
        return _evaluate(node)
    except _NotConstant:
        return None


def _evaluate(node: nodes.Node) -> Any:
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.Neg):
        value = _evaluate(node.node)
        if type(value) is int or type(value) is float:
            return -value
        raise _NotConstant
    if isinstance(node, nodes.BinExpr):
        left, right = _evaluate(node.left), _evaluate(node.right)
        op = node.operator
        if op in _GUARDED_BINOPS:
            _check_binop(op, left, right)
        try:
            result = SandboxedEnvironment.default_binop_table[op](left, right)
        except Exception:  # a constant that fails fails at render too, with its own message
            raise _NotConstant from None
        return check_size(result, f"'{op}'")
    raise _NotConstant
