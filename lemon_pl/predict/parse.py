"""Equations as people write them -> the project's prefix token trees.

``parse_equation("u_t + 0.5*u_x - 0.01*u_xx = 0")`` reads an infix equation with lemon-pl's
whitelist grammar (:mod:`lemon_pl.core.expressions`; unevaluated SymPy objects, so the terms keep the
order and grouping they were written in) and returns an :class:`Equation`: the time-derivative
term and the signed spatial terms ``T_i`` of ``u_t + sum_i T_i = 0`` (or ``u_tt + ...``), written
in *physical* time with the time derivative's coefficient normalised to 1. ``Equation.tree(t_final)`` is the tree the models read,
in stored time exactly as :meth:`lemon_pl.data.families.Family.tree` builds it: the same
left-nested add/sub chain with ``c_t * u_t`` (``c_t**2 * u_tt``) first, ``c_t = 2 / t_final``.

What can be written
    * the unknown ``u`` and its derivatives ``u_t``, ``u_tt``, ``u_x`` .. ``u_xxxx`` (also ``ut``,
      ``uxx``, ...), the coordinate ``x``, the constant ``pi``;
    * ``+ - * / ^`` (or ``**``), parentheses, ``sin``, ``cos``, ``sqrt`` (a power 1/2); implicit
      products such as ``0.5u_x``; ``lhs = rhs`` (a missing ``= 0`` is implied);
    * the time derivative once, linearly, with a constant coefficient (``2*u_t = u_xx`` is
      ``u_t - 0.5*u_xx = 0``); ``u_t`` and ``u_tt`` are not mixed.

How the tree is written (the families' conventions)
    * each term is ``coefficient * (f1 * (f2 * ...))``, the factors in the order written;
      a numeric coefficient is folded into one literal (``(0.01/pi)*u_xx`` -> ``0.00318*u_xx``);
    * literals with a decimal point or exponent are float tokens, rounded to 3 significant digits
      (the tokenizer's precision, reported in ``Equation.rounded``); integers -20..20 are integer
      tokens (``6*u_x^2``, ``1 - u``, ``cos(10*x)``);
    * ``^2``, ``^3`` are ``pow2``/``pow3``, ``^-1`` is ``inv``, other powers ``pow``.

Integral floats print like integers (``1*u*u_x`` for ``k = 1.0``) and ``u^2`` may be ``pow2`` or
``pow`` in a family's tree; :mod:`lemon_pl.predict.match` recognises families on canonical
(expanded) forms and then uses the family's own tree, so their tokens come out identical.

Errors are :class:`EquationError` (a ``ValueError``) whose message names the offending term. The
text never reaches Python's or SymPy's evaluation: its tokens are checked against the lists above,
then the grammar builds the SymPy tree node by node, with literals and constant exponents bounded
before any exact arithmetic (``9^9^9^9`` is refused at once).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Sequence

from lemon_pl.core.expressions import MAX_LENGTH, ExpressionError, parse, to_sympy, tokenize
from lemon_pl.data.symbols import (Expr, TokenError, chain, encode, encode_float, integer, num, op, round_sig,
                                   var)

#: names an equation may use -> variable of the vocabulary
VARIABLE_NAMES = {
    "u": "u_0", "u_t": "ut_0", "u_tt": "utt_0", "u_x": "ux_0", "u_xx": "uxx_0", "u_xxx": "uxxx_0",
    "u_xxxx": "uxxxx_0", "x": "x",
    # aliases: without the underscore, and the vocabulary's own names
    "ut": "ut_0", "utt": "utt_0", "ux": "ux_0", "uxx": "uxx_0", "uxxx": "uxxx_0", "uxxxx": "uxxxx_0",
    "u_0": "u_0", "ut_0": "ut_0", "utt_0": "utt_0", "ux_0": "ux_0", "uxx_0": "uxx_0", "uxxx_0": "uxxx_0",
    "uxxxx_0": "uxxxx_0",
}
#: the readable name of each variable (as ``Expr.infix`` writes it)
READABLE = {"u_0": "u", "ut_0": "u_t", "utt_0": "u_tt", "ux_0": "u_x", "uxx_0": "u_xx", "uxxx_0": "u_xxx",
            "uxxxx_0": "u_xxxx", "x": "x"}
TIME_DERIVATIVES = {"ut_0": 1, "utt_0": 2}
FUNCTIONS = ("sin", "cos", "sqrt")
CONSTANTS = ("pi",)
#: functions SymPy knows that the vocabulary has no operator for (named in the error)
_NO_OPERATOR = ("exp", "log", "ln", "tan", "tanh", "sinh", "cosh", "abs", "Abs", "atan", "arctan", "asin",
                "acos", "sign", "erf", "max", "min")
_OPERATOR_TOKENS = {"+", "-", "*", "/", "^", "**", "(", ")", "="}
_DERIVATIVE = re.compile(r"^u_?([xt]+)(_0)?$")
_HELP = "the vocabulary has u, u_t, u_tt, u_x, u_xx, u_xxx, u_xxxx and x"
INT_RANGE = 20  # integer tokens are -20..20
MAX_SYMBOLS = 400  # names, numbers and operators of one equation (its tree stays a few hundred tokens)


class EquationError(ValueError):
    """An equation that cannot be written in the model's vocabulary (the message names the term)."""


@dataclass(frozen=True)
class Term:
    """One signed additive term ``sign * coef * (f1 * (f2 * ...))`` of the chain."""

    sign: int
    coef: float | int | None  # None: no numeric factor (an implicit 1)
    factors: tuple[Expr, ...]
    text: str  # as written, for messages

    def expr(self) -> Expr:
        """The term without its sign."""
        product = None
        for f in reversed(self.factors):
            product = f if product is None else Expr("mul", (f, product))
        lit = None if self.coef is None else _literal(self.coef)
        if product is None:
            return lit if lit is not None else integer(1)
        return product if lit is None else Expr("mul", (lit, product))


@dataclass(frozen=True)
class Equation:
    """A parsed equation: ``lead + sum(sign_i * T_i) = 0`` in physical time (lead coefficient 1).

    ``order`` is 1 (``u_t``) or 2 (``u_tt``). ``stored_c_t`` is set when the equation was written
    in stored (model) time: its lead coefficient, read as ``c_t``. ``rounded`` lists the
    coefficients the 3-significant-digit tokenizer changed (given value, token value)."""

    text: str
    order: int
    terms: tuple[Term, ...]
    stored_c_t: float | None = None
    rounded: tuple[tuple[float, float], ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def lead_var(self) -> str:
        return "ut_0" if self.order == 1 else "utt_0"

    def signed_terms(self) -> list[tuple[int, Expr]]:
        return [(t.sign, t.expr()) for t in self.terms]

    def rhs(self) -> Expr | None:
        """The spatial part ``sum(sign_i * T_i)`` as one chain (None if there is none)."""
        terms = self.signed_terms()
        return chain(*terms) if terms else None

    def tree(self, t_final: float | None = None) -> Expr:
        """The equation's tree: in stored time with ``c_t = 2 / t_final`` (as the models read it),
        or in physical time when ``t_final`` is None."""
        if t_final is None:
            lead = var(self.lead_var)
        else:
            c = 2.0 / check_t_final(t_final)
            lead = num(c ** self.order) * var(self.lead_var)
        return chain((1, lead), *self.signed_terms())

    def tokens(self, t_final: float) -> list[int]:
        """Prefix token ids (no BOS/EOS) of the stored-time tree."""
        return encode(self.tree(t_final))

    def infix(self) -> str:
        """Readable physical-time form, e.g. ``u_t + 0.5*u_x = 0``."""
        return self.tree(None).infix() + " = 0"

    @property
    def t_final(self) -> float | None:
        """The horizon implied by a stored-time equation (``2 / c_t``), else None."""
        return None if self.stored_c_t is None else 2.0 / self.stored_c_t


def check_t_final(t_final: float) -> float:
    t = float(t_final)
    if not (math.isfinite(t) and t > 0):
        raise EquationError(f"t_final must be a positive number, got {t_final!r}")
    return t


# --------------------------------------------------------------------------- entry point


def parse_equation(text: str, stored_time: bool = False) -> Equation:
    """Parse ``text`` (see the module docstring). ``stored_time``: the equation is written in model
    time, as decoded tokens are (``2*u_t + u*u_x + 0.000484*u_xxx``): its time derivative's
    coefficient is ``c_t`` (``c_t**2`` for ``u_tt``) and is kept, not divided out."""
    text = " ".join(str(text).split())
    if not text:
        raise EquationError("the equation is empty")
    if len(text) > MAX_LENGTH:  # checked before the text is echoed in any message
        raise EquationError(f"the equation is {len(text)} characters long; an equation has at most {MAX_LENGTH}")
    sides = text.split("=")
    if len(sides) > 2:
        raise EquationError(f"{text!r} has {len(sides) - 1} '=' signs; write one equation 'lhs = rhs'")
    _check_tokens(text)
    exprs = [_sympy(side, text) for side in sides]
    signed: list[tuple[int, object]] = []
    for k, e in enumerate(exprs):
        for s, part in _flatten(e, 1 if k == 0 else -1):
            signed.append((s, part))
    try:
        terms = [t for t in (_term(s, e, top=True) for s, e in signed) if t is not None]
    except EquationError as err:
        raise EquationError(f"{text!r}: {err}") from None
    written_zeros = sum(1 for _, e in signed if _is_number(e) and e == 0)  # the "= 0"
    dropped = len(signed) - len(terms) - written_zeros
    leads = [t for t in terms if _time_order(t) is not None]
    if not leads:
        raise EquationError(f"{text!r} has no time derivative: write u_t or u_tt, e.g. 'u_t + 0.5*u_x = 0'")
    orders = {_time_order(t) for t in leads}
    if orders == {1, 2}:
        raise EquationError(f"{text!r} mixes u_t and u_tt; an equation is first or second order in time")
    if len(leads) > 1:
        raise EquationError(f"{text!r}: the time derivative appears in {len(leads)} terms "
                            f"({', '.join(t.text for t in leads)}); write it once")
    lead = leads[0]
    if lead.coef is not None and float(lead.coef) == 0.0:
        raise EquationError(f"{text!r}: the time derivative's coefficient is 0")
    a = lead.sign * (1.0 if lead.coef is None else float(lead.coef))
    rest = [t for t in terms if t is not lead]
    order = orders.pop()
    stored_c_t = None
    if stored_time:
        if a <= 0:
            raise EquationError(f"{text!r}: in stored time the time derivative's coefficient (c_t = 2/t_final"
                                f"{'^2' if order == 2 else ''}) must be positive, got {a:g}")
        stored_c_t = a if order == 1 else math.sqrt(a)
    elif a != 1.0:
        rest = [_divide(t, a) for t in rest]
    rounded: list[tuple[float, float]] = []
    checked = [_check_coefficients(t, text, rounded) for t in rest]
    notes = []
    if dropped:
        notes.append(f"{dropped} term(s) with coefficient 0 dropped")
    if a != 1.0 and not stored_time:
        notes.append(f"divided by the time derivative's coefficient {a:g}")
    return Equation(text, order, tuple(checked), stored_c_t, tuple(dict.fromkeys(rounded)), tuple(notes))


def equation_from_tree(tree: Expr, text: str = "") -> Equation:
    """An :class:`Equation` from a physical-time tree ``lead + ...`` (a family's ``tree(p,
    stored_time=False)``): the same terms, without re-parsing text."""
    terms = chain_terms(tree)
    (s0, lead), rest = terms[0], terms[1:]
    if s0 != 1 or lead.op != "var" or lead.value not in TIME_DERIVATIVES:
        raise EquationError(f"the tree {tree.infix()!r} does not start with u_t or u_tt")
    out = tuple(Term(s, None, (e,), e.infix()) for s, e in rest)
    return Equation(text or tree.infix() + " = 0", TIME_DERIVATIVES[lead.value], out)


def chain_terms(e: Expr) -> list[tuple[int, Expr]]:
    if e.op == "add":
        return chain_terms(e.children[0]) + [(1, e.children[1])]
    if e.op == "sub":
        return chain_terms(e.children[0]) + [(-1, e.children[1])]
    return [(1, e)]


# --------------------------------------------------------------------------- input checks


def _check_tokens(text: str) -> None:
    """Names, operators and numbers from the allowed lists only, reported in reading order (before
    anything is parsed; :mod:`lemon_pl.core.expressions` is the grammar)."""
    try:
        tokens = tokenize(text)
    except ExpressionError as err:
        raise EquationError(f"the equation {err}") from None
    if len(tokens) > MAX_SYMBOLS:
        raise EquationError(f"the equation has {len(tokens)} symbols; an equation has at most {MAX_SYMBOLS} (the "
                            "models read a few hundred tokens)")
    for tok in tokens:
        if tok.kind == "name":
            _check_name(tok.text, text)
        elif tok.kind == "bad" or (tok.kind == "op" and tok.text not in _OPERATOR_TOKENS):
            raise EquationError(f"{text!r}: the symbol {tok.text!r} is not allowed (use + - * / ^ ( ) and =)")


def _check_name(name: str, text: str) -> None:
    if name in VARIABLE_NAMES or name in FUNCTIONS or name in CONSTANTS:
        return
    m = _DERIVATIVE.match(name)
    if m:
        letters = m.group(1)
        nx, nt = letters.count("x"), letters.count("t")
        if nt == 0:
            raise EquationError(f"{text!r}: the term {name} is an x-derivative of order {nx}; {_HELP} "
                                "(x-derivatives up to order 4)")
        if nx == 0:
            raise EquationError(f"{text!r}: the term {name} is a time derivative of order {nt}; {_HELP} "
                                "(time derivatives of order 1 and 2)")
        raise EquationError(f"{text!r}: the term {name} is a mixed space-time derivative; {_HELP}")
    if name == "t":
        raise EquationError(f"{text!r}: unknown symbol 't': an equation cannot depend on time explicitly ({_HELP})")
    if name in _NO_OPERATOR:
        raise EquationError(f"{text!r}: the function {name}() is not in the vocabulary, whose operators are "
                            "+ - * / ^, sin and cos (sqrt is ^0.5)")
    if name.startswith("p") and _DERIVATIVE.match("u" + name[1:]):
        raise EquationError(f"{text!r}: unknown symbol {name!r}: the unknown function is u ({_HELP})")
    raise EquationError(f"{text!r}: unknown symbol {name!r}; {_HELP}, the constant pi and the functions "
                        "sin, cos, sqrt")


def _sympy(side: str, text: str):
    """One side of the equation as an unevaluated SymPy expression, built by the whitelist grammar."""
    import sympy as sp

    if not side.strip():
        raise EquationError(f"{text!r}: one side of '=' is empty")
    symbols = {n: sp.Symbol(READABLE[v]) for n, v in VARIABLE_NAMES.items()}
    symbols["pi"] = sp.pi
    try:
        node = parse(side, VARIABLE_NAMES, {f: 1 for f in FUNCTIONS}, {"pi": math.pi})
    except ExpressionError as err:
        raise EquationError(f"cannot parse {side.strip()!r} in {text!r}: {err}") from None
    return to_sympy(node, symbols, {"sin": sp.sin, "cos": sp.cos, "sqrt": sp.sqrt})


# --------------------------------------------------------------------------- SymPy tree -> terms


def _flatten(e, sign: int) -> list[tuple[int, object]]:
    """The signed additive terms of ``e``: nested sums and ``-(...)`` of sums are opened."""
    import sympy as sp

    if isinstance(e, sp.Add):
        return [item for a in e.args for item in _flatten(a, sign)]
    if isinstance(e, sp.Mul) and len(e.args) == 2 and e.args[0] == -1 and isinstance(e.args[1], sp.Add):
        return _flatten(e.args[1], -sign)
    return [(sign, e)]


def _factors(e) -> list:
    """The factors of a product, nested products opened (``Mul(-1, Mul(0.5, u))`` -> -1, 0.5, u)."""
    import sympy as sp

    if isinstance(e, sp.Mul):
        return [f for a in e.args for f in _factors(a)]
    return [e]


def _is_number(e) -> bool:
    return not e.free_symbols


def _number(factors: Sequence) -> tuple[float | int | None, bool]:
    """The product of numeric factors: (value, is_integer); (None, True) when there are none."""
    import sympy as sp

    if not factors:
        return None, True
    prod = sp.Mul(*factors)  # evaluated: numbers only
    if all(isinstance(f, sp.Integer) for f in factors):
        return int(prod), True
    value = complex(sp.N(prod, 17))
    if abs(value.imag) > 1e-12 * max(1.0, abs(value.real)):
        raise EquationError(f"the coefficient {sp.sstr(sp.Mul(*factors, evaluate=False))} is not a real number")
    return float(value.real), False


def _term(sign: int, e, top: bool = False) -> Term | None:
    """One chain term; None when its coefficient is 0. ``top``: a term of the equation itself,
    which may be the time derivative ``c * u_t``."""
    import sympy as sp

    text = sp.sstr(e) if sign > 0 else f"-({sp.sstr(e)})"
    facs = _factors(e)
    nums = [f for f in facs if _is_number(f)]
    rest = [f for f in facs if not _is_number(f)]
    coef, is_int = _number(nums)
    if coef is not None:
        if coef == 0:
            return None
        if coef < 0:
            sign, coef = -sign, -coef
        if is_int and coef == 1 and rest:
            coef = None  # an explicit 1* is a no-op
        elif not is_int:
            coef = float(coef)
    if top and len(rest) == 1 and isinstance(rest[0], sp.Symbol) and VARIABLE_NAMES[rest[0].name] in TIME_DERIVATIVES:
        return Term(sign, coef, (var(VARIABLE_NAMES[rest[0].name]),), text)
    try:
        factors = tuple(_expr(f) for f in rest)
    except _TimeDerivativeInside as err:
        raise EquationError(f"the time derivative must appear as c*{err.args[0]} (linear, with a constant "
                            f"coefficient); got the term {text}") from None
    return Term(sign, coef, factors, text)


class _TimeDerivativeInside(Exception):
    """u_t / u_tt inside a product, power or function (raised with its readable name)."""


def _literal(value: float | int) -> Expr:
    """An integer token (-20..20) or a float literal (rounded by the final pass)."""
    if isinstance(value, int) and abs(value) <= INT_RANGE:
        return integer(value)
    return Expr("float", value=float(value))


def _expr(e) -> Expr:
    """Any sub-expression (a factor, a function argument, a power's base) -> Expr (floats unrounded)."""
    import sympy as sp

    if isinstance(e, sp.Symbol):
        name = VARIABLE_NAMES[e.name]
        if name in TIME_DERIVATIVES:
            raise _TimeDerivativeInside(e.name)
        return var(name)
    if _is_number(e):
        value, is_int = _number([e])
        return _literal(int(value) if is_int else float(value))
    if isinstance(e, sp.Add):
        parts = [_signed_expr(s, a) for s, a in _flatten(e, 1)]
        parts = [p for p in parts if p is not None]
        return chain(*parts) if parts else integer(0)
    if isinstance(e, sp.Mul):
        s, inner = _signed_expr(1, e) or (1, integer(0))
        return inner if s > 0 else Expr("neg", (inner,))
    if isinstance(e, sp.Pow):
        base, ex = e.args
        if _is_number(ex):
            value, is_int = _number([ex])
            if is_int and value == 2:
                return op("pow2", _expr(base))
            if is_int and value == 3:
                return op("pow3", _expr(base))
            if is_int and value == -1:
                return op("inv", _expr(base))
        return op("pow", _expr(base), _expr(ex))
    if isinstance(e, (sp.sin, sp.cos)):
        return op(type(e).__name__, _expr(e.args[0]))
    raise EquationError(f"{sp.sstr(e)!r} cannot be written in the vocabulary (operators + - * / ^, sin, cos)")


def _signed_expr(sign: int, e) -> tuple[int, Expr] | None:
    t = _term(sign, e)
    return None if t is None else (t.sign, t.expr())


def _time_order(t: Term) -> int | None:
    """1 or 2 if ``t`` is the time-derivative term ``c * u_t`` / ``c * u_tt``, else None."""
    if len(t.factors) == 1 and t.factors[0].op == "var" and t.factors[0].value in TIME_DERIVATIVES:
        return TIME_DERIVATIVES[t.factors[0].value]
    return None


def _divide(t: Term, a: float) -> Term:
    """``t / a`` (the lead coefficient normalised to 1)."""
    sign = t.sign if a > 0 else -t.sign
    if abs(a) == 1.0:  # -u_t = ...: signs only, integers stay integers
        return Term(sign, t.coef, t.factors, t.text)
    coef = (1.0 if t.coef is None else float(t.coef)) / abs(a)
    return Term(sign, float(coef), t.factors, t.text)


def _check_coefficients(t: Term, text: str, rounded: list) -> Term:
    """Round every float literal of ``t`` as the tokenizer will (3 significant digits), recording
    the values that change; a literal outside the tokenizer's range is an error naming the term."""

    def rnd(value: float) -> float:
        try:
            encode_float(value)
        except TokenError:
            raise EquationError(f"{text!r}: the coefficient {value:g} in the term {t.text} is outside the "
                                "tokenizer's range (1e-8 .. 9.99e12 in magnitude)") from None
        r = round_sig(value)
        if abs(r - value) > 1e-12 * abs(value):
            rounded.append((value, r))
        return r

    def walk(e: Expr) -> Expr:
        if e.op == "float":
            return Expr("float", value=rnd(float(e.value)))
        if not e.children:
            return e
        return Expr(e.op, tuple(walk(c) for c in e.children))

    coef = t.coef
    if isinstance(coef, float) or (isinstance(coef, int) and abs(coef) > INT_RANGE):
        coef = rnd(float(coef))
    return Term(t.sign, coef, tuple(walk(f) for f in t.factors), t.text)
