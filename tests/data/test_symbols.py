"""Tokenizer and expression trees (lemon_pl.data.symbols).

Reference facts: shared/reference/families.md (beside the checkout), section 2 (vocabulary of 1,098 ids,
1,094 distinct; floats as sign / 3-digit mantissa / exponent read from ``%.2e``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lemon_pl.data import symbols as S
from lemon_pl.data.families import get_family, list_families
from lemon_pl.data.symbols import (
    BOS_ID, EOS_ID, PAD_ID, PLACEHOLDER_ID, TOKEN_TO_ID, VOCAB, VOCAB_SIZE, Expr, TokenError,
    chain, decode, decode_float, encode, encode_float, ids_to_words, integer, num, op, pad_batch,
    round_sig, var,
)

# --------------------------------------------------------------------------- vocabulary


def test_vocabulary_size_and_layout():
    assert VOCAB_SIZE == len(VOCAB) == 1098
    assert len(set(VOCAB)) == 1094  # the 4 specials appear twice
    # equation words: 4 specials + 11 operators + 41 integers + CONSTANT + 9 variables + 5 markers
    assert len(S.EQUATION_WORDS) == 71
    assert len(S.OPERATORS) == 11 and len(S.INTEGERS) == 41 and len(S.VARIABLES) == 9
    assert len(S.MARKERS) == 5
    # float words: 4 specials + 2 signs + 1000 mantissas + 21 exponents
    assert len(S.FLOAT_WORDS) == 1027
    assert VOCAB[:4] == S.SPECIALS == VOCAB[71:75]
    assert (BOS_ID, EOS_ID, PAD_ID, PLACEHOLDER_ID) == (0, 1, 2, 3)
    # first copy of the specials wins; every other word maps back to its own position
    assert TOKEN_TO_ID["<PAD>"] == 2
    for i, w in enumerate(VOCAB):
        if w not in S.SPECIALS:
            assert TOKEN_TO_ID[w] == i
    assert len(TOKEN_TO_ID) == 1094
    for w in ("+", "-", "N000", "N999", "E-10", "E10", "u_0", "uxxxx_0", "x", "-20", "20", "CONSTANT"):
        assert w in TOKEN_TO_ID
    assert VOCAB[TOKEN_TO_ID["+"]] == "+" and TOKEN_TO_ID["+"] == 75


# --------------------------------------------------------------------------- floats


@pytest.mark.parametrize(
    "value, words",
    [
        (0.00303, ["+", "N303", "E-5"]),  # reference example (eps / pi rounded)
        (1.0, ["+", "N100", "E-2"]),  # reference example (c_t = 1)
        (0.5, ["+", "N500", "E-3"]),
        (20.0, ["+", "N200", "E-1"]),
        (265.0, ["+", "N265", "E0"]),
        (-0.0254, ["-", "N254", "E-4"]),
        (0.0, ["+", "N000", "E0"]),
        (9.996, ["+", "N100", "E-1"]),  # %.2e carries into the exponent
        (1.234567e-8, ["+", "N123", "E-10"]),
    ],
)
def test_encode_float_examples(value, words):
    assert encode_float(value) == words
    assert decode_float(words) == pytest.approx(float(f"{value:.3g}"), rel=1e-15, abs=0)


def test_encode_float_rejects_out_of_range_and_non_finite():
    for bad in (1e-12, 9.9e-9, 9.996e12, 1e13, math.inf, -math.inf, math.nan):
        with pytest.raises(TokenError):
            encode_float(bad)
    assert encode_float(1e-8) == ["+", "N100", "E-10"]
    assert encode_float(9.99e12) == ["+", "N999", "E10"]


def test_decode_float_rejects_malformed():
    for bad in (["N303", "+", "E-5"], ["+", "E-5", "N303"], ["*", "N303", "E-5"]):
        with pytest.raises(TokenError):
            decode_float(bad)


def test_round_sig_three_significant_digits_and_idempotent():
    rng = np.random.default_rng(0)
    # representable range: N100 E-10 = 1e-8 .. N999 E10 = 9.99e12
    vals = np.concatenate([10.0 ** rng.uniform(-8, 12.99, 400), -(10.0 ** rng.uniform(-8, 12.99, 100)),
                           [0.0, 1.0, 0.0027, 0.0033, 0.0198, 0.0242, 1e-3, 0.45, 0.55]])
    for v in vals:
        r = round_sig(v)
        assert r == float(f"{v:.3g}")
        assert round_sig(r) == r  # idempotent, no binary drift
        assert encode_float(r) == encode_float(v)
        if v != 0:
            assert abs(r - v) <= 0.5e-2 * abs(v) * (1 + 1e-12)


# --------------------------------------------------------------------------- trees and tokens


def test_prefix_of_a_small_tree():
    tree = chain((1, num(2.0) * var("ut_0")), (1, var("u_0") * var("ux_0")),
                 (1, num(0.022**2) * var("uxxx_0")))
    assert tree.prefix() == ["add", "add", "mul", "+", "N200", "E-2", "ut_0", "mul", "u_0", "ux_0",
                             "mul", "+", "N484", "E-6", "uxxx_0"]
    assert tree.infix() == "2*u_t + u*u_x + 0.000484*u_xxx"
    ids = encode(tree)
    assert ids_to_words(ids) == tree.prefix()
    assert encode(tree, bos_eos=True) == [BOS_ID, *ids, EOS_ID]
    assert encode(tree.prefix()) == ids


@pytest.mark.parametrize("name", list_families())
def test_family_tree_roundtrip(name):
    fam = get_family(name)
    rng = np.random.default_rng(123)
    for _ in range(3):
        p = fam.sample_params(rng)
        tree = fam.tree(p)
        ids = fam.tokens(p)
        assert ids == encode(tree)
        assert all(isinstance(i, int) and 0 <= i < VOCAB_SIZE for i in ids)
        assert BOS_ID not in ids and EOS_ID not in ids and PAD_ID not in ids
        back = decode(ids)
        assert back == tree
        assert encode(back) == ids
        assert back.infix() == tree.infix()
        # specials (either copy) and padding are skipped
        assert decode([BOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID]) == tree
        assert decode([71, *ids, 72, 73]) == tree
        # physical-time tree round-trips as well
        phys = fam.tree(p, stored_time=False)
        assert decode(encode(phys)) == phys


def test_terms_and_evaluate():
    u = np.linspace(-1.0, 1.0, 7)
    env = {"u_0": u, "ux_0": 2 * u, "ut_0": 3 * u}
    tree = chain((1, var("ut_0")), (-1, num(0.5) * var("u_0")), (1, op("sin", var("ux_0"))))
    terms = tree.terms()
    assert len(terms) == 3
    np.testing.assert_allclose(terms[1].evaluate(env), -0.5 * u)
    total = sum(t.evaluate(env) for t in terms)
    np.testing.assert_allclose(total, tree.evaluate(env))
    np.testing.assert_allclose(tree.evaluate(env), 3 * u - 0.5 * u + np.sin(2 * u))
    # sub of an add chain negates every term of the right operand
    t2 = var("u_0") - (var("ux_0") + var("ut_0"))
    np.testing.assert_allclose(sum(t.evaluate(env) for t in t2.terms()), u - 2 * u - 3 * u)
    e = op("pow", var("u_0"), integer(3)) + op("pow2", var("u_0")) + op("pow3", var("ux_0"))
    np.testing.assert_allclose(e.evaluate(env), u**3 + u**2 + 8 * u**3)
    with pytest.raises(KeyError):
        var("uxx_0").evaluate(env)


def test_builders_validate():
    with pytest.raises(TokenError):
        var("v_0")
    with pytest.raises(TokenError):
        integer(21)
    with pytest.raises(TokenError):
        op("tan", var("u_0"))
    with pytest.raises(TokenError):
        op("add", var("u_0"))
    with pytest.raises(TokenError):
        encode(["add", "u_0", "not_a_word"])
    assert num(0.0030349).value == 0.00303


# --------------------------------------------------------------------------- malformed sequences


def _heat_ids():
    return get_family("heat").tokens({"nu": 0.00303})


def test_decode_truncated_raises():
    ids = _heat_ids()
    assert ids_to_words(ids) == ["sub", "mul", "+", "N100", "E-2", "ut_0", "mul", "+", "N303", "E-5", "uxx_0"]
    for cut in range(0, len(ids)):
        with pytest.raises(TokenError):
            decode(ids[:cut])
    with pytest.raises(TokenError):  # a float literal cut in the middle
        decode(encode(["mul", "+", "N303"]))


def test_decode_unknown_id_raises():
    ids = _heat_ids()
    for bad in (VOCAB_SIZE, 5000, -1):
        with pytest.raises(TokenError):
            decode([*ids[:3], bad, *ids[3:]])
    with pytest.raises(TokenError):
        ids_to_words([VOCAB_SIZE])


def test_decode_trailing_tokens_raise():
    ids = _heat_ids()
    with pytest.raises(TokenError, match="trailing"):
        decode(ids + [TOKEN_TO_ID["u_0"]])
    with pytest.raises(TokenError):
        decode(ids + ids)


def test_decode_rejects_non_equation_words():
    for w in ("<PLACEHOLDER>", "CONSTANT", "|", "INT+", "N303", "E-5"):
        with pytest.raises(TokenError):
            decode(encode(["add", "u_0", w]))


def test_decode_token_is_token_error_subclass_of_value_error():
    assert issubclass(TokenError, ValueError)


# --------------------------------------------------------------------------- padding


def test_pad_batch():
    seqs = [[5, 6, 7], [8], []]
    ids, lens = pad_batch(seqs)
    assert ids.dtype == np.int16 and lens.dtype == np.int16
    assert ids.shape == (3, 3)
    np.testing.assert_array_equal(lens, [3, 1, 0])
    np.testing.assert_array_equal(ids, [[5, 6, 7], [8, PAD_ID, PAD_ID], [PAD_ID] * 3])
    ids, lens = pad_batch(seqs, length=6)
    assert ids.shape == (3, 6) and np.all(ids[:, 3:] == PAD_ID)
    with pytest.raises(TokenError):
        pad_batch(seqs, length=2)
    ids, lens = pad_batch([])
    assert ids.shape == (0, 0) and lens.shape == (0,)


def test_pad_batch_of_family_tokens_decodes_back():
    seqs, trees = [], []
    rng = np.random.default_rng(5)
    for name in list_families():
        fam = get_family(name)
        p = fam.sample_params(rng)
        seqs.append(fam.tokens(p))
        trees.append(fam.tree(p))
    ids, lens = pad_batch(seqs, length=64)
    assert ids.shape == (19, 64)
    for row, n, tree in zip(ids, lens, trees):
        assert decode(row.tolist()) == tree  # padding is ignored
        assert decode(row[:n].tolist()) == tree


# --------------------------------------------------------------------------- infix strings


def test_infix_strings_of_families():
    assert get_family("heat").equation({"nu": 0.00303}) == "u_t - 0.00303*u_xx = 0"
    assert get_family("heat").tree({"nu": 0.00303}).infix() == "1*u_t - 0.00303*u_xx"
    assert get_family("kdv").equation({"delta": 0.022}) == "u_t + u*u_x + 0.000484*u_xxx = 0"
    assert get_family("kdv").tree({"delta": 0.022}).infix() == "2*u_t + u*u_x + 0.000484*u_xxx"
    assert (get_family("burgers").equation({"eps": 0.01, "k": 1.0})
            == "u_t + 1*u*u_x - 0.00318*u_xx = 0")
    assert (get_family("Klein_Gordon").tree({"c": 1.0, "m": 0.1}).infix()
            == "4*u_tt - 1*u_xx + 0.01*u")
    assert (get_family("diff_bistablereact_1D").equation({"nu": 0.003, "rho": 1.0, "a": 0.25})
            == "u_t - 0.003*u_xx - 1*u*(1 - u)*(u - 0.25) = 0")
    assert (get_family("porous_medium").equation({"m": 3})
            == "u_t - 3*u^2*u_xx - 6*u*u_x^2 = 0")


def test_infix_precedence():
    u, ux = var("u_0"), var("ux_0")
    assert (u - (ux + u)).infix() == "u - (u_x + u)"
    assert ((u - ux) - u).infix() == "u - u_x - u"
    assert (-(u + ux)).infix() == "-(u + u_x)"
    assert (u + num(-2.0) * ux).infix() == "u - 2*u_x"
    assert op("pow2", op("inv", u)).infix() == "(1/u)^2"
    assert op("pow2", u + ux).infix() == "(u + u_x)^2"
    assert op("cos", integer(10) * var("x")).infix() == "cos(10*x)"


def test_expr_is_hashable_value_type():
    a = num(0.5) * var("u_0")
    b = num(0.5) * var("u_0")
    assert a == b and hash(a) == hash(b)
    assert isinstance(a, Expr)
