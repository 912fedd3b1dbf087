"""Signs in job code that its author is trying the walls, for detection (`sandbox.disclosure.detection`).

The compiler refuses these constructs with a plain message, as it refuses a typo: an
operator learns nothing from the refusal about whether anyone noticed. What is noticed is
the construct itself, read from the source, whatever the compiler stopped at first (an
import on line 1 does not hide a frame walk on line 5):

    escape       reaching past the language for the host: names and attributes beginning
                 with "_", interpreter internals (frames, tracebacks, code objects, the type
                 hierarchy), host modules and builtins, format strings that read attributes,
                 identifiers spelled with look-alike letters, class patterns in `match`
    probe        trying what the language leaves out: other imports, classes, Python
                 builtins that are not offered
    exhaustion   code built to exhaust the compiler (too large, too deeply nested)

Run-time signs (iterating the language's objects, resource limits) come from the jail and
the driver; `runtime_sign` classifies the exception a job raised.

Pure: reads text; no database, web framework or cluster.
"""

from __future__ import annotations

import ast
import builtins
import io
import re
import tokenize
import unicodedata
from typing import Final

from sandbox.language.policy import bound_names

ESCAPE: Final = "escape"
PROBE: Final = "probe"
EXHAUSTION: Final = "exhaustion"
SIGNS: Final = frozenset({ESCAPE, PROBE, EXHAUSTION})

# Builtins and modules that reach the host or the interpreter's insides.
HOST_NAMES = frozenset(
    {
        "__import__",
        "__builtins__",
        "breakpoint",
        "compile",
        "delattr",
        "dir",
        "eval",
        "exec",
        "exit",
        "getattr",
        "globals",
        "hasattr",
        "help",
        "input",
        "locals",
        "memoryview",
        "object",
        "open",
        "quit",
        "setattr",
        "super",
        "type",
        "vars",
        "classmethod",
        "staticmethod",
        "property",
        "sys",
        "os",
        "builtins",
        "importlib",
        "inspect",
        "gc",
        "ctypes",
        "subprocess",
        "socket",
        "signal",
        "marshal",
        "pickle",
        "shutil",
        "pathlib",
        "io",
        "resource",
        "threading",
        "multiprocessing",
        "posix",
        "pty",
        "mmap",
        "code",
        "codeop",
        "types",
    }
)
# Attributes of interpreter internals: frames, tracebacks, generators, code objects, types.
INTERNAL_ATTRIBUTES = frozenset(
    {
        "mro",
        "subclasses",
        "gi_frame",
        "gi_code",
        "gi_yieldfrom",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "f_back",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_code",
        "tb_frame",
        "tb_next",
        "co_consts",
        "co_code",
        "co_names",
        "with_traceback",
        "obj",
        "func_globals",
        "func_code",
        "format_map",
    }
)
# A format replacement field that reads an attribute or an item: "{0.__class__}", "{x[k]}".
_FORMAT_WALK = re.compile(r"\{[^{}]*[.\[][^{}]*\}")
_PYTHON_BUILTINS = frozenset(n for n in dir(builtins) if not n.startswith("_"))


def static_signs(source: str, offered: frozenset[str]) -> dict[str, list[str]]:
    """The signs in `source`, each kind with what showed it. `offered` are the names the
    language provides; an unknown name outside Python's builtins is a typo, not a sign."""
    found: dict[str, list[str]] = {}

    def add(kind: str, what: str) -> None:
        items = found.setdefault(kind, [])
        if what not in items and len(items) < 20:
            items.append(what)

    for what in _look_alike_identifiers(source):
        add(ESCAPE, f"identifier spelled with look-alike letters: {what!r}")
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        if "too many nested" in str(e.msg):
            add(EXHAUSTION, "nesting beyond the parser's limit")
        return found
    except (ValueError, RecursionError, MemoryError):
        add(EXHAUSTION, "code the parser cannot hold")
        return found
    bound = bound_names(tree)
    for node in ast.walk(tree):
        for kind, what in _node_signs(node, offered, bound):
            add(kind, what)
    return found


def _node_signs(node: ast.AST, offered: frozenset[str], bound: set[str]) -> list[tuple[str, str]]:
    signs: list[tuple[str, str]] = []
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        modules = (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or "."]
        )
        for m in modules:
            host = m.split(".")[0] in HOST_NAMES
            signs.append((ESCAPE if host else PROBE, f"import {m}"))
    elif isinstance(node, ast.Name):
        if _internal_name(node.id):
            signs.append((ESCAPE, f"name {node.id}"))
        elif node.id not in offered and node.id not in bound:
            if node.id in HOST_NAMES:
                signs.append((ESCAPE, f"name {node.id}"))
            elif node.id in _PYTHON_BUILTINS:
                signs.append((PROBE, f"builtin {node.id}"))
    elif isinstance(node, ast.Attribute):
        if node.attr.startswith("_") or node.attr in INTERNAL_ATTRIBUTES:
            signs.append((ESCAPE, f"attribute .{node.attr}"))
    elif isinstance(node, (ast.FunctionDef, ast.arg)):
        name = node.name if isinstance(node, ast.FunctionDef) else node.arg
        if _internal_name(name):
            signs.append((ESCAPE, f"definition {name}"))
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        if _FORMAT_WALK.search(node.value):
            signs.append((ESCAPE, "format string reading an attribute or item"))
        if node.value.startswith("__"):
            signs.append((ESCAPE, f"text {node.value[:40]!r}"))
    elif isinstance(node, ast.MatchClass):
        signs.append((ESCAPE, "class pattern in match"))
    elif isinstance(node, ast.ClassDef):
        signs.append((PROBE, f"class {node.name}"))
    return signs


def _internal_name(name: str) -> bool:
    """Dunders and the guards' own names (`_getattr_`); a plain `_` or `_x` is a habit."""
    return name.startswith("__") or (len(name) > 2 and name[0] == name[-1] == "_")


def _look_alike_identifiers(source: str) -> list[str]:
    """Identifiers with characters that Python folds to ASCII letters or "_" (NFKC):
    full-width or mathematical letters that make `eval` or `__class__` pass a plain scan.
    Chinese identifiers fold to themselves and are no sign."""
    found: list[str] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in (tokenize.NAME, tokenize.ERRORTOKEN) and _folds_to_ascii(tok.string):
                found.append(tok.string[:40])
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass
    return found


def _folds_to_ascii(text: str) -> bool:
    for ch in text:
        if ch.isascii():
            continue
        folded = unicodedata.normalize("NFKC", ch)
        if folded and folded.isascii() and (folded.isalpha() or folded == "_"):
            return True
    return False


def runtime_sign(exc: BaseException, language_types: frozenset[str]) -> str | None:
    """The sign an exception raised by job code gives, if any."""
    message = str(exc)
    if isinstance(exc, (MemoryError, RecursionError)):
        return EXHAUSTION
    if isinstance(exc, (OSError, ImportError, NotImplementedError)):
        # Files, modules, str.format: walls the language's own use never meets.
        return ESCAPE
    if isinstance(exc, TypeError) and "attribute-less object" in message:
        return ESCAPE  # the write guard: assigning onto the language's objects
    if isinstance(exc, ValueError) and ("limited to" in message or "Exceeds the limit" in message):
        return EXHAUSTION
    if isinstance(exc, (TypeError, AttributeError, KeyError)):
        named = set(re.findall(r"[A-Za-z_]+", message))
        if named & language_types or any(n.startswith("__") for n in named):
            return PROBE
    return None
