"""The sandbox's first layer: a static check of a strategy's source, in milliseconds.

It refuses what a strategy never needs and an attacker always does: imports outside the allowlist,
names and attributes starting with `_` (every dunder walk starts there), string evaluators,
file and pickle I/O, frame and code introspection, `global`, and format strings that read
attributes. It also tells which strategy API the code uses (STRATEGY_API.md section 1) and reads
its `PARAMS`. It is one layer of four (ARCHITECTURE.md, "Sandbox"): the restricted runtime and
the isolated process must hold even where this check is fooled.
"""

from __future__ import annotations

import ast
import json
import string
from dataclasses import dataclass, field
from typing import Any, Literal

ALLOWED_MODULES: tuple[str, ...] = (
    "math",
    "statistics",
    "datetime",
    "numpy",
    "pandas",
    "indicators",
)
# `quantdesk.indicators` is offered to strategies under the short name `indicators`.
MODULE_ALIASES: dict[str, str] = {"quantdesk.indicators": "indicators"}

MAX_SOURCE_BYTES = 100_000
MAX_SOURCE_LINES = 5_000
MAX_AST_DEPTH = 60

ForbiddenReason = str

FORBIDDEN_CALLS: dict[str, ForbiddenReason] = {
    "eval": "evaluates strings as code",
    "exec": "evaluates strings as code",
    "compile": "builds code objects",
    "open": "opens files",
    "globals": "exposes the interpreter's namespaces",
    "locals": "exposes the interpreter's namespaces",
    "vars": "exposes the interpreter's namespaces",
    "breakpoint": "starts a debugger",
    "input": "reads the server's terminal",
    "help": "starts an interactive helper",
    "exit": "stops the interpreter",
    "quit": "stops the interpreter",
    "memoryview": "gives raw memory access",
    "classmethod": "is not needed by strategies",
    "staticmethod": "is not needed by strategies",
    "property": "is not needed by strategies",
    "super": "is not needed by strategies",
    "object": "is not needed by strategies",
    "type": "can build classes and reach their internals",
}

# Attributes that reach the file system, the OS, pickles, string evaluators or interpreter
# internals through the allowed modules (numpy, pandas) or through objects (frames, code).
FORBIDDEN_ATTRIBUTES: dict[str, ForbiddenReason] = {
    **dict.fromkeys(("eval", "query"), "evaluates strings as code"),
    **dict.fromkeys(
        (
            "load",
            "loads",
            "save",
            "savez",
            "savez_compressed",
            "savetxt",
            "loadtxt",
            "genfromtxt",
            "fromfile",
            "tofile",
            "memmap",
            "fromregex",
            "open",
            "dump",
            "dumps",
            "to_csv",
            "to_pickle",
            "to_excel",
            "to_parquet",
            "to_feather",
            "to_hdf",
            "to_sql",
            "to_stata",
            "to_json",
            "to_html",
            "to_latex",
            "to_markdown",
            "to_xml",
            "to_clipboard",
            "to_orc",
            "to_gbq",
            "HDFStore",
            "ExcelWriter",
            "ExcelFile",
        ),
        "reads or writes files",
    ),
    **dict.fromkeys(
        (
            "os",
            "sys",
            "subprocess",
            "socket",
            "ctypes",
            "ctypeslib",
            "f2py",
            "pickle",
            "builtins",
            "importlib",
            "shutil",
            "pathlib",
            "io",
            "distutils",
            "testing",
            "lib",
            "core",
            "compat",
            "api",
            "plotting",
            "util",
            "utils",
            "errors",
            "config",
            "options",
            "set_option",
            "show_versions",
            "system",
            "popen",
            "tempfile",
            "sqlite3",
            "marshal",
            "inspect",
            "gc",
            "threading",
            "multiprocessing",
            "signal",
            "code",
        ),
        "reaches modules outside the allowed ones",
    ),
    **dict.fromkeys(
        (
            "gi_frame",
            "gi_code",
            "gi_yieldfrom",
            "cr_frame",
            "cr_code",
            "cr_await",
            "ag_frame",
            "ag_code",
            "f_back",
            "f_globals",
            "f_locals",
            "f_builtins",
            "f_code",
            "tb_frame",
            "tb_next",
            "co_code",
            "co_consts",
            "func_globals",
            "func_code",
            "mro",
            "with_traceback",
        ),
        "inspects the interpreter's frames or code",
    ),
    # An array view's `.base` is the whole array behind it: for history, the future.
    "base": "reaches the data behind a view",
}

STRATEGY_FUNCTIONS = {"initialize": 1, "handle_bar": 2, "target_weights": 2}
TOP_LEVEL_STATEMENTS = (
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.ClassDef,
    ast.Assign,
    ast.AnnAssign,
    ast.Expr,
    ast.Pass,
)

StrategyApi = Literal["event", "vectorized"]


@dataclass(frozen=True)
class Violation:
    line: int
    col: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "col": self.col, "message": self.message}


@dataclass(frozen=True)
class CheckResult:
    valid: bool
    api: StrategyApi | None
    violations: tuple[Violation, ...]
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "api": self.api,
            "violations": [violation.to_dict() for violation in self.violations],
            "params": self.params,
        }


def check(
    code: str, *, max_bytes: int = MAX_SOURCE_BYTES, max_lines: int = MAX_SOURCE_LINES
) -> CheckResult:
    """Check a strategy's source without running it.

    Parameters
    ----------
    code
        The strategy module's source.
    max_bytes, max_lines
        Size limits; larger sources are refused before parsing.

    Returns
    -------
    CheckResult
        ``valid`` is True when there is no violation; ``api`` is "event" or "vectorized" when
        the code defines exactly one of the two APIs; ``params`` is its literal ``PARAMS``.
    """
    size = len(code.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        return _invalid(1, 0, f"the code is {size:,} bytes; the limit is {max_bytes:,}")
    lines = code.count("\n") + 1
    if lines > max_lines:
        return _invalid(1, 0, f"the code has {lines:,} lines; the limit is {max_lines:,}")
    if "\x00" in code:
        return _invalid(1, 0, "the code contains a NUL character")
    try:
        tree = ast.parse(code, filename="strategy.py")
    except SyntaxError as exc:
        return _invalid(exc.lineno or 1, max(0, (exc.offset or 1) - 1), f"syntax error: {exc.msg}")
    except (RecursionError, MemoryError, ValueError):
        return _invalid(1, 0, "the code is nested too deeply to check")
    visitor = _Visitor()
    visitor.visit(tree)
    violations = list(visitor.violations)
    api = _detect_api(tree, violations)
    params = _read_params(tree, violations)
    violations.sort(key=lambda v: (v.line, v.col, v.message))
    unique = tuple(dict.fromkeys(violations))
    return CheckResult(valid=not unique, api=api, violations=unique, params=params)


def _invalid(line: int, col: int, message: str) -> CheckResult:
    return CheckResult(valid=False, api=None, violations=(Violation(line, col, message),))


def _allowed_list() -> str:
    return ", ".join(ALLOWED_MODULES)


class _Visitor(ast.NodeVisitor):
    def __init__(self) -> None:
        self.violations: list[Violation] = []
        self._depth = 0

    def _add(self, node: ast.AST, message: str) -> None:
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0)
        self.violations.append(Violation(line, col, message))

    def generic_visit(self, node: ast.AST) -> None:
        self._depth += 1
        try:
            if self._depth > MAX_AST_DEPTH:
                self._add(node, f"the code is nested more than {MAX_AST_DEPTH} levels deep")
                return
            super().generic_visit(node)
        finally:
            self._depth -= 1

    def visit_Module(self, node: ast.Module) -> None:
        for statement in node.body:
            if not isinstance(statement, TOP_LEVEL_STATEMENTS):
                kind = type(statement).__name__.lower()
                self._add(
                    statement,
                    f"a top-level '{kind}' statement is not allowed: put code that runs in "
                    "initialize(ctx) or handle_bar(ctx, data)",
                )
        self.generic_visit(node)

    # ------------------------------------------------------------ imports

    def _check_module(self, node: ast.AST, module: str) -> None:
        name = MODULE_ALIASES.get(module, module)
        if name not in ALLOWED_MODULES:
            self._add(node, f"import of '{module}' is not allowed; allowed: {_allowed_list()}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)
            self._check_identifier(node, alias.asname)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self._add(node, "relative imports are not allowed")
        elif node.module == "quantdesk":
            for alias in node.names:
                self._check_module(node, f"quantdesk.{alias.name}")
        else:
            self._check_module(node, node.module or "")
        for alias in node.names:
            if alias.name == "*":
                self._add(node, "'import *' is not allowed: import the names you use")
                continue
            self._check_identifier(node, alias.name)
            self._check_identifier(node, alias.asname)
            self._check_attribute_name(node, alias.name)
        self.generic_visit(node)

    # ------------------------------------------------------------ names and attributes

    def _check_identifier(self, node: ast.AST, name: str | None) -> None:
        if name is None:
            return
        if not name.isascii():
            self._add(node, f"identifier '{name}' is not plain ASCII")
        elif name.startswith("_"):
            self._add(node, f"names starting with '_' are not allowed: '{name}'")

    def _check_attribute_name(self, node: ast.AST, name: str) -> None:
        reason = FORBIDDEN_ATTRIBUTES.get(name)
        if reason is not None:
            self._add(node, f"'.{name}' is not allowed: it {reason}")
        elif name.startswith("read_"):
            self._add(node, f"'.{name}' is not allowed: it reads files")

    def visit_Name(self, node: ast.Name) -> None:
        self._check_identifier(node, node.id)
        if node.id in FORBIDDEN_CALLS:
            self._add(node, f"'{node.id}' is not allowed: it {FORBIDDEN_CALLS[node.id]}")
        elif node.id in {"setattr", "delattr"}:
            self._add(node, f"'{node.id}' is not allowed: strategies do not change objects")
        elif node.id in {"getattr", "hasattr"} and not isinstance(
            getattr(node, "_quantdesk_call_checked", None), bool
        ):
            self._add(node, f"'{node.id}' may only be called with a literal attribute name")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._check_identifier(node, node.attr)
        self._check_attribute_name(node, node.attr)
        if isinstance(node.ctx, ast.Store | ast.Del) and not _is_ctx_universe(node):
            self._add(
                node,
                f"setting '.{node.attr}' is not allowed: strategies change only their own "
                "variables, ctx.state, and ctx.universe in initialize",
            )
        self.generic_visit(node)

    def visit_arg(self, node: ast.arg) -> None:
        self._check_identifier(node, node.arg)
        self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> None:
        self._check_identifier(node, node.arg)
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._check_identifier(node, node.name)
        if node.decorator_list:
            self._add(node, "decorators are not allowed")
        self.generic_visit(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._add(node, "async functions are not allowed")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._check_identifier(node, node.name)
        if node.bases or node.keywords or node.decorator_list:
            self._add(node, "classes may not have bases, metaclasses or decorators")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self._add(node, "'global' is not allowed: keep state in ctx.state")

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self._add(node, "'nonlocal' is not allowed: keep state in ctx.state")

    def visit_Await(self, node: ast.Await) -> None:
        self._add(node, "'await' is not allowed")

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and "__" in node.value:
            self._add(node, "text containing '__' is not allowed")
        elif isinstance(node.value, bytes):
            self._add(node, "bytes literals are not allowed")

    # ------------------------------------------------------------ calls

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in {"getattr", "hasattr"}:
            name = node.args[1] if len(node.args) > 1 else None
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                if not node.keywords:
                    func._quantdesk_call_checked = True  # type: ignore[attr-defined]
                # The literal name gets the checks an attribute access would get.
                self._check_identifier(name, name.value)
                self._check_attribute_name(name, name.value)
        if isinstance(func, ast.Attribute) and func.attr in {"format", "format_map"}:
            self._check_format_call(node, func)
        self.generic_visit(node)

    def _check_format_call(self, node: ast.Call, func: ast.Attribute) -> None:
        receiver = func.value
        if not (isinstance(receiver, ast.Constant) and isinstance(receiver.value, str)):
            self._add(node, "'.format' is only allowed on a literal string; use an f-string")
            return
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(receiver.value) if name]
        except ValueError:
            self._add(node, "the format string is malformed")
            return
        if any("." in name or "[" in name for name in fields):
            self._add(node, "format fields may not read attributes or items")

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        self.generic_visit(node)


def _is_ctx_universe(node: ast.Attribute) -> bool:
    return node.attr == "universe" and isinstance(node.value, ast.Name) and node.value.id == "ctx"


def _detect_api(tree: ast.Module, violations: list[Violation]) -> StrategyApi | None:
    functions = {
        statement.name: statement
        for statement in tree.body
        if isinstance(statement, ast.FunctionDef) and statement.name in STRATEGY_FUNCTIONS
    }
    for name, function in functions.items():
        expected = STRATEGY_FUNCTIONS[name]
        count = len(function.args.posonlyargs) + len(function.args.args)
        if count != expected or function.args.vararg or function.args.kwonlyargs:
            shape = {1: "(ctx)", 2: "(ctx, data)"}[expected]
            if name == "target_weights":
                shape = "(data, params)"
            violations.append(
                Violation(function.lineno, function.col_offset, f"{name} must be {name}{shape}")
            )
    event = "handle_bar" in functions
    vectorized = "target_weights" in functions
    if event and vectorized:
        node = functions["target_weights"]
        violations.append(
            Violation(
                node.lineno,
                node.col_offset,
                "the code defines both APIs: keep handle_bar (event) or target_weights "
                "(vectorized), not both",
            )
        )
        return None
    if "initialize" in functions and not event:
        node = functions["initialize"]
        violations.append(
            Violation(
                node.lineno,
                node.col_offset,
                "initialize belongs to the event API: define handle_bar(ctx, data) too",
            )
        )
    if event:
        return "event"
    if vectorized:
        return "vectorized"
    violations.append(
        Violation(
            1,
            0,
            "the code defines no strategy: define handle_bar(ctx, data) (event API) or "
            "target_weights(data, params) (vectorized API)",
        )
    )
    return None


def _read_params(tree: ast.Module, violations: list[Violation]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for statement in tree.body:
        if not isinstance(statement, ast.Assign) or not any(
            isinstance(t, ast.Name) and t.id == "PARAMS" for t in statement.targets
        ):
            continue
        try:
            value = ast.literal_eval(statement.value)
            json.dumps(value, allow_nan=False)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            violations.append(
                Violation(
                    statement.lineno,
                    statement.col_offset,
                    "PARAMS must be a literal dict of JSON values (numbers, text, lists, dicts)",
                )
            )
            continue
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            violations.append(
                Violation(
                    statement.lineno, statement.col_offset, "PARAMS must be a dict with text keys"
                )
            )
            continue
        params = value
    return params
