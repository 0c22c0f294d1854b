"""The sandbox's second layer: strategy code compiled with RestrictedPython and run with guards.

Every attribute access, item write, import and iteration of user code goes through a function
here. The guards refuse names starting with `_`, the attributes that reach files, the OS,
pickles or string evaluators (the checker's list, enforced again at run time, by name), and any
module object outside the allowlist, judged by what the access *returns* (so
`pd.io.common.os`, `np.f2py.subprocess` or `statistics.sys` give nothing, whatever the path).
Allowed modules are handed out wrapped, so their attributes pass the same guard. The OS layer
(the isolated process) must still hold on its own if this layer is fooled.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import operator
import string
import types
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from RestrictedPython.compile import compile_restricted
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

from quantdesk.sandbox.checker import ALLOWED_MODULES, FORBIDDEN_ATTRIBUTES, MODULE_ALIASES

STRATEGY_FILENAME = "strategy.py"

# The real module behind each name a strategy may import.
_IMPORTABLE = {name: name for name in ALLOWED_MODULES} | {"indicators": "quantdesk.indicators"}
# Modules a strategy may hold, also when reached as an attribute (np.random, np.linalg ...).
ALLOWED_MODULE_OBJECTS = frozenset(
    {*(_IMPORTABLE.values()), "numpy.linalg", "numpy.random", "numpy.fft"}
)

_SAFE_BUILTIN_NAMES = (
    "abs", "all", "any", "bool", "callable", "chr", "dict", "divmod", "enumerate", "filter",
    "float", "frozenset", "hash", "int", "isinstance", "issubclass", "iter", "len", "list",
    "map", "max", "min", "next", "ord", "pow", "range", "repr", "reversed", "round", "set",
    "slice", "sorted", "str", "sum", "tuple", "zip", "True", "False", "None",
    "ArithmeticError", "AssertionError", "AttributeError", "Exception", "IndexError",
    "KeyError", "LookupError", "OverflowError", "RuntimeError", "StopIteration",
    "TypeError", "ValueError", "ZeroDivisionError",
)  # fmt: skip

_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow,
    "<<=": operator.ilshift, ">>=": operator.irshift, "&=": operator.iand,
    "|=": operator.ior, "^=": operator.ixor, "@=": operator.imatmul,
}  # fmt: skip


class SandboxViolation(Exception):
    """User code tried something the sandbox does not allow."""


class AttributeViolation(SandboxViolation, AttributeError):
    """A refused attribute: also an AttributeError, so `getattr(obj, name, default)` in library
    code that probes objects (an `__code__` look-up, say) gets its default, not a crash."""


def _refuse_name(name: str) -> None:
    if name.startswith("_"):
        raise AttributeViolation(f"attribute '{name}' is not allowed (names starting with '_')")
    reason = FORBIDDEN_ATTRIBUTES.get(name)
    if reason is not None:
        raise AttributeViolation(f"attribute '{name}' is not allowed: it {reason}")
    if name.startswith("read_"):
        raise AttributeViolation(f"attribute '{name}' is not allowed: it reads files")


class ModuleProxy:
    """An allowed module as user code sees it: every attribute goes through the guard."""

    __slots__ = ("_module",)

    def __init__(self, module: types.ModuleType) -> None:
        object.__setattr__(self, "_module", module)

    def __getattr__(self, name: str) -> Any:
        return guarded_getattr(object.__getattribute__(self, "_module"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise SandboxViolation("modules are read-only in strategies")

    def __repr__(self) -> str:
        return f"<module {object.__getattribute__(self, '_module').__name__!r}>"


def _guard_value(value: Any) -> Any:
    if isinstance(value, types.ModuleType):
        if value.__name__ in ALLOWED_MODULE_OBJECTS:
            return ModuleProxy(value)
        raise AttributeViolation(f"module '{value.__name__}' is not available to strategies")
    return value


class _SafeFormatter(string.Formatter):
    """str.format without attribute or item look-ups in fields ("{0.gi_frame}")."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        if "." in field_name or "[" in field_name:
            raise SandboxViolation("format fields may not read attributes or items")
        return super().get_field(field_name, args, kwargs)


def _safe_format(template: str) -> Callable[..., str]:
    def format_(*args: Any, **kwargs: Any) -> str:
        return _SafeFormatter().vformat(template, args, kwargs)

    return format_


def guarded_getattr(obj: Any, name: Any, *default: Any) -> Any:
    """`obj.name` for user code: the name is checked, then what it returns."""
    if not isinstance(name, str):
        raise TypeError("attribute name must be a string")
    _refuse_name(name)
    if name in {"format", "format_map"}:
        if isinstance(obj, str):
            return _safe_format(obj)
        if isinstance(obj, type) and issubclass(obj, str):
            raise SandboxViolation("str.format may only be called on a string")
    if isinstance(obj, ModuleProxy):
        obj = object.__getattribute__(obj, "_module")
    return _guard_value(getattr(obj, name, *default))


def guarded_hasattr(obj: Any, name: Any) -> bool:
    try:
        guarded_getattr(obj, name)
    except (AttributeError, SandboxViolation):
        return False
    return True


def guarded_import(
    name: str,
    globals: Any = None,
    locals: Any = None,
    fromlist: Iterable[str] | None = (),
    level: int = 0,
) -> Any:
    if isinstance(fromlist, list) and not fromlist:
        # C code (numpy's lazy `_methods` import in ndarray.mean, say) imports through the
        # builtins of the calling frame, which is the strategy's; CPython's PyImport_Import
        # passes an empty *list* as fromlist, which compiled code never does (None or a
        # tuple). The module goes back to the library's C code, never to the strategy.
        return builtins.__import__(name, globals, locals, fromlist, level)
    if level:
        raise SandboxViolation("relative imports are not allowed")
    if name == "quantdesk" and tuple(fromlist or ()) == ("indicators",):
        # `from quantdesk import indicators`: only that name of the package exists here.
        return types.SimpleNamespace(
            indicators=ModuleProxy(importlib.import_module(name + ".indicators"))
        )
    short = MODULE_ALIASES.get(name, name)
    if short not in _IMPORTABLE:
        allowed = ", ".join(ALLOWED_MODULES)
        raise SandboxViolation(f"import of '{name}' is not allowed; allowed: {allowed}")
    module = importlib.import_module(_IMPORTABLE[short])
    # `from numpy import load` reads attributes of what we return: a proxy guards them.
    for attribute in fromlist or ():
        _refuse_name(attribute)
    return ModuleProxy(module)


class _WriteProxy:
    """What `_write_(obj)` returns: item writes pass; attribute writes only to setters.

    An attribute may be set only where the object's class declares it writable with a
    `property` setter (such as `ctx.universe` in initialize); everything else is refused.
    """

    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __setitem__(self, key: Any, value: Any) -> None:
        object.__getattribute__(self, "_target")[key] = value

    def __delitem__(self, key: Any) -> None:
        del object.__getattribute__(self, "_target")[key]

    def __setattr__(self, name: str, value: Any) -> None:
        _refuse_name(name)
        target = object.__getattribute__(self, "_target")
        descriptor = getattr(type(target), name, None)
        if isinstance(descriptor, property) and descriptor.fset is not None:
            setattr(target, name, value)
            return
        raise SandboxViolation(f"setting attribute '{name}' is not allowed in strategies")

    def __delattr__(self, name: str) -> None:
        raise SandboxViolation(f"deleting attribute '{name}' is not allowed in strategies")


def _write(obj: Any) -> Any:
    if isinstance(obj, ModuleProxy):
        raise SandboxViolation("modules are read-only in strategies")
    return _WriteProxy(obj)


def _inplacevar(op: str, target: Any, value: Any) -> Any:
    function: Callable[[Any, Any], Any] | None = _INPLACE.get(op)
    if function is None:
        raise SandboxViolation(f"operator {op} is not allowed")
    return function(target, value)


def _apply(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return function(*args, **kwargs)


def _getitem(obj: Any, key: Any) -> Any:
    return _guard_value(obj[key])


def _getiter(obj: Any) -> Iterator[Any]:
    return iter(obj)


@dataclass
class PrintSink:
    """Where `print` in a strategy goes: lines kept up to a cap, the rest counted."""

    max_lines: int = 1000
    lines: list[str] = field(default_factory=list)
    dropped: int = 0

    def write(self, text: str) -> None:
        for line in text.splitlines():
            if len(self.lines) < self.max_lines:
                self.lines.append(line[:1000])
            else:
                self.dropped += 1


def _print_factory(sink: PrintSink) -> Callable[[Any], Any]:
    class _Printer:
        def __init__(self, _getattr: Any = None) -> None:
            pass

        def _call_print(self, *objects: Any, **kwargs: Any) -> None:
            kwargs.pop("file", None)
            sep = str(kwargs.get("sep", " ") if kwargs.get("sep") is not None else " ")
            sink.write(sep.join(str(item) for item in objects))

        def __call__(self) -> str:
            return "\n".join(sink.lines)

    return _Printer


def restricted_globals(sink: PrintSink) -> dict[str, Any]:
    """The globals a strategy module runs with: guarded builtins, no way out."""
    safe_builtins = {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES}
    safe_builtins.update(
        __import__=guarded_import,
        getattr=guarded_getattr,
        hasattr=guarded_hasattr,
    )
    return {
        "__builtins__": safe_builtins,
        "__name__": "strategy",
        "_getattr_": guarded_getattr,
        "_getitem_": _getitem,
        "_getiter_": _getiter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": _write,
        "_inplacevar_": _inplacevar,
        "_apply_": _apply,
        "_print_": _print_factory(sink),
    }


@dataclass
class LoadedStrategy:
    namespace: types.SimpleNamespace
    printed: PrintSink


def _simple(node: ast.expr) -> bool:
    """An expression safe to evaluate twice: names, constants, attribute and item chains."""
    if isinstance(node, ast.Name | ast.Constant):
        return True
    if isinstance(node, ast.Attribute):
        return _simple(node.value)
    if isinstance(node, ast.Subscript):
        return _simple(node.value) and _simple(node.slice)
    if isinstance(node, ast.UnaryOp):
        return _simple(node.operand)
    return False


class _ItemAugAssign(ast.NodeTransformer):
    """`d[k] += v` becomes `d[k] = d[k] + v` (RestrictedPython refuses the augmented form).

    Only for simple targets and keys, which can be evaluated twice without a difference; other
    forms stay as they are and RestrictedPython refuses them with its own message.
    """

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        target = node.target
        if not (
            isinstance(target, ast.Subscript) and _simple(target.value) and _simple(target.slice)
        ):
            return node
        load = ast.Subscript(value=target.value, slice=target.slice, ctx=ast.Load())
        value = ast.BinOp(left=load, op=node.op, right=node.value)
        return ast.copy_location(ast.Assign(targets=[target], value=value), node)


def _restricted_ast(code: str) -> ast.Module:
    tree = _ItemAugAssign().visit(ast.parse(code, filename=STRATEGY_FILENAME))
    module: ast.Module = ast.fix_missing_locations(tree)
    return module


def load_strategy(code: str, *, max_print_lines: int = 1000) -> LoadedStrategy:
    """Compile and run a strategy module under the guards; return its public names.

    Raises SyntaxError for code RestrictedPython refuses, SandboxViolation (or the user's own
    exception) for code that misbehaves while the module body runs.
    """
    with warnings.catch_warnings():
        # RestrictedPython suggests reading `printed`; our print goes to the sink instead.
        warnings.filterwarnings("ignore", message=".*never reads 'printed'", category=SyntaxWarning)
        byte_code = compile_restricted(
            _restricted_ast(code), filename=STRATEGY_FILENAME, mode="exec"
        )
    sink = PrintSink(max_lines=max_print_lines)
    module_globals = restricted_globals(sink)
    exec(byte_code, module_globals)  # noqa: S102 (this is the sandbox: compiled restricted)
    public = {
        name: value
        for name, value in module_globals.items()
        if not name.startswith("_") and name != "printed"
    }
    return LoadedStrategy(namespace=types.SimpleNamespace(**public), printed=sink)
