"""Known families in written equations: canonical forms, parameter fitting, ``--family NAME``.

Two equations are the same PDE when their spatial parts have the same *canonical form*: the tree
as a SymPy expression, expanded, as a map monomial -> coefficient (``u*(1 - u)`` and ``u - u^2``
agree; so do ``pow2(u)`` and ``pow(u, 2)``, and an integral float with an integer).

:func:`match_family` compares a parsed equation with every family of the same order in time: a
family whose canonical form has the same monomials is fitted, its continuous parameters solved
for by least squares on the coefficients of the *unrounded* tree
(:func:`lemon_pl.data.symbols.exact_coefficients`), its discrete ones (porous medium's ``m``)
enumerated. A fit is a match when the family's own tree at the fitted parameters, rounded as the
tokenizer writes it, has exactly the equation's canonical form: the family's tokens then describe
the written equation, and the family's solver solves it. The fitted parameters are those of the
written equation (``delta = sqrt(0.0005)`` for ``0.0005*u_xxx``), not rounded to 3 digits.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from lemon_pl.data.families import Family, get_family, list_families
from lemon_pl.data.params import ACCEPT_FACTOR, Param, format_value
from lemon_pl.data.symbols import Expr, chain, exact_coefficients
from lemon_pl.predict.parse import READABLE, Equation, EquationError, chain_terms, equation_from_tree

#: relative tolerance of "the same coefficient" between two rounded trees (float round-off only)
SAME = 1e-9


# --------------------------------------------------------------------------- canonical forms


def to_sympy(e: Expr):
    """An equation tree as a SymPy expression (variables by their readable names)."""
    import sympy as sp

    if e.op == "var":
        return sp.Symbol(READABLE.get(str(e.value), str(e.value)))
    if e.op == "int":
        return sp.Integer(int(e.value))
    if e.op == "float":
        return sp.Float(float(e.value), 17)
    a = [to_sympy(c) for c in e.children]
    if e.op == "add":
        return a[0] + a[1]
    if e.op == "sub":
        return a[0] - a[1]
    if e.op == "mul":
        return a[0] * a[1]
    if e.op == "div":
        return a[0] / a[1]
    if e.op == "pow":
        return a[0] ** a[1]
    fn = {"neg": lambda v: -v, "inv": lambda v: 1 / v, "sin": sp.sin, "cos": sp.cos,
          "pow2": lambda v: v ** 2, "pow3": lambda v: v ** 3}[e.op]
    return fn(a[0])


#: more monomials than this after expansion: no family's form (they have a handful), not expanded
MAX_MONOMIALS = 2000


def expansion_size(e: Expr | None) -> int:
    """An upper bound on the monomials SymPy's ``expand`` meets anywhere in ``e`` (the largest
    intermediate sum, arguments of functions included), computed without expanding:
    ``(a + b + c)^20`` has at most C(22, 20) = 231."""

    def walk(n: Expr) -> tuple[int, int]:  # (monomials of n, the most met inside n)
        if not n.children:
            return 1, 1
        sizes = [walk(c) for c in n.children]
        inner = max(w for _, w in sizes)
        a = sizes[0][0]
        if n.op in ("add", "sub"):
            size = a + sizes[1][0]
        elif n.op == "mul":
            size = a * sizes[1][0]
        elif n.op in ("pow2", "pow3") or (n.op == "pow" and n.children[1].op == "int"
                                          and int(n.children[1].value) > 0):
            k = 2 if n.op == "pow2" else 3 if n.op == "pow3" else int(n.children[1].value)
            size = math.comb(min(a, 10 ** 6) + k - 1, k)
        elif n.op in ("neg", "div"):
            size = a
        else:  # sin, cos, inv, other powers: one monomial over whatever their argument expands to
            size = 1
        size = min(size, 10 ** 12)
        return size, max(inner, size)

    return 0 if e is None else walk(e)[1]


def canonical(e: Expr | None) -> dict:
    """Monomial -> coefficient (float) of the expanded expression; {} for no expression."""
    import sympy as sp

    if e is None:
        return {}
    expanded = sp.expand(to_sympy(e))
    out = {}
    for mono, coef in expanded.as_coefficients_dict().items():
        value = float(coef)
        if value != 0.0:
            out[mono] = out.get(mono, 0.0) + value
    return out


def same_form(a: Mapping, b: Mapping, rtol: float = SAME) -> bool:
    """The same monomials with coefficients equal to ``rtol`` (relative)."""
    if a.keys() != b.keys():
        return False
    return all(abs(a[k] - b[k]) <= rtol * max(abs(a[k]), abs(b[k])) for k in a)


# --------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class FamilyMatch:
    """A family with parameters whose tree describes the equation (``family.t_final`` is the
    horizon of the prediction, which may differ from the family's own)."""

    family: Family
    params: dict[str, float]
    fitted: bool  # recognised in a written equation (False: given with --family/--params)
    native_t_final: float  # the horizon the family's data were generated with

    @property
    def name(self) -> str:
        return self.family.name

    def tokens(self) -> list[int]:
        return self.family.tokens(self.params)

    def equation(self) -> str:
        return self.family.equation(self.params)

    def describe(self) -> str:
        return f"{self.name} ({', '.join(f'{k}={format_value(v)}' for k, v in self.params.items())})"


def with_horizon(fam: Family, t_final: float) -> Family:
    """``fam`` predicting to ``t_final`` (its solver, time grid and c_t follow)."""
    return fam if t_final == fam.t_final else dataclasses.replace(fam, t_final=float(t_final))


def _rhs(fam: Family, params: Mapping[str, float]) -> Expr | None:
    """The family's spatial part ``sum(sign_i T_i)`` in physical time."""
    terms = chain_terms(fam.tree(params, stored_time=False))[1:]
    return chain(*terms) if terms else None


@functools.lru_cache(maxsize=None)
def _monomials(name: str, choices: tuple[tuple[str, float], ...]) -> frozenset:
    """The monomials of a family's canonical form at generic parameters (its centre)."""
    fam = get_family(name)
    p = {s.name: s.start()[0] for s in fam.params if s.choices is None}
    p.update(dict(choices))
    with exact_coefficients():
        return frozenset(canonical(_rhs(fam, p)))


def _choice_sets(fam: Family) -> list[tuple[tuple[str, float], ...]]:
    discrete = [s for s in fam.params if s.choices is not None]
    return [tuple(zip([s.name for s in discrete], map(float, combo)))
            for combo in itertools.product(*[s.choices for s in discrete])]


def match_family(eq: Equation, families: Sequence[str] | None = None) -> FamilyMatch | None:
    """The first family (in the registry's order) whose tree, with fitted parameters, has the
    canonical form of ``eq``; None if none has. The match predicts to the family's own horizon;
    use :func:`with_horizon` for another."""
    if expansion_size(eq.rhs()) > MAX_MONOMIALS:
        return None
    target = canonical(eq.rhs())
    if not target:
        return None
    for name in families or list_families():
        fam = get_family(name)
        if fam.second_order != (eq.order == 2):
            continue
        for choices in _choice_sets(fam):
            if _monomials(name, choices) != frozenset(target):
                continue
            params = _fit(fam, dict(choices), target)
            if params is not None:
                return FamilyMatch(fam, params, True, fam.t_final)
    return None


def _fit(fam: Family, fixed: dict[str, float], target: dict) -> dict[str, float] | None:
    """Parameters whose rounded tree has ``target``'s canonical form, or None."""
    from scipy.optimize import least_squares

    free = [s for s in fam.params if s.choices is None]
    keys = list(target)
    want = np.array([target[k] for k in keys])
    starts = [s.start() for s in free]
    scale = np.array([s for _, s in starts])

    def params(z) -> dict[str, float]:
        p = {s.name: float(v) for s, v in zip(free, np.asarray(z) * scale)}
        return {n: (p[n] if n in p else fixed[n]) for n in fam.param_names}

    def residual(z, rows=slice(None)):
        with exact_coefficients():
            got = canonical(_rhs(fam, params(z)))
        have = np.array([got.get(k, 0.0) for k in keys])
        return ((have - want) / np.abs(want))[rows]

    def matches(z) -> bool:
        if not np.all(np.isfinite(z)):
            return False
        return same_form(canonical(_rhs(fam, params(z))), target)

    if not free:
        return params([]) if matches([]) else None
    z0 = np.array([v for v, _ in starts]) / scale
    candidates = []
    try:
        fit = least_squares(residual, z0, xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=200)
        candidates.append(fit.x)
        if len(free) == 1 and len(keys) > 1:
            # several rounded coefficients of one parameter (fplanck's A, B, D of eta): the exact fit
            # of each, then a scan of the band they span, for a value that reproduces all of them
            singles = [least_squares(functools.partial(residual, rows=[i]), fit.x, xtol=1e-15, ftol=1e-15,
                                     gtol=1e-15, max_nfev=100).x for i in range(len(keys))]
            candidates += singles
            lo, hi = min(float(s[0]) for s in singles), max(float(s[0]) for s in singles)
            pad = 0.01 * max(abs(lo), abs(hi))
            candidates += [np.array([v]) for v in np.linspace(lo - pad, hi + pad, 201)]
    except (ValueError, FloatingPointError, ZeroDivisionError, OverflowError):
        return None
    for z in candidates:
        if matches(z):
            return params(z)
    return None


# --------------------------------------------------------------------------- parameter ranges

#: how far from its centre a centred parameter may be given (:data:`lemon_pl.data.params.ACCEPT_FACTOR`)
PARAM_FACTOR = ACCEPT_FACTOR


def param_range(spec: Param) -> tuple[float, ...]:
    """The values ``lemon-pl predict`` accepts for a family parameter: :meth:`Param.accepted_range`."""
    return spec.accepted_range()


def out_of_range(fam: Family, params: Mapping[str, float]) -> str | None:
    """A note naming the first parameter outside its accepted range (:meth:`Param.accepted_range`), else None."""
    for spec in fam.params:
        value = float(params[spec.name])
        if not spec.contains(value):
            return f"{spec.name} = {value:.4g} is outside {fam.name}'s range {spec.describe_range()}"
    return None


def family_ranges(fam: Family) -> str:
    """``delta in 0.00022 .. 2.2`` for every parameter of ``fam``."""
    return "; ".join(f"{s.name} in {s.describe_range()}" for s in fam.params)


# --------------------------------------------------------------------------- --family NAME --params k=v


def family_equation(name: str, given: Mapping[str, str | float], source: str = "--params"
                    ) -> tuple[FamilyMatch, Equation, list[str]]:
    """A family with parameters from ``--params`` (missing ones at their centre); returns the match,
    the equation and notes. Unknown families, unknown parameters, values that are no number or lie
    outside :meth:`Param.accepted_range` raise EquationError naming ``source`` (``--params``, or the support
    file the parameters come from), before any arithmetic with them."""
    try:
        fam = get_family(name)
    except KeyError as err:
        raise EquationError(f"--family: {err}" if source == "--params" else f"{source}: {err}") from None
    unknown = [k for k in given if k not in fam.param_names]
    if unknown:
        raise EquationError(f"{source}: {name} has no parameter {unknown[0]!r}; its parameters are "
                            f"{', '.join(fam.param_names)}")
    params, notes = {}, []
    for spec in fam.params:
        if spec.name in given:
            raw = given[spec.name]
            try:
                value = float(raw)
            except (TypeError, ValueError, OverflowError):
                raise EquationError(f"{source}: {spec.name}={str(raw)[:40]!r} is not a number") from None
            if not math.isfinite(value):
                raise EquationError(f"{source}: {spec.name}={str(raw)[:40]!r} is not finite")
            if spec.choices is not None and value not in spec.choices:
                raise EquationError(f"{source}: {name}'s {spec.name} must be one of "
                                    f"{', '.join(map(str, spec.choices))}, got {str(raw)[:40]}")
            if not spec.contains(value):
                raise EquationError(f"{source}: {name}'s {spec.name}={str(raw)[:40]} is outside its range "
                                    f"{spec.describe_range()} ({family_ranges(fam)})")
        else:
            value = spec.default_value
            notes.append(f"{spec.name} not given: {format_value(value)} (the family's default)")
        params[spec.name] = value
    try:
        eq = equation_from_tree(fam.tree(params, stored_time=False), fam.equation(params))
        fam.tokens(params)  # every coefficient within the tokenizer's range
    except (ValueError, ArithmeticError) as err:
        shown = ", ".join(f"{k}={format_value(v)}" for k, v in params.items())
        raise EquationError(f"{source}: {name} with {shown}: {str(err).splitlines()[0] if str(err) else err!r}"
                            ) from None
    return FamilyMatch(fam, params, False, fam.t_final), eq, notes


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """``["delta=0.022", "nu=0.003,rho=1"]`` -> {"delta": "0.022", ...} (EquationError naming a bad item)."""
    out: dict[str, str] = {}
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise EquationError(f"--params: {part!r} is not of the form name=value")
            if key.strip() in out:
                raise EquationError(f"--params: {key.strip()} is given twice")
            out[key.strip()] = value.strip()
    return out
