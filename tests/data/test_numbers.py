"""Tokeniser for text with numbers: exact round trips, fields, scaling, baseline encodings."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxfm.data.numbers import (
    ENCODINGS,
    NUM,
    FieldScaler,
    NumberCodec,
    extract,
    format_number,
    parse_float32,
    sig3,
)

finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
SEPARATORS = [", ", " ", "=", "*", "+", "-", " x=", "; ", "[", "], y: ", "'planet0': ", "/"]


def _nearest_float32(literal: str) -> np.float32:
    """Independent reference: the float32 nearest to the exact rational value of ``literal``."""
    exact = Fraction(literal)
    f = np.float32(float(literal))
    cands = [f, np.nextafter(f, np.float32(np.inf)), np.nextafter(f, np.float32(-np.inf))]
    cands = [c for c in cands if np.isfinite(c)]
    dist = [abs(Fraction(float(c)) - exact) for c in cands]
    best = min(dist)
    ties = [c for c, d in zip(cands, dist) if d == best]
    return min(ties, key=lambda c: int(c.view(np.uint32)) % 2)  # ties to even


@settings(max_examples=300, deadline=None)
@given(finite32)
def test_format_then_parse_is_bit_exact(x):
    f = np.float32(x)
    assert parse_float32(format_number(f)).view(np.uint32) == f.view(np.uint32)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**12), st.integers(0, 12), st.integers(-45, 38), st.booleans())
def test_parse_float32_rounds_correctly(mantissa, point, exp, neg):
    digits = str(mantissa).rjust(point + 1, "0")
    literal = (
        ("-" if neg else "")
        + digits[: len(digits) - point]
        + "."
        + (digits[len(digits) - point :] or "0")
        + f"e{exp}"
    )
    if abs(Fraction(literal)) >= Fraction(float(np.finfo(np.float32).max)):
        return
    assert parse_float32(literal) == _nearest_float32(literal)


# -- the round-trip property: canonical texts decode to themselves, exactly -----------------


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(SEPARATORS), finite32), min_size=1, max_size=8),
    st.sampled_from(["", "T: ", "'k': ", "{"]),
    st.sampled_from(["", ".", " end", "}"]),
)
def test_canonical_text_round_trips_exactly(pairs, head, tail):
    # the first number follows the head directly: a bare "+"/"-" before it would be its sign
    text = (
        head
        + "".join((sep if i else "") + format_number(v) for i, (sep, v) in enumerate(pairs))
        + tail
    )
    codec = NumberCodec("xval")
    enc = codec.encode(text)
    assert codec.decode(enc.tokens, enc.values) == text
    want = np.asarray([v for _, v in pairs], np.float32)
    assert np.array_equal(enc.values[enc.tokens == NUM].view(np.uint32), want.view(np.uint32))


TEXT = st.text(alphabet="0123456789.,-+eE x=:'[]_ab", max_size=40)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_any_text_decodes_to_a_fixed_point(text):
    """For arbitrary text, decode is an exact inverse on the image of encode."""
    codec = NumberCodec("xval")
    try:
        enc = codec.encode(text)
    except ValueError as e:  # e.g. "9e99": too large for float32, reported, not mangled
        assert "overflows float32" in str(e)
        return
    canon = codec.decode(enc.tokens, enc.values)
    again = codec.encode(canon)
    assert np.array_equal(again.tokens, enc.tokens)
    assert np.array_equal(again.values.view(np.uint32), enc.values.view(np.uint32))
    assert codec.decode(again.tokens, again.values) == canon


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "q"]), st.floats(1e-3, 1e6).map(np.float32), st.booleans()
        ),
        min_size=1,
        max_size=6,
    )
)
def test_scaled_round_trip_is_exact_and_bounded(items):
    text = ", ".join(f"{k}={format_number(-v if neg else v)}" for k, v, neg in items)
    scaler = FieldScaler.fit([text], bound=5.0)
    codec = NumberCodec("xval", scaler)
    enc = codec.encode(text)
    assert codec.decode(enc.tokens, enc.values) == text
    nums = enc.values[enc.tokens == NUM]
    assert np.all(np.abs(nums) <= 5.0)
    for f, s in scaler.scales.items():
        assert math.log2(s) == int(math.log2(s)), f"scale of {f} is not a power of two"


# -- what counts as a number, fields and separators ----------------------------------------


def test_quoted_keys_and_words_keep_their_digits():
    ex = extract("{'planet0': 1.5, 'x2': -3e-2, v1=4}")
    assert ex.values.tolist() == [1.5, np.float32(-0.03), 4.0]
    assert ex.fields == ("planet0", "x2", "v1")
    assert ex.skeleton.count("planet0") == 1


def test_list_separators_are_dropped_and_restored():
    codec = NumberCodec("xval")
    text = "x=[1.25, -2, 3], y=4"
    enc = codec.encode(text)
    nums = np.flatnonzero(enc.tokens == NUM)
    assert nums[1] == nums[0] + 1 and nums[2] == nums[1] + 1  # one token per list element
    assert codec.decode(enc.tokens, enc.values) == text
    assert enc.fields == ("x", "x", "x", "y")


def test_signs_glued_to_words_are_operators():
    ex = extract("x-5 3-4 =-2 1.2.3")
    assert ex.values.tolist() == [5.0, 3.0, 4.0, -2.0]  # "1.2.3" is not a number
    assert extract("12*34=408").fields == ("#0", "#1", "#2")


def test_bad_input_errors_name_the_problem():
    with pytest.raises(ValueError, match="overflows float32"):
        extract("x=1e39")
    with pytest.raises(ValueError, match="printable ASCII"):
        extract("température=3")
    with pytest.raises(ValueError, match="unknown number encoding"):
        NumberCodec("p100")
    with pytest.raises(ValueError, match="no scale for field"):
        NumberCodec("xval", FieldScaler({"a": 1.0})).encode("b=2")
    with pytest.raises(ValueError, match="underflows"):
        NumberCodec("xval", FieldScaler({"a": 2.0**100})).encode("a=1e-30")


# -- baselines -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding,per_number,numbers",
    [("xval", 1, 1), ("p10", 5, 27), ("p1000", 3, 918), ("fp15", 1, 27001)],
)
def test_token_counts_and_vocabularies(encoding, per_number, numbers):
    codec = NumberCodec(encoding)
    enc = codec.encode("a=1.5, b=-0.25")
    assert codec.tokens_per_number == per_number and codec.number_vocab == numbers
    assert len(enc.tokens) == len("a=, b=") + 2 * per_number
    assert enc.tokens.max() < codec.vocab_size


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["p10", "p1000", "fp15"]),
    st.floats(1e-7, 9.99e7).map(np.float32),
    st.booleans(),
)
def test_baselines_round_trip_to_three_significant_figures(encoding, x, neg):
    v = float(-x if neg else x)
    codec = NumberCodec(encoding)
    enc = codec.encode(f"v={format_number(v)}")
    back = extract(codec.decode(enc.tokens)).values[0]
    # 3 significant figures: relative error <= half a unit in the third digit, 0.5/100,
    # plus float32 rounding of the decoded value (~6e-8).
    assert abs(back - v) <= 5e-3 * abs(v) * (1 + 1e-6)
    assert np.array_equal(codec.encode(codec.decode(enc.tokens)).tokens, enc.tokens)


def test_sig3_zero_and_range():
    assert sig3(0.0) == (0, 0, 0) and sig3(3e-8) == (0, 0, 0)
    assert sig3(-6.02e-1) == (1, 602, -1)
    with pytest.raises(ValueError, match="exceeds the baseline range"):
        sig3(2e8)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_read_number_rejects_malformed_groups(encoding):
    codec = NumberCodec(encoding)
    enc = codec.encode("3.25")
    assert codec.read_number(enc.tokens, enc.values) == pytest.approx(3.25, rel=5e-3)
    text_token = int(codec.encode("a").tokens[0])
    assert math.isnan(codec.read_number([text_token] * 5, [1.0] * 5))
    if encoding == "fp15":
        return  # every fp15 number token is a whole number: nothing can be cut short
    with pytest.raises(ValueError, match="malformed"):
        if encoding == "xval":  # a [NUM] without its value
            codec.decode(enc.tokens, None)
        else:  # a number group cut short by a text token
            codec.decode([int(enc.tokens[0])] + [text_token] * 4, [1.0] * 5)
