"""Equations as expression trees, written in prefix (Polish) notation and tokenised.

The vocabulary is the reference-compatible one of LeMON / PROSE-PDE (1,098 ids):

* equation words (ids 0-70): 4 specials, 11 operators, the integers -20..20, ``CONSTANT``,
  9 variables and the 5 markers ``| INT+ INT- FLOAT+ FLOAT-``;
* float words (ids 71-1097): the 4 specials again, the signs ``+ -``, the mantissas
  ``N000``-``N999`` and the exponents ``E-10``-``E10``.

A non-integer literal becomes three tokens: sign, 3-digit mantissa and exponent, read from
``%.2e`` (``0.00303 -> + N303 E-5``, ``1.0 -> + N100 E-2``). Integer literals are single tokens.
The specials appear twice in the vocabulary, as in the reference; lemon-pl always uses the
first copy (``PAD_ID == 2``) so that padding has one id everywhere (the reference mixes id 2
and id 73, see reference bug 11).

Variables: ``u_0`` (the solution), ``ut_0``/``utt_0`` (first/second derivative in *stored*
time), ``ux_0 .. uxxxx_0`` (space derivatives) and ``x``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence, Union

import numpy as np

SPECIALS = ("<BOS>", "<EOS>", "<PAD>", "<PLACEHOLDER>")
UNARY_OPS = ("neg", "inv", "sin", "cos", "pow2", "pow3")
BINARY_OPS = ("add", "sub", "mul", "div", "pow")
OPERATORS = ("add", "sub", "mul", "div", "neg", "inv", "sin", "cos", "pow", "pow2", "pow3")
INTEGERS = tuple(str(i) for i in range(-20, 21))
VARIABLES = ("rand", "u_0", "ut_0", "utt_0", "ux_0", "uxx_0", "uxxx_0", "uxxxx_0", "x")
MARKERS = ("|", "INT+", "INT-", "FLOAT+", "FLOAT-")
EQUATION_WORDS = SPECIALS + OPERATORS + INTEGERS + ("CONSTANT",) + VARIABLES + MARKERS
FLOAT_WORDS = (
    SPECIALS
    + ("+", "-")
    + tuple(f"N{i:03d}" for i in range(1000))
    + tuple(f"E{i}" for i in range(-10, 11))
)
VOCAB: tuple[str, ...] = EQUATION_WORDS + FLOAT_WORDS
VOCAB_SIZE = len(VOCAB)  # 1098
BOS_ID, EOS_ID, PAD_ID, PLACEHOLDER_ID = 0, 1, 2, 3

# First occurrence wins, so specials map to ids 0-3 and float words to their own block.
TOKEN_TO_ID: dict[str, int] = {}
for _i, _w in enumerate(VOCAB):
    TOKEN_TO_ID.setdefault(_w, _i)
_FLOAT_BLOCK = len(EQUATION_WORDS)
# "+" / "-" are float words only; everything else is unique apart from the specials.
assert VOCAB_SIZE == 1098 and len(set(VOCAB)) == 1094


class TokenError(ValueError):
    """A token sequence that is not a well-formed prefix equation."""


# --------------------------------------------------------------------------- floats


def round_sig(value: float) -> float:
    """Round ``value`` exactly as the float tokenizer does (3 significant digits)."""
    return decode_float(encode_float(value))


def encode_float(value: float) -> list[str]:
    """``value`` -> [sign, mantissa, exponent] tokens (``%.2e`` rounding)."""
    value = float(value)
    if not math.isfinite(value):
        raise TokenError(f"cannot tokenise non-finite coefficient {value!r}")
    text = f"{abs(value):.2e}"  # d.dde±XX
    mant, exp = text.split("e")
    digits = int(mant.replace(".", ""))
    exponent = int(exp) - 2
    if digits == 0:
        exponent = 0
    if not -10 <= exponent <= 10:
        raise TokenError(f"coefficient {value!r} is outside the tokenizer's range (1e-8 .. 9.99e12 in magnitude)")
    return ["-" if value < 0 else "+", f"N{digits:03d}", f"E{exponent}"]


def decode_float(tokens: Sequence[str]) -> float:
    sign, mant, exp = tokens
    if sign not in "+-" or not mant.startswith("N") or not exp.startswith("E"):
        raise TokenError(f"malformed float tokens {list(tokens)!r}")
    value = int(mant[1:]) * 10.0 ** int(exp[1:])
    # round away the binary noise of 10**e so that round_sig is idempotent
    value = float(f"{value:.3g}") if value else 0.0
    return -value if sign == "-" else value


# --------------------------------------------------------------------------- trees


@dataclass(frozen=True)
class Expr:
    """A node of an equation tree: an operator with children, a variable, or a literal."""

    op: str
    children: tuple["Expr", ...] = ()
    value: float | int | None = None

    # construction sugar ---------------------------------------------------
    def __add__(self, other: "Expr") -> "Expr":
        return Expr("add", (self, other))

    def __sub__(self, other: "Expr") -> "Expr":
        return Expr("sub", (self, other))

    def __mul__(self, other: "Expr") -> "Expr":
        return Expr("mul", (self, other))

    def __neg__(self) -> "Expr":
        return Expr("neg", (self,))

    # views ------------------------------------------------------------------
    def prefix(self) -> list[str]:
        """Token words in prefix order."""
        if self.op == "float":
            return encode_float(float(self.value))
        if self.op == "int":
            return [str(int(self.value))]
        if self.op == "var":
            return [str(self.value)]
        out = [self.op]
        for c in self.children:
            out.extend(c.prefix())
        return out

    def infix(self) -> str:
        return _infix(self)[0]

    def evaluate(self, env: Mapping[str, np.ndarray]) -> np.ndarray:
        """Evaluate with variables taken from ``env`` (arrays broadcast together)."""
        return _evaluate(self, env)

    def terms(self) -> list["Expr"]:
        """The signed additive terms of a top-level add/sub chain (sub terms negated)."""
        if self.op == "add":
            return self.children[0].terms() + self.children[1].terms()
        if self.op == "sub":
            return self.children[0].terms() + [-t for t in self.children[1].terms()]
        return [self]


def var(name: str) -> Expr:
    if name not in VARIABLES:
        raise TokenError(f"unknown variable {name!r}; expected one of {VARIABLES}")
    return Expr("var", value=name)


def num(value: float) -> Expr:
    """A float coefficient, rounded as the tokenizer will write it (unrounded inside
    :func:`exact_coefficients`)."""
    return Expr("float", value=float(value) if _EXACT.get() else round_sig(value))


_EXACT: contextvars.ContextVar[bool] = contextvars.ContextVar("lemon_exact_coefficients", default=False)


@contextlib.contextmanager
def exact_coefficients() -> Iterator[None]:
    """Within this block :func:`num` keeps full precision, so a family's tree is a smooth function
    of its parameters (``lemon_pl.predict.match`` fits parameters to a written equation with it).
    Token ids are unaffected: :func:`encode_float` always writes 3 significant digits."""
    token = _EXACT.set(True)
    try:
        yield
    finally:
        _EXACT.reset(token)


def integer(value: int) -> Expr:
    if not -20 <= int(value) <= 20:
        raise TokenError(f"integer literal {value} outside -20..20; use num() instead")
    return Expr("int", value=int(value))


def op(name: str, *children: Expr) -> Expr:
    arity = 2 if name in BINARY_OPS else 1 if name in UNARY_OPS else None
    if arity is None:
        raise TokenError(f"unknown operator {name!r}")
    if len(children) != arity:
        raise TokenError(f"operator {name!r} takes {arity} operands, got {len(children)}")
    return Expr(name, tuple(children))


def chain(*terms: tuple[int, Expr]) -> Expr:
    """Left-nested add/sub chain of ``(sign, term)`` pairs, as the reference writes trees."""
    (s0, first), *rest = terms
    tree = first if s0 > 0 else -first
    for s, t in rest:
        tree = tree + t if s > 0 else tree - t
    return tree


_INFIX_NAMES = {
    "u_0": "u", "ut_0": "u_t", "utt_0": "u_tt", "ux_0": "u_x", "uxx_0": "u_xx",
    "uxxx_0": "u_xxx", "uxxxx_0": "u_xxxx", "x": "x", "rand": "rand",
}
_PREC = {"add": 1, "sub": 1, "mul": 2, "div": 2, "neg": 3, "pow": 4, "atom": 5}


def _fmt_num(v: float | int) -> str:
    if isinstance(v, int):
        return str(v)
    return f"{v:.3g}"


def _infix(e: Expr) -> tuple[str, int]:
    if e.op == "var":
        return _INFIX_NAMES[e.value], _PREC["atom"]
    if e.op in ("float", "int"):
        s = _fmt_num(e.value)
        return s, (_PREC["atom"] if not s.startswith("-") else _PREC["neg"])

    def wrap(child: Expr, min_prec: int) -> str:
        s, p = _infix(child)
        return f"({s})" if p < min_prec else s

    a = e.children
    if e.op in ("add", "sub"):
        left = wrap(a[0], 1)
        right, rp = _infix(a[1])
        if e.op == "sub" and rp <= 1:
            right = f"({right})"
        sym = " + " if e.op == "add" else " - "
        if e.op == "add" and right.startswith("-"):
            sym, right = " - ", right[1:]
        return left + sym + right, 1
    if e.op == "mul":
        return f"{wrap(a[0], 2)}*{wrap(a[1], 2)}", 2
    if e.op == "div":
        return f"{wrap(a[0], 2)}/{wrap(a[1], 3)}", 2
    if e.op == "neg":
        return f"-{wrap(a[0], 3)}", 3
    if e.op == "inv":
        return f"1/{wrap(a[0], 5)}", 2
    if e.op in ("sin", "cos"):
        return f"{e.op}({_infix(a[0])[0]})", 5
    if e.op == "pow2":
        return f"{wrap(a[0], 5)}^2", 4
    if e.op == "pow3":
        return f"{wrap(a[0], 5)}^3", 4
    if e.op == "pow":
        return f"{wrap(a[0], 5)}^{wrap(a[1], 5)}", 4
    raise TokenError(f"unknown node {e.op!r}")


_UNARY_FN: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "neg": np.negative, "inv": np.reciprocal, "sin": np.sin, "cos": np.cos,
    "pow2": np.square, "pow3": lambda v: v * v * v,
}
_BINARY_FN: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "pow": np.power,
}


def _evaluate(e: Expr, env: Mapping[str, np.ndarray]):
    if e.op == "var":
        if e.value not in env:
            raise KeyError(f"equation needs variable {e.value!r}, which was not given")
        return env[e.value]
    if e.op in ("float", "int"):
        return float(e.value)
    if e.op in _UNARY_FN:
        return _UNARY_FN[e.op](_evaluate(e.children[0], env))
    return _BINARY_FN[e.op](_evaluate(e.children[0], env), _evaluate(e.children[1], env))


# --------------------------------------------------------------------------- tokens

Tree = Union[Expr, Sequence[str]]


def encode(tree: Tree, bos_eos: bool = False) -> list[int]:
    """Tree (or prefix words) -> token ids."""
    words = tree.prefix() if isinstance(tree, Expr) else list(tree)
    try:
        ids = [TOKEN_TO_ID[w] for w in words]
    except KeyError as err:
        raise TokenError(f"word {err.args[0]!r} is not in the vocabulary") from None
    return [BOS_ID, *ids, EOS_ID] if bos_eos else ids


def ids_to_words(ids: Sequence[int]) -> list[str]:
    words = []
    for i in ids:
        i = int(i)
        if not 0 <= i < VOCAB_SIZE:
            raise TokenError(f"token id {i} outside the vocabulary (0..{VOCAB_SIZE - 1})")
        w = VOCAB[i]
        if w in ("<BOS>", "<EOS>", "<PAD>"):
            continue
        words.append(w)
    return words


def decode(ids: Sequence[int]) -> Expr:
    """Token ids (specials and padding are skipped) -> tree. Raises TokenError if malformed."""
    words = ids_to_words(ids)
    tree, pos = _parse(words, 0)
    if pos != len(words):
        raise TokenError(f"trailing tokens after a complete equation: {words[pos:]}")
    return tree


def _parse(words: list[str], pos: int) -> tuple[Expr, int]:
    if pos >= len(words):
        raise TokenError("token sequence ends in the middle of an equation")
    w = words[pos]
    if w in BINARY_OPS:
        a, pos = _parse(words, pos + 1)
        b, pos = _parse(words, pos)
        return Expr(w, (a, b)), pos
    if w in UNARY_OPS:
        a, pos = _parse(words, pos + 1)
        return Expr(w, (a,)), pos
    if w in ("+", "-"):
        if pos + 3 > len(words):
            raise TokenError("truncated float literal")
        return Expr("float", value=decode_float(words[pos:pos + 3])), pos + 3
    if w in VARIABLES:
        return Expr("var", value=w), pos + 1
    if w in INTEGERS:
        return Expr("int", value=int(w)), pos + 1
    raise TokenError(f"unexpected token {w!r} at position {pos}")


def pad_batch(seqs: Sequence[Sequence[int]], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists with PAD_ID -> (ids int16 (N, L), lengths int16 (N,))."""
    lens = np.array([len(s) for s in seqs], dtype=np.int16)
    L = int(lens.max(initial=0)) if length is None else length
    if lens.size and lens.max() > L:
        raise TokenError(f"a token sequence of length {lens.max()} does not fit in {L}")
    out = np.full((len(seqs), L), PAD_ID, dtype=np.int16)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lens
