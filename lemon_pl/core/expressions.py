"""Math a user writes (an equation, an initial condition): a whitelist grammar, never Python.

Every expression lemon-pl reads from a person (``--equation``, ``--equations`` files, ``--u0``, the
equation attribute of a support file) goes through :func:`parse`: a tokenizer that knows numbers,
ASCII names and ``+ - * / ^ ** ( ) ,`` (and ``=`` where the caller splits on it), and a
recursive-descent parser over the grammar ::

    sum     := product (('+' | '-') product)*
    product := unary (('*' | '/') unary | atom)*          # an atom right after another: implicit '*'
    unary   := ('+' | '-') unary | power
    power   := atom (('^' | '**') unary)?                  # right-associative, binds tighter than unary '-'
    atom    := NUMBER | NAME | FUNCTION '(' sum (',' sum)* ')' | '(' sum ')'

(Python's precedence: ``-x^2`` is ``-(x^2)``, ``2^-1`` is one half.) There are no strings,
attributes, subscripts, lambdas, keywords or calls other than the caller's list of functions, and
nothing here or downstream calls ``eval``/``exec``/``sympify``/``parse_expr``: the result is a
:class:`Node` tree that :func:`to_sympy` turns into unevaluated SymPy objects built one by one, or
that :func:`evaluate` computes with numpy.

Bounds checked while parsing, before any exact arithmetic can run: the text's length
(:data:`MAX_LENGTH`) and nesting (:data:`MAX_DEPTH`); every literal's size (:data:`MAX_DIGITS`
digits, magnitude within 1e-300 .. 1e300 or 0); a power's constant exponent within
``±``:data:`MAX_EXPONENT`, and a constant power's value within 1e-300 .. 1e300 in magnitude (so
``9^9^9^9`` or ``(1e-100)^100^100`` is refused at once instead of computed exactly).

Errors are :class:`ExpressionError` (a ``ValueError``) with a message that names the offending
piece; callers prefix the flag or file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Collection, Mapping

MAX_LENGTH = 2000
MAX_DEPTH = 50
MAX_DIGITS = 40
MAX_EXPONENT = 100
MAX_LOG10 = 300  # constants and literals are 0 or within 1e-300 .. 1e300 in magnitude

OPERATORS = ("**", "+", "-", "*", "/", "^", "(", ")", ",")
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\*\*|[-+*/^(),=])
""", re.VERBOSE)


class ExpressionError(ValueError):
    """An expression outside the grammar or its bounds (the message names the piece)."""


@dataclass(frozen=True)
class Token:
    kind: str  # "number", "name", "op" or "bad" (a character outside the grammar)
    text: str
    pos: int


@dataclass(frozen=True)
class Node:
    """One node of a parsed expression.

    ``kind``: ``number`` (``text`` as written, ``value`` its float), ``name``, ``call`` (``text`` the
    function, ``args`` its arguments), ``neg`` (unary minus), ``sum`` (terms; a subtracted one is
    ``minus(term)``), ``prod`` (factors; a divisor is ``recip(factor)``), ``pow`` (base, exponent). ``value`` is the float value of a constant subtree (None where it depends on a name
    other than a constant's, or is not a finite real)."""

    kind: str
    text: str = ""
    args: tuple["Node", ...] = ()
    value: float | None = None

    def names(self) -> set[str]:
        out = {self.text} if self.kind == "name" else set()
        for a in self.args:
            out |= a.names()
        return out


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``; a character outside the grammar is a ``bad`` token (callers report
    the first offending token in reading order, so a message names what comes first)."""
    text = str(text)
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"is {len(text)} characters long; an expression has at most {MAX_LENGTH}")
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            out.append(Token("bad", text[pos], pos))
            pos += 1
            continue
        if m.lastgroup != "space":
            out.append(Token(m.lastgroup, m.group(), pos))
        pos = m.end()
    return out


def first_bad_token(tokens: list[Token], names: Collection[str], functions: Collection[str]
                    ) -> Token | None:
    """The first token that is neither a number, a known name/function nor a grammar symbol."""
    for tok in tokens:
        if tok.kind == "bad" or (tok.kind == "name" and tok.text not in names and tok.text not in functions) \
                or (tok.kind == "op" and tok.text == "="):
            return tok
    return None


def parse(text: str, names: Collection[str], functions: Mapping[str, int | tuple[int, int]],
          constants: Mapping[str, float] | None = None, tokens: list[Token] | None = None) -> Node:
    """Parse ``text`` (see the module doc). ``names``: the allowed variable names; ``functions``:
    name -> number of arguments (an int, or (min, max)); ``constants``: names with a known value
    (e.g. ``{"pi": math.pi}``, also allowed as names)."""
    constants = dict(constants or {})
    toks = tokenize(text) if tokens is None else tokens
    bad = first_bad_token(toks, set(names) | set(constants), functions)
    if bad is not None:
        if bad.kind == "name":
            raise ExpressionError(f"unknown name {bad.text!r}")
        raise ExpressionError(f"the symbol {bad.text!r} is not allowed")
    if not toks:
        raise ExpressionError("is empty")
    parser = _Parser(toks, functions, constants)
    node = parser.sum(0)
    if parser.i < len(toks):
        tok = toks[parser.i]
        raise ExpressionError("unbalanced parentheses" if tok.text == ")" else f"unexpected {tok.text!r}")
    return node


class _Parser:
    def __init__(self, toks: list[Token], functions: Mapping[str, int | tuple[int, int]],
                 constants: Mapping[str, float]):
        self.toks, self.i, self.functions, self.constants = toks, 0, functions, constants

    def peek(self) -> Token | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, *texts: str) -> Token | None:
        tok = self.peek()
        if tok is not None and tok.kind == "op" and tok.text in texts:
            self.i += 1
            return tok
        return None

    def sum(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise ExpressionError(f"is nested more than {MAX_DEPTH} levels deep")
        node = self.product(depth)
        while (tok := self.take("+", "-")) is not None:
            node = _combine("add" if tok.text == "+" else "sub", node, self.product(depth))
        return node

    def product(self, depth: int) -> Node:
        node = self.unary(depth)
        while True:
            tok = self.take("*", "/")
            if tok is not None:
                node = _combine("mul" if tok.text == "*" else "div", node, self.unary(depth))
                continue
            nxt = self.peek()
            if nxt is not None and (nxt.kind in ("number", "name") or (nxt.kind == "op" and nxt.text == "(")):
                node = _combine("mul", node, self.power(depth))  # implicit product: 0.5u_x, 2(x + 1)
                continue
            return node

    def unary(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise ExpressionError(f"is nested more than {MAX_DEPTH} levels deep")
        tok = self.take("+", "-")
        if tok is None:
            return self.power(depth)
        inner = self.unary(depth + 1)
        return inner if tok.text == "+" else _combine("neg", inner)

    def power(self, depth: int) -> Node:
        base = self.atom(depth)
        if self.take("^", "**") is None:
            return base
        exponent = self.unary(depth + 1)
        return _combine("pow", base, exponent)

    def atom(self, depth: int) -> Node:
        tok = self.peek()
        if tok is None:
            raise ExpressionError("ends early: an operand is missing")
        self.i += 1
        if tok.kind == "number":
            return _number(tok.text)
        if tok.kind == "name":
            if tok.text in self.functions:
                return self.call(tok.text, depth)
            return Node("name", tok.text, value=self.constants.get(tok.text))
        if tok.text == "(":
            inner = self.sum(depth + 1)
            if self.take(")") is None:
                raise ExpressionError("unbalanced parentheses")
            return inner
        raise ExpressionError("unbalanced parentheses" if tok.text == ")" else f"unexpected {tok.text!r}")

    def call(self, name: str, depth: int) -> Node:
        if self.take("(") is None:
            raise ExpressionError(f"the function {name} needs its argument in parentheses: {name}(...)")
        args = [self.sum(depth + 1)]
        while self.take(",") is not None:
            args.append(self.sum(depth + 1))
        if self.take(")") is None:
            raise ExpressionError("unbalanced parentheses")
        arity = self.functions[name]
        lo, hi = (arity, arity) if isinstance(arity, int) else arity
        if not lo <= len(args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise ExpressionError(f"{name}() takes {want} argument(s), got {len(args)}")
        value = None
        if all(a.value is not None for a in args):
            value = _finite(_FLOAT_FUNCTIONS.get(name), [a.value for a in args])
        return Node("call", name, tuple(args), value)


# --------------------------------------------------------------------------- bounds


def _number(text: str) -> Node:
    digits = sum(c.isdigit() for c in text.split("e")[0].split("E")[0])
    if digits > MAX_DIGITS:
        raise ExpressionError(f"the number {text[:20]}... has {digits} digits; at most {MAX_DIGITS}")
    value = float(text)
    _check_magnitude(value, f"the number {text}")
    return Node("number", text, value=value)


def _check_magnitude(value: float, what: str) -> None:
    if value != 0.0 and not (math.isfinite(value) and -MAX_LOG10 <= math.log10(abs(value)) <= MAX_LOG10):
        raise ExpressionError(f"{what} is out of range: numbers are 0 or 1e-{MAX_LOG10} .. 1e{MAX_LOG10} in "
                              "magnitude")


def _combine(kind: str, *args: Node) -> Node:
    """A new node; sums and products stay flat (``a - b + c`` is one ``sum`` of ``a``, ``minus(b)``,
    ``c``; ``a / b * c`` one ``prod`` of ``a``, ``recip(b)``, ``c``), so no walk recurses deeper
    than the text's nesting."""
    if kind == "pow":
        _check_power(*args)
    if kind in ("add", "sub", "mul", "div"):
        left, right = args
        group, wrap = ("sum", "minus") if kind in ("add", "sub") else ("prod", "recip")
        item = right if kind in ("add", "mul") else Node(wrap, args=(right,), value=_finite(
            _FLOAT_OPS[wrap], [right.value]) if right.value is not None else None)
        items = (left.args if left.kind == group else (left,)) + (item,)
        value = None
        if left.value is not None and item.value is not None:
            op = _FLOAT_OPS["add" if group == "sum" else "mul"]
            value = _finite(op, [left.value, item.value])
            if value is None or group == "prod":
                _check_magnitude(math.inf if value is None else value, "a constant")
        return Node(group, args=items, value=value)
    value = None
    if all(a.value is not None for a in args):
        value = _finite(_FLOAT_OPS[kind], [a.value for a in args])
    return Node(kind, args=args, value=value)


def _check_power(base: Node, exponent: Node) -> None:
    """A constant exponent within +-MAX_EXPONENT; a constant power within the literals' range."""
    if exponent.value is None:
        return
    e = exponent.value
    if abs(e) > MAX_EXPONENT:
        raise ExpressionError(f"the exponent {e:.6g} is out of range (|exponent| <= {MAX_EXPONENT})")
    if base.value is not None and base.value != 0.0:
        size = e * math.log10(abs(base.value))
        if abs(size) > MAX_LOG10:
            raise ExpressionError(f"the power {base.value:.6g}^{e:.6g} is out of range (about 1e{size:.0f}; "
                                  f"numbers are 0 or 1e-{MAX_LOG10} .. 1e{MAX_LOG10} in magnitude)")


def _finite(fn: Callable | None, args: list[float]) -> float | None:
    """``fn(*args)`` as a finite real float, else None (not real, undefined, infinite)."""
    if fn is None:
        return None
    try:
        value = fn(*args)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    if isinstance(value, complex) or not math.isfinite(value):
        return None
    return float(value)


def _pow(a: float, b: float) -> float:
    return a ** b


_FLOAT_OPS: dict[str, Callable] = {
    "neg": lambda a: -a, "minus": lambda a: -a, "recip": lambda a: 1.0 / a, "add": lambda a, b: a + b,
    "mul": lambda a, b: a * b, "pow": _pow,
}
_FLOAT_FUNCTIONS: dict[str, Callable] = {
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "exp": math.exp, "log": math.log, "sqrt": math.sqrt,
    "tanh": math.tanh, "sinh": math.sinh, "cosh": math.cosh, "atan": math.atan, "Abs": abs, "abs": abs,
    "erf": math.erf, "Min": min, "Max": max, "sign": lambda a: float((a > 0) - (a < 0)),
    "Heaviside": lambda a: 1.0 if a > 0 else (0.5 if a == 0 else 0.0),
}


# --------------------------------------------------------------------------- back-ends


def to_sympy(node: Node, symbols: Mapping[str, object], functions: Mapping[str, Callable]):
    """The SymPy form of ``node``, unevaluated (terms and factors in the order written): ``a - b`` is
    ``Add(a, Mul(-1, b))``, ``a / b`` is ``Mul(a, Pow(b, -1))``, ``-a`` is ``Mul(-1, a)``, numbers are
    ``Integer``/``Float`` of their text. ``symbols``: name -> SymPy object; ``functions``: name -> SymPy
    function."""
    import sympy as sp

    def walk(n: Node):
        k = n.kind
        if k == "number":
            return sp.Integer(int(n.text)) if n.text.isdigit() else sp.Float(n.text)
        if k == "neg" and n.args[0].kind == "number":  # -3 is the literal -3 (SymPy's own reading)
            a = n.args[0].text
            return sp.Integer(-int(a)) if a.isdigit() else sp.Float("-" + a)
        if k == "name":
            return symbols[n.text]
        if k == "call":
            return functions[n.text](*(walk(a) for a in n.args), evaluate=False)
        if k == "sum":
            return sp.Add(*(walk(a) for a in n.args), evaluate=False)
        if k == "prod":
            return sp.Mul(*(walk(a) for a in n.args), evaluate=False)
        if k in ("neg", "minus"):
            return sp.Mul(sp.Integer(-1), walk(n.args[0]), evaluate=False)
        if k == "recip":
            return sp.Pow(walk(n.args[0]), sp.Integer(-1), evaluate=False)
        if k == "pow":
            return sp.Pow(walk(n.args[0]), walk(n.args[1]), evaluate=False)
        raise AssertionError(k)

    return walk(node)


def evaluate(node: Node, values: Mapping[str, object], functions: Mapping[str, Callable]):
    """``node`` computed with numpy: ``values`` maps names to arrays or floats, ``functions`` names to
    vectorised callables. Invalid points (a log of a negative number) give NaN, not an error."""
    import numpy as np

    def walk(n: Node):
        if n.value is not None:
            return n.value
        if n.kind == "name":
            return values[n.text]
        args = [walk(a) for a in n.args]
        if n.kind == "call":
            return functions[n.text](*args)
        if n.kind == "sum":
            return sum(args[1:], args[0])
        if n.kind == "prod":
            out = args[0]
            for a in args[1:]:
                out = out * a
            return out
        if n.kind in ("neg", "minus"):
            return np.negative(args[0])
        if n.kind == "recip":
            return np.divide(1.0, args[0])
        # a real power of a negative base is NaN (numpy's float power), as x**0.5 is on a real grid
        return np.power(np.asarray(args[0], dtype=np.float64), np.asarray(args[1], dtype=np.float64))

    with np.errstate(all="ignore"):
        return walk(node)


__all__ = ["ExpressionError", "MAX_DEPTH", "MAX_EXPONENT", "MAX_LENGTH", "Node", "Token", "evaluate",
           "first_bad_token", "parse", "to_sympy", "tokenize"]
