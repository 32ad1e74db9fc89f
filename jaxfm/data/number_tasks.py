"""Synthetic numeric tasks for the xVal study, with held-out value ranges for OOD tests.

Each sample is one canonical text (see :mod:`jaxfm.data.numbers`) whose *last* number is the
answer that the model must produce after the prompt:

* ``multiplication``: ``"47*83=3901"``, operands with ``digits`` digits (paper: multi-digit
  multiplication).
* ``arithmetic``: ``"3.21+4.5-0.71=7"``, ``operands`` numbers in [0, 10] with two decimals and
  random + / - (paper: multi-operand arithmetic).
* ``orbits``: a structured scientific record ``"M=1.13, a=2.41, e=0.12, q=2.12, P=3.52"``: star
  mass M (solar masses), semi-major axis a (AU), eccentricity e, perihelion distance
  q = a (1 - e) (AU) and Kepler's period P = sqrt(a^3 / M) (years), rounded to 4 significant
  figures. This is a stand-in for the paper's planetary-orbit records with a closed form.

Out of distribution: the band ``[ood_lo, ood_hi)`` of each task's *key variable* range (every
operand for the arithmetic tasks, the semi-major axis for orbits), given as fractions of the
range, never appears in training; the OOD split has at least one key variable in the band.

Arrays (one row per sample, right-padded with [PAD] to the longest sample of all splits,
at most ``max_len``):
``tokens`` int32 (N, L) = [BOS] text [EOS]; ``values`` float32 (N, L) normalised number values
(1 elsewhere); ``loss_mask`` float32 (N, L), 1 where token t is a training target (predicted
from position t-1); ``answer_pos`` int32 (N,), index of the answer's first token; ``answer``
float32 (N,), the exact normalised answer; ``answer_unit`` float32 (N,), the factor that turns
a number read from the tokens into normalised units.

Scaling: only xVal needs the per-field normalisation (its [NUM] embedding is scaled by the
value). The digit baselines encode the numbers as written, as in the paper, so they see the
same 3-significant-figure operands a reader does; their answers are compared after dividing by
the same field scale (``answer_unit``), so every encoding is scored in the same units.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import numpy as np

from jaxfm.data.numbers import (
    BOS,
    EOS,
    PAD,
    Encoding,
    FieldScaler,
    NumberCodec,
    extract,
    format_number,
)

TaskName = Literal["multiplication", "arithmetic", "orbits"]


@dataclasses.dataclass(frozen=True)
class NumberTaskConfig:
    """Which synthetic numeric task, how it is encoded, and how large the splits are."""

    task: TaskName = "arithmetic"
    """multiplication, arithmetic (multi-operand) or orbits (structured records)."""
    encoding: Encoding = "xval"
    """Number encoding: xval, p10, p1000 or fp15."""
    n_train: int = 20000
    """Training samples (in distribution)."""
    n_eval: int = 512
    """Samples in each evaluation split (in distribution, out of distribution)."""
    max_len: int = 48
    """Sequence length in tokens, [BOS] and [EOS] included; longer samples are an error."""
    seed: int = 0
    """Seed of the generator (the splits are disjoint draws of one stream)."""
    bound: float = 5.0
    """Per-field normalisation bound: max |x| / scale <= bound on the training split."""
    train_on: Literal["answer", "all"] = "answer"
    """Loss on the answer tokens (+[EOS]) only, or on every next token of the text."""
    digits: int = 2
    """multiplication: digits per operand."""
    operands: int = 3
    """arithmetic: number of operands."""
    ood_lo: float = 0.4
    """Start of the held-out band, as a fraction of the key variable's range."""
    ood_hi: float = 0.6
    """End of the held-out band, as a fraction of the key variable's range."""


def _in_band(frac: np.ndarray, cfg: NumberTaskConfig) -> bool:
    return bool(np.any((frac >= cfg.ood_lo) & (frac < cfg.ood_hi)))


def _multiplication(rng: np.random.Generator, cfg: NumberTaskConfig) -> tuple[str, bool]:
    lo, hi = 10 ** (cfg.digits - 1), 10**cfg.digits - 1
    a, b = (int(x) for x in rng.integers(lo, hi + 1, size=2))
    frac = (np.asarray([a, b], np.float64) - lo) / (hi - lo)
    return f"{a}*{b}={a * b}", _in_band(frac, cfg)


def _arithmetic(rng: np.random.Generator, cfg: NumberTaskConfig) -> tuple[str, bool]:
    cents = rng.integers(0, 1001, size=cfg.operands)  # operands in [0, 10], 2 decimals
    signs = rng.choice([1, -1], size=cfg.operands - 1)
    text = format_number(cents[0] / 100)
    total = int(cents[0])
    for s, c in zip(signs, cents[1:]):
        text += ("+" if s > 0 else "-") + format_number(c / 100)
        total += int(s) * int(c)
    return f"{text}={format_number(total / 100)}", _in_band(cents / 1000.0, cfg)


def _round_sig(x: float, sig: int) -> float:
    return float(f"{x:.{sig - 1}e}")


def _orbits(rng: np.random.Generator, cfg: NumberTaskConfig) -> tuple[str, bool]:
    a_lo, a_hi = 0.3, 5.0
    m = round(float(rng.uniform(0.5, 2.0)), 2)
    a = round(float(rng.uniform(a_lo, a_hi)), 2)
    e = round(float(rng.uniform(0.0, 0.3)), 3)
    q = _round_sig(a * (1 - e), 4)
    p = _round_sig(np.sqrt(a**3 / m), 4)
    text = ", ".join(
        f"{k}={format_number(v)}" for k, v in (("M", m), ("a", a), ("e", e), ("q", q), ("P", p))
    )
    return text, _in_band(np.asarray([(a - a_lo) / (a_hi - a_lo)]), cfg)


GENERATORS: dict[str, Callable[[np.random.Generator, NumberTaskConfig], tuple[str, bool]]] = {
    "multiplication": _multiplication,
    "arithmetic": _arithmetic,
    "orbits": _orbits,
}


def generate_texts(cfg: NumberTaskConfig) -> dict[str, list[str]]:
    """Texts of the ``train``, ``eval_id`` and ``eval_ood`` splits (rejection sampling)."""
    if cfg.task not in GENERATORS:
        raise ValueError(f"unknown number task {cfg.task!r}; choose one of {sorted(GENERATORS)}")
    if not 0.0 <= cfg.ood_lo < cfg.ood_hi <= 1.0:
        raise ValueError(f"need 0 <= ood_lo < ood_hi <= 1, got {cfg.ood_lo}, {cfg.ood_hi}")
    gen, rng = GENERATORS[cfg.task], np.random.default_rng(cfg.seed)
    want = {"train": cfg.n_train, "eval_id": cfg.n_eval, "eval_ood": cfg.n_eval}
    out: dict[str, list[str]] = {k: [] for k in want}
    for _ in range(100 * sum(want.values()) + 1000):
        text, ood = gen(rng, cfg)
        # in-distribution draws fill train first, then eval_id: disjoint i.i.d. draws
        split = "eval_ood" if ood else ("train" if len(out["train"]) < cfg.n_train else "eval_id")
        if len(out[split]) < want[split]:
            out[split].append(text)
        if all(len(out[k]) == want[k] for k in want):
            return out
    raise ValueError(
        f"could not draw {want} samples of {cfg.task!r} with OOD band "
        f"[{cfg.ood_lo}, {cfg.ood_hi}): the band is too narrow or too wide"
    )


def encode_texts(
    texts: list[str],
    codec: NumberCodec,
    scaler: FieldScaler,
    max_len: int,
    train_on: str = "answer",
) -> dict[str, np.ndarray]:
    """Stacks encoded texts into the padded arrays described in the module docstring.

    ``scaler`` defines the normalised units of ``answer`` (for xVal it is the codec's own).
    """
    n = len(texts)
    out = {
        "tokens": np.full((n, max_len), PAD, np.int32),
        "values": np.ones((n, max_len), np.float32),
        "loss_mask": np.zeros((n, max_len), np.float32),
        "answer_pos": np.zeros((n,), np.int32),
        "answer": np.zeros((n,), np.float32),
        "answer_unit": np.ones((n,), np.float32),
    }
    for i, text in enumerate(texts):
        enc = codec.encode(text)
        length = len(enc.tokens) + 2
        if length > max_len:
            raise ValueError(f"sample {i} needs {length} tokens > max_len={max_len}: {text!r}")
        if len(enc.number_starts) == 0:
            raise ValueError(f"sample {i} has no number to answer: {text!r}")
        out["tokens"][i, 0], out["tokens"][i, length - 1] = BOS, EOS
        out["tokens"][i, 1 : length - 1] = enc.tokens
        out["values"][i, 1 : length - 1] = enc.values
        pos = int(enc.number_starts[-1]) + 1
        out["answer_pos"][i] = pos
        start = pos if train_on == "answer" else 1
        out["loss_mask"][i, start:length] = 1.0
        ex = extract(text)
        field = ex.fields[-1:]
        out["answer"][i] = scaler.normalise(ex.values[-1:], field)[0]
        if codec.scaler is None:  # the tokens carry the raw number
            out["answer_unit"][i] = 1.0 / scaler.scales[field[0]]
    return out


def make_splits(
    cfg: NumberTaskConfig, texts: dict[str, list[str]] | None = None
) -> tuple[NumberCodec, dict[str, dict[str, np.ndarray]], dict[str, list[str]]]:
    """Codec, arrays and texts of every split; the scaler is fitted on the training texts.

    ``texts`` (from :func:`generate_texts` with the same config) skips the generation, e.g. to
    encode one draw of a task in several encodings.
    """
    if cfg.train_on not in ("answer", "all"):
        raise ValueError(f"train_on must be 'answer' or 'all', got {cfg.train_on!r}")
    texts = generate_texts(cfg) if texts is None else texts
    scaler = FieldScaler.fit(texts["train"], cfg.bound)
    codec = NumberCodec(cfg.encoding, scaler if cfg.encoding == "xval" else None)
    arrays = {
        k: encode_texts(v, codec, scaler, cfg.max_len, cfg.train_on) for k, v in texts.items()
    }
    # trim the padding: rows end at the longest sample of any split, so compact encodings
    # also train on shorter sequences (their real compute advantage)
    used = max(int((a["tokens"] != PAD).sum(1).max()) for a in arrays.values())
    arrays = {
        k: {n: v[:, :used] if v.ndim == 2 else v for n, v in a.items()} for k, a in arrays.items()
    }
    return codec, arrays, texts


def read_answers(
    codec: NumberCodec,
    tokens: np.ndarray,
    values: np.ndarray,
    answer_pos: np.ndarray,
    answer_unit: np.ndarray,
) -> np.ndarray:
    """Normalised answers read from (generated) token rows; NaN where no valid number stands.

    Args:
      codec: the encoding the rows are written in.
      tokens, values: (N, L) rows, e.g. completed by ``jaxfm.models.xval.generate``.
      answer_pos: (N,) index of each answer's first token.
      answer_unit: (N,) factor from the codec's number units to normalised units.
    """
    out = np.full(len(tokens), np.nan, np.float64)
    for i, p in enumerate(np.asarray(answer_pos)):
        out[i] = codec.read_number(tokens[i, p:], values[i, p:]) * float(answer_unit[i])
    return out
