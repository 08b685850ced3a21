"""Written equations -> token trees: every family round-trips, time scaling, rounding, errors, matching."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lemon_pl.data.families import get_family, list_families
from lemon_pl.data.symbols import decode, encode, num, var
from lemon_pl.predict.match import (canonical, family_equation, match_family, parse_params, same_form,
                                    with_horizon)
from lemon_pl.predict.parse import EquationError, parse_equation

N_PARAMS = 6  # random parameter draws per family


def _draws(name: str, seed: int):
    fam = get_family(name)
    rng = np.random.default_rng(seed)
    return fam, [fam.sample_params(rng) for _ in range(N_PARAMS)]


def _tokens(text: str, t_final: float | None = None, stored: bool = False) -> tuple[list[int], object]:
    """What `lemon-pl predict` feeds the model for a written equation."""
    eq = parse_equation(text, stored_time=stored)
    m = match_family(eq)
    t_final = eq.t_final if t_final is None else t_final
    if m is not None:
        return with_horizon(m.family, t_final).tokens(m.params), m
    return eq.tokens(t_final), None


@pytest.mark.parametrize("name", list_families())
def test_every_family_round_trips_tokens_infix_tokens(name):
    fam, draws = _draws(name, 11)
    for p in draws:
        ids = fam.tokens(p)
        # physical-time infix (Family.equation) with the family's horizon
        got, m = _tokens(fam.equation(p), fam.t_final)
        assert got == ids, (fam.equation(p), decode(got).infix(), decode(ids).infix())
        assert m.name == name
        # the fitted parameters are those of the written (3-digit) equation: within rounding of p
        for k, v in p.items():
            assert math.isclose(m.params[k], v, rel_tol=6e-3, abs_tol=1e-12), (k, m.params[k], v)
        # stored-time infix of the decoded tokens: c_t is read off, the horizon follows
        got, m = _tokens(decode(ids).infix(), stored=True)
        assert got == ids and m.name == name
        assert math.isclose(parse_equation(decode(ids).infix(), stored_time=True).t_final, fam.t_final,
                            rel_tol=1e-2)


@pytest.mark.parametrize("name", list_families())
def test_parsed_tree_agrees_with_the_family_tree(name):
    """Without matching: the same PDE always (canonical forms), the very same tree where the infix is
    unambiguous (integral floats print as integers; porous medium writes u^2 as pow(u, 2))."""
    fam, draws = _draws(name, 23)
    for p in draws:
        eq = parse_equation(fam.equation(p))
        assert same_form(canonical(eq.tree(fam.t_final)), canonical(fam.tree(p)))
        floats = [v for v in p.values()]
        if name != "porous_medium" and not any(float(v).is_integer() for v in floats):
            assert eq.tree(fam.t_final) == fam.tree(p), fam.equation(p)
            assert eq.tokens(fam.t_final) == fam.tokens(p)


def test_time_scaling_follows_t_final():
    eq = parse_equation("u_t + 0.5*u_x = 0")
    assert eq.tree(1.0) == num(2.0) * var("ut_0") + num(0.5) * var("ux_0")  # c_t = 2/t_final
    assert eq.tree(4.0).prefix()[:5] == ["add", "mul", "+", "N500", "E-3"]  # c_t = 0.5
    wave = parse_equation("u_tt = 0.25*u_xx")
    assert wave.order == 2 and wave.tree(0.5).prefix()[:5] == ["sub", "mul", "+", "N160", "E-1"]  # c_t^2 = 16
    # the time derivative's coefficient is divided out; the physical form is what is shown
    eq = parse_equation("2*u_t = 0.01*u_xx")
    assert eq.infix() == "u_t - 0.005*u_xx = 0"
    assert parse_equation("-u_t = u_x").infix() == "u_t + u_x = 0"


def test_terms_keep_their_written_order_and_grouping():
    eq = parse_equation("0.5*u_x + u_t = 0.01*u_xx - 0.1*u")  # the time derivative first, then as written
    assert eq.infix() == "u_t + 0.5*u_x - 0.01*u_xx + 0.1*u = 0"
    eq = parse_equation("u_t = -(0.1*u - u_xx)")  # -(...) of a sum is opened into terms
    assert sorted(t.expr().infix() for t in eq.terms) == ["0.1*u", "u_xx"]
    assert same_form(canonical(eq.rhs()), canonical(parse_equation("u_t + 0.1*u - u_xx = 0").rhs()))
    eq = parse_equation("u_t = u*(1 - u)*(u - 0.25)")
    assert eq.tree(None).prefix() == ["sub", "ut_0", "mul", "u_0", "mul", "sub", "1", "u_0", "sub", "u_0", "+",
                                      "N250", "E-3"]
    assert parse_equation("u_t + sqrt(u)*u_x = 0").tree(None).prefix()[2:5] == ["mul", "pow", "u_0"]
    assert parse_equation("u_t + u_x/u = 0").tree(None).prefix() == ["add", "ut_0", "mul", "ux_0", "inv", "u_0"]


def test_coefficients_are_folded_and_rounded_to_three_digits():
    eq = parse_equation("u_t = (0.01/pi)*u_xx")
    assert eq.tree(2.0).prefix()[-4:] == ["+", "N318", "E-5", "uxx_0"]
    assert len(eq.rounded) == 1 and eq.rounded[0] == pytest.approx((0.01 / math.pi, 0.00318), rel=1e-14)
    assert parse_equation("u_t + 2*3*u_x = 0").tree(None).prefix() == ["add", "ut_0", "mul", "6", "ux_0"]
    assert parse_equation("u_t + 1.0*u_x = 0").tree(None).prefix()[2:5] == ["mul", "+", "N100"]  # float, not 1
    assert parse_equation("u_t + 30*u_x = 0").tree(None).prefix()[2:5] == ["mul", "+", "N300"]  # > 20: float
    assert parse_equation("u_t = 0").terms == ()


@pytest.mark.parametrize("text,expect", [
    ("u_t + u_xxxxx = 0", "the term u_xxxxx is an x-derivative of order 5"),
    ("u_t + u_xt = 0", "the term u_xt is a mixed space-time derivative"),
    ("u_ttt = u_xx", "the term u_ttt is a time derivative of order 3"),
    ("u_x + 0.5*u = 0", "has no time derivative"),
    ("u_t + foo*u_x = 0", "unknown symbol 'foo'"),
    ("u_t = t*u", "unknown symbol 't'"),
    ("u_t + exp(u) = 0", "the function exp() is not in the vocabulary"),
    ("u_t + 1e-10*u_x = 0", "the coefficient 1e-10 in the term 1.0e-10*u_x is outside the tokenizer's range"),
    ("u_t + 2e13*u_x = 0", "the coefficient 2e+13 in the term"),
    ("u*u_t + u_x = 0", "got the term u*u_t"),
    ("u_t = sin(u_t)", "the time derivative must appear as c*u_t"),
    ("u_t + u_tt = 0", "mixes u_t and u_tt"),
    ("u_t + u_x = u_t", "the time derivative appears in 2 terms"),
    ("u_t = u_x = 0", "has 2 '=' signs"),
    ("u_t + (u_x = 0", "unbalanced parentheses"),
    ("u_t + u_x[0] = 0", "the symbol '[' is not allowed"),
    ("u_t + __import__('os').getpid() = 0", "unknown symbol '__import__'"),
    ("", "the equation is empty"),
])
def test_malformed_equations_name_the_offending_term(text, expect):
    with pytest.raises(EquationError) as err:
        parse_equation(text)
    assert expect in str(err.value) and "\n" not in str(err.value)


def test_equivalent_forms_are_recognised_with_their_parameters():
    m = match_family(parse_equation("u_t = 0.003*u_xx + u - u^2"))  # logistic, expanded
    assert m.name == "diff_logisreact_1D" and m.params == pytest.approx({"nu": 0.003, "rho": 1.0}, rel=1e-12)
    m = match_family(parse_equation("u_t + 0.5*u*u_x*2 = 0.00318 * u_xx"))
    assert m.name == "burgers" and m.params["k"] == pytest.approx(1.0) and m.params["eps"] == pytest.approx(0.00318 * math.pi)
    m = match_family(parse_equation("u_tt = u_xx - 1.2*sin(u)"))
    assert m.name == "Sine_Gordon" and m.params == pytest.approx({"c": 1.2})
    m = match_family(parse_equation("u_t - 3*u^2*u_xx - 6*u*u_x^2 = 0"))  # pow2 where the family writes pow(u, 2)
    assert m.name == "porous_medium" and m.params == {"m": 3.0}
    # the parameters are those of the written equation: its solver solves exactly that equation
    m = match_family(parse_equation("u_t + u*u_x + 0.0005*u_xxx = 0"))
    assert m.name == "kdv" and m.params["delta"] ** 2 == pytest.approx(0.0005, rel=1e-12)


def test_unknown_or_inconsistent_equations_match_no_family():
    for text in ("u_t + 0.3*u_x + 0.01*u_xxx = 0", "u_tt = -0.25*u_xx", "u_t = 0.003*u_xx + 2*u - u^2 + u^3",
                 "u_t = 0"):
        assert match_family(parse_equation(text)) is None, text
    # fplanck's three coefficients come from one parameter: a changed one is not fplanck
    fam = get_family("fplanck")
    text = fam.equation({"eta": 0.001}).replace("u_xx", "1.5*u_xx", 1)
    assert match_family(parse_equation(text)) is None


def test_family_with_params():
    m, eq, notes = family_equation("kdv", parse_params(["delta=0.022"]))
    assert m.tokens() == get_family("kdv").tokens({"delta": 0.022}) and eq.infix() == m.equation() and not notes
    m, _, notes = family_equation("diff_bistablereact_1D", parse_params(["nu=0.004,rho=1.1"]))
    assert m.params == {"nu": 0.004, "rho": 1.1, "a": 0.5} and notes == ["a not given: 0.5 (the family's default)"]
    with pytest.raises(EquationError, match="kdv has no parameter 'delt'; its parameters are delta"):
        family_equation("kdv", {"delt": "0.2"})
    with pytest.raises(EquationError, match="must be one of 2, 3, 4"):
        family_equation("porous_medium", {"m": "5"})
    with pytest.raises(EquationError, match="unknown family 'kdvv'"):
        family_equation("kdvv", {})
    with pytest.raises(EquationError, match="'delta' is not of the form name=value"):
        parse_params(["delta"])
    # a different horizon rescales the tokens' c_t and the solver's time grid
    fam = with_horizon(get_family("kdv"), 2.0)
    assert fam.c_t == 1.0 and fam.t_grid(64)[-1] == pytest.approx(2 * 63 / 64)
    assert decode(encode(fam.tree({"delta": 0.022}))).infix().startswith("1*u_t + u*u_x")  # c_t = 1
    assert decode(get_family("kdv").tokens({"delta": 0.022})).infix().startswith("2*u_t + u*u_x")


def test_expansion_is_bounded_before_sympy_expands():
    """match_family expands the equation into monomials: the bound is exact on small powers, and an
    equation whose expansion would hold tens of thousands of monomials is no family, answered at once."""
    import time

    from lemon_pl.predict.match import MAX_MONOMIALS, canonical, expansion_size

    for text in ("u_t + (u + u_x + 1)^5 = 0", "u_t + u*(1 - u)*(u - 0.25) = 0", "u_t + (u + x)^3*(u_x - u) = 0"):
        rhs = parse_equation(text).rhs()
        assert expansion_size(rhs) >= len(canonical(rhs))
    assert expansion_size(parse_equation("u_t + (u + u_x + 1)^5 = 0").rhs()) == 21  # C(7, 2)
    huge = parse_equation("u_t + sin((u + u_x + u_xx + u_xxx + x + 1)^20) = 0")
    assert expansion_size(huge.rhs()) == 53130 > MAX_MONOMIALS
    start = time.perf_counter()
    assert match_family(huge) is None
    assert time.perf_counter() - start < 1.0


def test_an_equation_longer_than_any_model_reads_is_one_error():
    from lemon_pl.predict.parse import MAX_SYMBOLS

    eq = parse_equation("u_t" + " + u" * 99 + " = 0")  # 201 symbols: fine
    assert len(eq.terms) == 99
    with pytest.raises(EquationError, match=f"the equation has 1983 symbols; an equation has at most {MAX_SYMBOLS}"):
        parse_equation("u_t" + "+u" * 990 + "=0")
