"""Tokenising text that contains numbers: xVal and the digit-based baselines.

Design (xVal, Golkar, Pettee et al. 2023, arXiv 2310.02989):

* Every number literal in a text becomes one shared ``[NUM]`` token; its value goes into a
  parallel float32 array (1.0 at every other position). The model scales the ``[NUM]``
  embedding by that value (``jaxfm.nn.number_embed``).
* Values are normalised per *field* into a bounded range (the paper uses [-5, 5]): the
  magnitude must survive the first LayerNorm, which saturates for large |x|. The field of a
  number is the last ``key=`` / ``key:`` (a Python identifier, optionally quoted) written before
  it, or ``#k`` (the k-th number) when there is none. Scales are powers of two, so normalising
  and de-normalising are exact in float32 (an underflow raises instead of losing bits).
* Separators ``", "`` between consecutive numbers are dropped (a numeric list costs one token
  per element) and restored on decoding.
* Baselines (paper Table 1), every number first rounded to 3 significant figures in scientific
  notation with exponents -7..+7 (``|x| < 1e-7`` becomes 0): ``p10`` = sign, three digits,
  exponent (5 tokens); ``p1000`` = sign, three-digit mantissa, exponent (3 tokens); ``fp15`` =
  one token per (sign, mantissa, exponent) triple (27,001 number tokens, zero included).

Text outside numbers is tokenised per character (printable ASCII), as the reference's empty
byte-level BPE does, so any text round-trips. Numbers are parsed with correct float32
rounding and written back in the *canonical* form :func:`format_number` (the shortest string
that reads back to the same float32). Hence ``decode(encode(t)) == t`` exactly for canonical
text (everything the task generators in :mod:`jaxfm.data.number_tasks` write), and for any text
the decoded values are bit-identical and ``encode(decode(encode(t))) == encode(t)``.

Vocabulary layout (ids shared by every encoding, so one model class serves all of them):
``0 [PAD], 1 [BOS], 2 [EOS], 3 [NUM]``, then the 95 printable ASCII characters, then the
encoding's number tokens.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Literal

import numpy as np

Encoding = Literal["xval", "p10", "p1000", "fp15"]
ENCODINGS: tuple[str, ...] = ("xval", "p10", "p1000", "fp15")

PAD, BOS, EOS, NUM = 0, 1, 2, 3
SPECIALS = ("[PAD]", "[BOS]", "[EOS]", "[NUM]")
_CHARS = "".join(chr(c) for c in range(32, 127))
_CHAR_ID = {c: len(SPECIALS) + i for i, c in enumerate(_CHARS)}
TEXT_VOCAB = len(SPECIALS) + len(_CHARS)

_PLACEHOLDER = "\x00"  # stands for one number in a skeleton string; never valid input text
# A number: optional minus (only when not glued to a word, so "x-5" is x, -, 5), digits with an
# optional fraction and exponent; never part of a word ("planet0") or of "1.2.3". A leading
# "+" stays text ("+5" is +, 5): as a sign it could not be written back without ambiguity.
NUMBER_RE = re.compile(r"(?<![\w.])-?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?!\w|\.\d)")
_KEY_RE = re.compile(r"([A-Za-z_]\w*)['\"]?\s*[:=]")
LIST_SEPARATOR = ", "

EXP_MIN, EXP_MAX = -7, 7  # exponent range of the baseline encodings (paper: 3 sig. figs)
_N_EXP = EXP_MAX - EXP_MIN + 1


def parse_float32(literal: str) -> np.float32:
    """The float32 nearest to the decimal ``literal`` (ties to even), without double rounding.

    ``np.float32(float(s))`` rounds twice; it is wrong only when the float64 lands exactly on a
    midpoint between two float32s, which is resolved here with exact rational arithmetic.
    """
    d = float(literal)
    with np.errstate(over="ignore"):
        f = np.float32(d)
    if not np.isfinite(f):
        raise ValueError(f"number {literal!r} overflows float32 (|x| > 3.4e38)")
    if float(f) != d:
        with np.errstate(over="ignore"):  # the neighbour of float32 max is inf: no midpoint
            g = np.nextafter(f, np.float32(math.copysign(np.inf, d - float(f))))
        if (float(f) + float(g)) / 2 == d:  # exact midpoint in float64: decide exactly
            exact = Fraction(literal)
            df, dg = abs(Fraction(float(f)) - exact), abs(Fraction(float(g)) - exact)
            if dg < df or (dg == df and int(g.view(np.uint32)) % 2 == 0):
                f = g
    return np.float32(f)


def format_number(value: float) -> str:
    """Canonical text of a float32: the shortest string that reads back to the same float32.

    Positional for 1e-4 <= |x| < 1e7 (and zero), scientific otherwise: 408, -5.02, 1.5e+07.
    """
    f = np.float32(value)
    if not np.isfinite(f):
        raise ValueError(f"cannot write non-finite number {value!r} as text")
    a = abs(float(f))
    if a == 0 or 1e-4 <= a < 1e7:
        return np.format_float_positional(f, unique=True, trim="-")
    return np.format_float_scientific(f, unique=True, trim="-")


@dataclasses.dataclass(frozen=True)
class Extracted:
    """A text split into its number-free skeleton and its numbers."""

    skeleton: str
    """The text with each number replaced by one placeholder and ", " between numbers removed."""
    values: np.ndarray
    """float32 (n,): the numbers in order of appearance, unnormalised."""
    fields: tuple[str, ...]
    """Field name of each number (the preceding ``key=``, or ``#k``)."""


def _fields(skeleton: str) -> tuple[str, ...]:
    keys = [(m.end(), m.group(1)) for m in _KEY_RE.finditer(skeleton)]
    out, k = [], 0
    for j, pos in enumerate(i for i, c in enumerate(skeleton) if c == _PLACEHOLDER):
        while k < len(keys) and keys[k][0] <= pos:
            k += 1
        out.append(keys[k - 1][1] if k else f"#{j}")
    return tuple(out)


def extract(text: str) -> Extracted:
    """Finds the numbers in ``text`` (see module docstring for what counts as a number)."""
    bad = sorted({c for c in text if c not in _CHAR_ID})
    if bad:
        raise ValueError(f"text contains characters outside printable ASCII: {bad[:5]!r}")
    parts, values, last = [], [], 0
    for m in NUMBER_RE.finditer(text):
        gap = text[last : m.start()]
        if values and gap == LIST_SEPARATOR:  # between two numbers: dropped, restored later
            gap = ""
        parts += [gap, _PLACEHOLDER]
        values.append(parse_float32(m.group()))
        last = m.end()
    parts.append(text[last:])
    skeleton = "".join(p for p in parts if p)
    return Extracted(skeleton, np.asarray(values, np.float32).reshape(-1), _fields(skeleton))


def assemble(skeleton: str, values: Sequence[float]) -> str:
    """Inverse of :func:`extract`: writes canonical numbers into the placeholders."""
    pieces = skeleton.split(_PLACEHOLDER)
    if len(pieces) - 1 != len(values):
        raise ValueError(f"skeleton has {len(pieces) - 1} number slots but {len(values)} values")
    out = [pieces[0]]
    for j, (v, after) in enumerate(zip(values, pieces[1:])):
        out.append(format_number(v))
        if after == "" and j + 1 < len(values):
            after = LIST_SEPARATOR  # consecutive numbers: restore the dropped separator
        out.append(after)
    return "".join(out)


@dataclasses.dataclass(frozen=True)
class FieldScaler:
    """Per-field power-of-two scales that map every field into [-bound, bound]."""

    scales: dict[str, float]
    """Field name -> scale (a power of two); normalised value = value / scale."""

    @classmethod
    def fit(cls, texts: Iterable[str], bound: float = 5.0) -> FieldScaler:
        """Smallest power-of-two scale per field with max |x| / scale <= ``bound``."""
        peak: dict[str, float] = {}
        for text in texts:
            ex = extract(text)
            for f, v in zip(ex.fields, ex.values):
                peak[f] = max(peak.get(f, 0.0), abs(float(v)))
        return cls(
            {
                f: 2.0 ** math.ceil(math.log2(p / bound)) if p > 0 else 1.0
                for f, p in sorted(peak.items())
            }
        )

    def _scale(self, fields: Sequence[str]) -> np.ndarray:
        missing = sorted(set(fields) - set(self.scales))
        if missing:
            raise ValueError(
                f"no scale for field(s) {missing}; known fields: {sorted(self.scales)}"
            )
        return np.asarray([self.scales[f] for f in fields], np.float32).reshape(-1)

    def normalise(self, values: np.ndarray, fields: Sequence[str]) -> np.ndarray:
        """values / scale, exactly (raises when a value would underflow into subnormals)."""
        scale = self._scale(fields)
        out = (values / scale).astype(np.float32)
        lost = (values != 0) & (np.abs(out) < np.finfo(np.float32).tiny)
        if np.any(lost):
            j = int(np.argmax(lost))
            raise ValueError(
                f"field {fields[j]!r}: value {values[j]!r} underflows after dividing "
                f"by its scale {scale[j]!r}; the field's dynamic range is too wide"
            )
        return out

    def denormalise(self, values: np.ndarray, fields: Sequence[str]) -> np.ndarray:
        """Inverse of :meth:`normalise` (exact)."""
        return (np.asarray(values, np.float32) * self._scale(fields)).astype(np.float32)


def sig3(value: float) -> tuple[int, int, int]:
    """(sign 0/1, mantissa 100..999 or 0, exponent) with value ~ (-1)^sign * m/100 * 10^e."""
    if not np.isfinite(value):
        raise ValueError(f"cannot encode non-finite number {value!r}")
    mant, exp = f"{abs(float(value)):.2e}".split("e")
    m, e = int(mant.replace(".", "")), int(exp)
    if m == 0 or e < EXP_MIN:
        return 0, 0, 0
    if e > EXP_MAX:
        raise ValueError(
            f"number {value!r} exceeds the baseline range (|x| < 1e{EXP_MAX + 1}); "
            "normalise it first"
        )
    return int(value < 0), m, e


def unsig3(sign: int, mant: int, exp: int) -> float:
    """Inverse of :func:`sig3`."""
    return (-1.0) ** sign * mant / 100.0 * 10.0**exp


@dataclasses.dataclass(frozen=True)
class Encoded:
    """One tokenised text."""

    tokens: np.ndarray
    """int32 (L,) token ids (no BOS/EOS; see :meth:`NumberCodec.encode`)."""
    values: np.ndarray
    """float32 (L,) normalised number values at [NUM] tokens, 1.0 elsewhere."""
    number_starts: np.ndarray
    """int32 (n,) index of the first token of each number."""
    fields: tuple[str, ...]
    """Field of each number."""


class NumberCodec:
    """Text <-> (tokens, values) for one number encoding.

    Args:
      encoding: ``xval``, ``p10``, ``p1000`` or ``fp15``.
      scaler: per-field normalisation applied before encoding (None: identity).
    """

    def __init__(self, encoding: Encoding = "xval", scaler: FieldScaler | None = None):
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown number encoding {encoding!r}; choose one of {ENCODINGS}")
        self.encoding, self.scaler = encoding, scaler
        base = TEXT_VOCAB
        if encoding == "xval":
            self.tokens_per_number, n_num = 1, 0
        elif encoding == "p10":  # sign (2), digit (10), exponent
            self.tokens_per_number, n_num = 5, 2 + 10 + _N_EXP
        elif encoding == "p1000":  # sign (2), mantissa (000 and 100..999), exponent
            self.tokens_per_number, n_num = 3, 2 + 901 + _N_EXP
        else:  # fp15: zero + every (sign, mantissa, exponent)
            self.tokens_per_number, n_num = 1, 1 + 2 * 900 * _N_EXP
        self.base = base
        self.vocab_size = base + n_num
        self.number_vocab = 1 if encoding == "xval" else n_num

    def __repr__(self) -> str:
        return f"NumberCodec({self.encoding!r}, scaler={self.scaler!r})"

    # -- number <-> token group ----------------------------------------------------------
    def number_tokens(self, value: float) -> list[int]:
        """Token ids of one (normalised) number; for xval the single [NUM]."""
        if self.encoding == "xval":
            return [NUM]
        s, m, e = sig3(value)
        b = self.base
        if self.encoding == "p10":
            digits = [0, 0, 0] if m == 0 else [int(c) for c in str(m)]
            return [b + s] + [b + 2 + d for d in digits] + [b + 12 + e - EXP_MIN]
        if self.encoding == "p1000":
            mid = 0 if m == 0 else m - 99
            return [b + s, b + 2 + mid, b + 2 + 901 + e - EXP_MIN]
        if m == 0:
            return [b]
        return [b + 1 + (s * 900 + (m - 100)) * _N_EXP + (e - EXP_MIN)]

    def read_number(self, tokens: Sequence[int], values: Sequence[float] | None = None) -> float:
        """Value of the number group at the start of ``tokens``; NaN if malformed."""
        t = [int(x) for x in tokens[: self.tokens_per_number]]
        b, n = self.base, len(t)
        if n < self.tokens_per_number:
            return math.nan
        if self.encoding == "xval":
            return float(values[0]) if t[0] == NUM and values is not None else math.nan
        if self.encoding == "p10":
            ok = (
                t[0] - b in (0, 1)
                and all(0 <= x - b - 2 < 10 for x in t[1:4])
                and 0 <= t[4] - b - 12 < _N_EXP
            )
            if not ok:
                return math.nan
            m = int("".join(str(x - b - 2) for x in t[1:4]))
            if m != 0 and m < 100:
                return math.nan
            return unsig3(t[0] - b, m, t[4] - b - 12 + EXP_MIN)
        if self.encoding == "p1000":
            ok = t[0] - b in (0, 1) and 0 <= t[1] - b - 2 < 901 and 0 <= t[2] - b - 903 < _N_EXP
            if not ok:
                return math.nan
            mid = t[1] - b - 2
            return unsig3(t[0] - b, 0 if mid == 0 else mid + 99, t[2] - b - 903 + EXP_MIN)
        k = t[0] - b - 1
        if k == -1:
            return 0.0
        if not 0 <= k < 2 * 900 * _N_EXP:
            return math.nan
        e, sm = k % _N_EXP, k // _N_EXP
        return unsig3(sm // 900, sm % 900 + 100, e + EXP_MIN)

    def _is_number_start(self, token: int) -> bool:
        if self.encoding == "xval":
            return token == NUM
        return token >= self.base and (self.encoding == "fp15" or token - self.base < 2)

    # -- text <-> tokens -------------------------------------------------------------------
    def encode(self, text: str) -> Encoded:
        """Tokenises ``text`` (numbers normalised by the codec's scaler)."""
        ex = extract(text)
        vals = ex.values if self.scaler is None else self.scaler.normalise(ex.values, ex.fields)
        tokens: list[int] = []
        values: list[float] = []
        starts: list[int] = []
        j = 0
        for c in ex.skeleton:
            if c == _PLACEHOLDER:
                starts.append(len(tokens))
                group = self.number_tokens(float(vals[j]))
                tokens += group
                values += [float(vals[j])] if self.encoding == "xval" else [1.0] * len(group)
                j += 1
            else:
                tokens.append(_CHAR_ID[c])
                values.append(1.0)
        return Encoded(
            np.asarray(tokens, np.int32),
            np.asarray(values, np.float32),
            np.asarray(starts, np.int32),
            ex.fields,
        )

    def decode(self, tokens: Sequence[int], values: Sequence[float] | None = None) -> str:
        """Text of ``tokens`` (specials dropped, stops at [EOS]); raises on a malformed number."""
        tokens = [int(t) for t in tokens]
        skeleton, nums, i = [], [], 0
        while i < len(tokens):
            t = tokens[i]
            if t == EOS:
                break
            if self._is_number_start(t):
                v = self.read_number(tokens[i:], None if values is None else values[i:])
                if math.isnan(v):
                    raise ValueError(
                        f"malformed {self.encoding} number at token {i}: "
                        f"{tokens[i : i + self.tokens_per_number]}"
                    )
                skeleton.append(_PLACEHOLDER)
                nums.append(v)
                i += self.tokens_per_number
                continue
            if len(SPECIALS) <= t < TEXT_VOCAB:
                skeleton.append(_CHARS[t - len(SPECIALS)])
            elif t >= TEXT_VOCAB:
                raise ValueError(f"stray {self.encoding} number token {t} at position {i}")
            i += 1
        sk = "".join(skeleton)
        vals = np.asarray(nums, np.float32).reshape(-1)
        if self.scaler is not None:
            vals = self.scaler.denormalise(vals, _fields(sk))
        return assemble(sk, [float(v) for v in vals])
