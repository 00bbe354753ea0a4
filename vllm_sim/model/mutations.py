"""Plausible wrong answers, made from a problem's canonical solution (synthetic model only).

Each mutant changes the function body in one place, the way a small code model gets a problem
wrong: an off-by-one constant, a wrong operator or comparison, a missing case, a name error, a
loop that never ends, a syntax error. Edits are made on the source text (located with
`tokenize` and `ast`), so the mutant keeps the canonical solution's formatting. Mutations
that turn out equivalent to the original are possible but rare; none of this code is run here.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass

KINDS = ("off_by_one", "wrong_operator", "missing_case", "exception", "infinite_loop", "syntax_error")
_SITES_PER_KIND = 3

# Comparisons are reversed rather than loosened: "<" for "<=" rarely changes a test's outcome.
_SWAPS = {
    "<": ">",
    "<=": ">=",
    ">": "<",
    ">=": "<=",
    "==": "!=",
    "!=": "==",
    "+": "-",
    "-": "+",
    "*": "+",
    "//": "/",
    "%": "//",
    "+=": "-=",
    "-=": "+=",
    "and": "or",
    "or": "and",
    "min": "max",
    "max": "min",
    "True": "False",
    "False": "True",
}
_TRIVIAL_RETURNS = {
    "bool": "False",
    "int": "0",
    "float": "0.0",
    "str": "''",
    "list": "[]",
    "List": "[]",
    "tuple": "()",
    "Tuple": "()",
    "dict": "{}",
    "Dict": "{}",
}
_HEADERS = ("for", "if", "elif", "else", "while", "def", "with", "try", "except")


@dataclass(frozen=True, slots=True)
class Mutant:
    kind: str
    body: str  # the completion: the function body with one mistake


@dataclass(frozen=True, slots=True)
class _Edit:
    start: int  # absolute character offsets into prompt + solution
    end: int
    text: str


def mutants(prompt: str, solution: str, entry_point: str) -> tuple[Mutant, ...]:
    """All mutants of `solution`, a few sites per kind, in a deterministic order. With no
    `entry_point` the solution is a whole program and its top-level statements are mutated."""
    source = prompt + solution
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
        tree = ast.parse(source)
    except (SyntaxError, tokenize.TokenError):
        return ()
    ctx = _Context(source, len(prompt), tokens, tree, entry_point)
    found: list[Mutant] = []
    for kind, finder in _FINDERS.items():
        edits = finder(ctx)
        for edit in _spread(edits, _SITES_PER_KIND):
            body = _apply(source, edit)[len(prompt) :]
            if body != solution:
                found.append(Mutant(kind, body))
    return tuple(found)


class _Context:
    """The parsed program and helpers to locate things inside the solution only."""

    def __init__(self, source: str, start: int, tokens: list, tree: ast.Module, entry_point: str):
        self.source = source
        self.start = start  # the solution begins here
        self.line_offsets = [0]
        for line in source.splitlines(keepends=True):
            self.line_offsets.append(self.line_offsets[-1] + len(line))
        self.tokens = [t for t in tokens if self.offset(t.start) >= start]
        self.all_tokens = tokens
        self.func = _find_function(tree, entry_point) if entry_point else None
        # A whole program (no entry point, e.g. stdin/stdout): its top-level statements are the body.
        statements = self.func.body if self.func else ([] if entry_point else tree.body)
        self.body = [s for s in statements if self.offset_of(s) >= start]

    def offset(self, pos: tuple[int, int]) -> int:
        return self.line_offsets[pos[0] - 1] + pos[1]

    def offset_of(self, node: ast.stmt | ast.expr) -> int:
        return self.offset((node.lineno, node.col_offset))

    def end_of(self, node: ast.stmt | ast.expr) -> tuple[int, int]:
        """(line, column) where node ends: always set by ast.parse, None only on built nodes."""
        if node.end_lineno is None or node.end_col_offset is None:
            raise ValueError(f"{type(node).__name__} without an end position")
        return node.end_lineno, node.end_col_offset

    def line_span(self, first: int, last: int) -> tuple[int, int]:
        """Offsets of whole lines first..last (1-based, inclusive), newline included."""
        return self.line_offsets[first - 1], self.line_offsets[last]

    def indent(self, node: ast.stmt | ast.expr) -> str:
        return " " * node.col_offset

    def before_body(self, lines: str) -> _Edit:
        """Insert `lines` (each given without indentation, newline-terminated) before the first
        statement of the function body, at its indentation."""
        first = self.body[0]
        start = self.line_span(first.lineno, first.lineno)[0]
        pad = self.indent(first)
        return _Edit(start, start, "".join(pad + line for line in lines.splitlines(keepends=True)))

    def params(self) -> list[str]:
        if self.func is None:
            return []
        return [a.arg for a in self.func.args.args if a.arg not in ("self", "cls")]


def _find_function(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    found = None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            found = node  # the last definition is the one the prompt leaves open
    return found


def _off_by_one(ctx: _Context) -> list[_Edit]:
    edits = []
    for i, tok in enumerate(ctx.tokens):
        if tok.type == tokenize.NUMBER and tok.string.isdigit():
            value = int(tok.string)
            new = value + 1 if value == 0 or i % 2 == 0 else value - 1
            edits.append(_Edit(ctx.offset(tok.start), ctx.offset(tok.end), str(new)))
    if not edits:  # no constants: shorten a len(...) instead
        for node in _walk_solution(ctx):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len":
                end = ctx.offset(ctx.end_of(node))
                edits.append(_Edit(end, end, " - 1"))
    return edits


def _wrong_operator(ctx: _Context) -> list[_Edit]:
    edits = []
    for prev, tok in zip(ctx.all_tokens, ctx.all_tokens[1:]):
        if ctx.offset(tok.start) < ctx.start or tok.string not in _SWAPS:
            continue
        binary = prev.type in (tokenize.NAME, tokenize.NUMBER, tokenize.STRING) or prev.string in ")]}"
        if tok.type == tokenize.OP and not binary:
            continue  # unary minus, *args, [*xs]: not a comparison or arithmetic
        edits.append(_Edit(ctx.offset(tok.start), ctx.offset(tok.end), _SWAPS[tok.string]))
    return edits


def _missing_case(ctx: _Context) -> list[_Edit]:
    """Drop an `if` without else (a forgotten case), or return a trivial value up front."""
    edits = []
    for block in _blocks(ctx):
        if len(block) < 2:
            continue  # removing the only statement would be a syntax error, not a missing case
        for stmt in block:
            if isinstance(stmt, ast.If) and not stmt.orelse and ctx.offset_of(stmt) >= ctx.start:
                start, end = ctx.line_span(stmt.lineno, ctx.end_of(stmt)[0])
                edits.append(_Edit(start, end, ""))
    if not edits and ctx.body:
        early = f"return {_trivial_value(ctx)}" if ctx.func else "raise SystemExit(0)"
        edits.append(ctx.before_body(early + "\n"))
    return edits


def _exception(ctx: _Context) -> list[_Edit]:
    """Misspell a parameter where it is first used: a NameError when that line runs."""
    params = set(ctx.params())
    seen: set[str] = set()
    edits = []
    for tok in ctx.tokens:
        if tok.type == tokenize.NAME and tok.string in params and tok.string not in seen:
            seen.add(tok.string)
            wrong = tok.string[:-1] if tok.string.endswith("s") and len(tok.string) > 1 else tok.string + "s"
            edits.append(_Edit(ctx.offset(tok.start), ctx.offset(tok.end), wrong))
    if not edits and ctx.body:
        edits.append(ctx.before_body("raise NotImplementedError()\n"))
    return edits


def _infinite_loop(ctx: _Context) -> list[_Edit]:
    """A scan loop that forgets to advance its index."""
    if not ctx.body:
        return []
    arg = (ctx.params() or ["0"])[0]
    return [ctx.before_body(f"i = 0\nwhile i < len(str({arg})) + 1:\n    pass\n")]


def _syntax_error(ctx: _Context) -> list[_Edit]:
    """Drop the colon that ends a compound statement's header."""
    edits = []
    for tok, nxt in zip(ctx.tokens, ctx.tokens[1:]):
        if tok.string == ":" and nxt.type in (tokenize.NEWLINE, tokenize.COMMENT):
            line = ctx.source[ctx.line_offsets[tok.start[0] - 1] : ctx.offset(tok.start)].lstrip()
            if line.split(" ", 1)[0].rstrip(":") in _HEADERS:
                edits.append(_Edit(ctx.offset(tok.start), ctx.offset(tok.end), ""))
    if not edits:  # a one-line body: unbalance its last parenthesis or bracket instead
        closers = [t for t in ctx.tokens if t.string in (")", "]")]
        if closers:
            tok = closers[-1]
            edits.append(_Edit(ctx.offset(tok.start), ctx.offset(tok.end), ""))
    return edits


_FINDERS = {
    "off_by_one": _off_by_one,
    "wrong_operator": _wrong_operator,
    "missing_case": _missing_case,
    "exception": _exception,
    "infinite_loop": _infinite_loop,
    "syntax_error": _syntax_error,
}


def _walk_solution(ctx: _Context):
    for stmt in ctx.body:
        yield from ast.walk(stmt)


def _blocks(ctx: _Context):
    """Every statement list inside the solution, the function body first."""
    yield ctx.body
    for node in _walk_solution(ctx):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                yield block


def _trivial_value(ctx: _Context) -> str:
    ann = ctx.func.returns if ctx.func else None
    name = ""
    if isinstance(ann, ast.Name):
        name = ann.id
    elif isinstance(ann, ast.Subscript) and isinstance(ann.value, ast.Name):
        name = ann.value.id
    return _TRIVIAL_RETURNS.get(name, "None")


def _spread(edits: list[_Edit], k: int) -> list[_Edit]:
    """Up to k edits spread over the body (first, middle, last), so mutants differ in place."""
    if len(edits) <= k:
        return edits
    picks = sorted({round(i * (len(edits) - 1) / (k - 1)) for i in range(k)})
    return [edits[i] for i in picks]


def _apply(source: str, edit: _Edit) -> str:
    return source[: edit.start] + edit.text + source[edit.end :]
