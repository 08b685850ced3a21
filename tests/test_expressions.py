"""The whitelist grammar of user math (lemon_pl.core.expressions): Python's precedence on a random corpus,
bounds before any exact arithmetic, nothing outside the grammar, and no evaluation of text."""

from __future__ import annotations

import builtins
import math
import time

import numpy as np
import pytest
import sympy as sp

from lemon_pl.core.expressions import (MAX_DEPTH, MAX_EXPONENT, MAX_LENGTH, ExpressionError, evaluate, parse, to_sympy,
                                  tokenize)
from tests.payloads import HUGE, INJECTIONS

FUNCS = {"sin": np.sin, "cos": np.cos, "exp": np.exp, "Max": np.maximum}
ARITY = {"sin": 1, "cos": 1, "exp": 1, "Max": 2}


def _random_expression(rng: np.random.Generator, depth: int = 0) -> str:
    """A random expression over x, y, small literals, + - * / ^ **, unary signs, calls and parentheses."""
    r = rng.random()
    if depth > 3 or r < 0.25:
        return str(rng.choice(["x", "y", "2", "0.5", "3", "1.25", "pi"]))
    if r < 0.35:
        return f"{rng.choice(['sin', 'cos', 'exp'])}({_random_expression(rng, depth + 1)})"
    if r < 0.40:
        return f"Max({_random_expression(rng, depth + 1)}, {_random_expression(rng, depth + 1)})"
    if r < 0.48:
        return f"-{_random_expression(rng, depth + 1)}"
    if r < 0.55:
        return f"({_random_expression(rng, depth + 1)})"
    if r < 0.63:  # a small integer power, either spelling; base an atom so the value stays moderate
        return f"{rng.choice(['x', 'y', '(x - y)', '2'])}{rng.choice(['^', '**'])}{rng.choice(['2', '3', '-1', '-2'])}"
    op = rng.choice(["+", "-", "*", "/"])
    return f"{_random_expression(rng, depth + 1)} {op} {_random_expression(rng, depth + 1)}"


def test_the_grammar_reads_python_precedence_on_a_random_corpus():
    """Every random expression means what Python (the oracle, on text the test itself made) says:
    precedence, associativity, unary minus under a power, ``^`` as ``**``."""
    rng = np.random.default_rng(0)
    x, y = 0.7, -1.3
    env = {"x": x, "y": y, "pi": math.pi, "sin": math.sin, "cos": math.cos, "exp": math.exp, "Max": max}
    checked = 0
    for _ in range(400):
        text = _random_expression(rng)
        try:
            want = eval(text.replace("^", "**"), {"__builtins__": {}}, env)  # the oracle, never the code under test
        except (ZeroDivisionError, OverflowError, ValueError):
            continue
        if isinstance(want, complex) or not math.isfinite(want) or abs(want) > 1e12:
            continue
        node = parse(text, ("x", "y"), ARITY, {"pi": math.pi})
        got = float(evaluate(node, {"x": np.float64(x), "y": np.float64(y)}, FUNCS))
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), text
        sym = to_sympy(node, {"x": sp.Float(x), "y": sp.Float(y), "pi": sp.pi},
                       {"sin": sp.sin, "cos": sp.cos, "exp": sp.exp, "Max": sp.Max})
        assert float(sp.N(sym, 30)) == pytest.approx(want, rel=1e-9, abs=1e-12), text
        checked += 1
    assert checked > 250


@pytest.mark.parametrize("text,value", [("-2^2", -4.0), ("2^-1", 0.5), ("2^3^2", 512.0), ("2**3**2", 512.0),
                                        ("8/2/2", 2.0), ("8-2-2", 4.0), ("2(1+2)", 6.0), ("2x", 1.4),
                                        ("-x^2", -0.49), ("--x", 0.7), ("+x", 0.7), ("1e-3", 1e-3), (".5", 0.5),
                                        ("5.", 5.0), ("1.5E+2", 150.0)])
def test_precedence_and_literals(text, value):
    assert float(evaluate(parse(text, ("x",), {}), {"x": 0.7}, {})) == pytest.approx(value)


@pytest.mark.parametrize("text", INJECTIONS + HUGE)
def test_nothing_outside_the_grammar_is_evaluated(text, monkeypatch, tmp_path):
    """Each payload is refused with an ExpressionError, fast, without any call to eval/exec/compile or
    SymPy's string parsers, and without side effects."""
    monkeypatch.chdir(tmp_path)

    def forbidden(*a, **k):
        raise AssertionError("user text reached an evaluator")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    monkeypatch.setattr(sp, "sympify", forbidden)
    monkeypatch.setattr(sp.parsing.sympy_parser, "parse_expr", forbidden)
    start = time.perf_counter()
    with pytest.raises(ExpressionError):
        parse(text, ("x",), {"sin": 1}, {"pi": math.pi, "E": math.e})
    assert time.perf_counter() - start < 0.5
    assert not list(tmp_path.iterdir())


def test_bounds_are_checked_before_exact_arithmetic():
    with pytest.raises(ExpressionError, match=r"the exponent 3.8742e\+08 is out of range"):
        parse("9^9^9^9", (), {})
    with pytest.raises(ExpressionError, match=r"the power 1e\+10\^40 is out of range \(about 1e400"):
        parse("1e10^40", (), {})
    with pytest.raises(ExpressionError, match="has 60 digits"):
        parse("9" * 60, (), {})
    with pytest.raises(ExpressionError, match="the number 1e999 is out of range"):
        parse("1e999", (), {})
    with pytest.raises(ExpressionError, match="a constant is out of range"):
        parse("1e300*1e300*x", ("x",), {})
    with pytest.raises(ExpressionError, match=f"characters long; an expression has at most {MAX_LENGTH}"):
        parse("x+" * MAX_LENGTH + "x", ("x",), {})
    with pytest.raises(ExpressionError, match=f"nested more than {MAX_DEPTH} levels"):
        parse("(" * (MAX_DEPTH + 2) + "x" + ")" * (MAX_DEPTH + 2), ("x",), {})
    with pytest.raises(ExpressionError, match=f"nested more than {MAX_DEPTH} levels"):
        parse("-" * (MAX_DEPTH + 2) + "x", ("x",), {})
    # what is inside the bounds works, and its exact value is what SymPy computes
    node = parse(f"2^{MAX_EXPONENT} + x^-{MAX_EXPONENT}", ("x",), {})
    assert to_sympy(node, {"x": sp.Integer(1)}, {}).doit() == 2 ** MAX_EXPONENT + 1
    assert float(evaluate(parse("(1e-100)^3", (), {}), {}, {})) == pytest.approx(1e-300)


def test_long_flat_sums_and_products_do_not_recurse():
    """A 2,000-character chain is one flat node: walking it needs no deep recursion."""
    n = MAX_LENGTH // 2 - 1
    node = parse("x" + "*x" * n, ("x",), {})
    assert node.kind == "prod" and len(node.args) == n + 1
    assert float(evaluate(node, {"x": 1.001}, {})) == pytest.approx(1.001 ** (n + 1))
    node = parse("1" + "-x" * n, ("x",), {})
    assert node.kind == "sum" and float(evaluate(node, {"x": 1.0}, {})) == 1 - n
    assert to_sympy(node, {"x": sp.Integer(1)}, {}).doit() == 1 - n


def test_errors_name_the_first_offending_piece():
    with pytest.raises(ExpressionError, match="unknown name 'foo'"):
        parse("foo('bar')", ("x",), {})
    with pytest.raises(ExpressionError, match="the symbol \"'\" is not allowed"):
        parse("sin('bar')", ("x",), {"sin": 1})
    with pytest.raises(ExpressionError, match="unbalanced parentheses"):
        parse("sin(x", ("x",), {"sin": 1})
    with pytest.raises(ExpressionError, match=r"sin\(\) takes 1 argument\(s\), got 2"):
        parse("sin(x, x)", ("x",), {"sin": 1})
    with pytest.raises(ExpressionError, match="the function sin needs its argument in parentheses"):
        parse("sin x", ("x",), {"sin": 1})
    with pytest.raises(ExpressionError, match="an operand is missing"):
        parse("x +", ("x",), {})
    assert [t.kind for t in tokenize("2x+sin(1e-3)")] == ["number", "name", "op", "name", "op", "number", "op"]
