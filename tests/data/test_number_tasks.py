"""Synthetic numeric tasks: correct answers, disjoint held-out bands, array layout."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jaxfm.data.number_tasks import NumberTaskConfig, generate_texts, make_splits, read_answers
from jaxfm.data.numbers import BOS, EOS, NUM, PAD, extract


def _small(**kw) -> NumberTaskConfig:
    return NumberTaskConfig(n_train=300, n_eval=60, max_len=48, **kw)


def test_multiplication_answers_and_held_out_band():
    cfg = _small(task="multiplication", digits=2)
    texts = generate_texts(cfg)
    for split, want_ood in (("train", False), ("eval_id", False), ("eval_ood", True)):
        for t in texts[split]:
            a, b, c = extract(t).values
            assert a * b == c and 10 <= a <= 99 and 10 <= b <= 99
            frac = (np.asarray([a, b]) - 10) / 89
            assert bool(np.any((frac >= 0.4) & (frac < 0.6))) == want_ood, (split, t)
    assert not set(texts["train"]) & set(texts["eval_ood"])


def test_arithmetic_answers_are_exact_decimal_sums():
    texts = generate_texts(_small(task="arithmetic", operands=4))
    for t in texts["train"][:100]:
        lhs, rhs = t.split("=")
        total = sum(int(round(float(x) * 100)) for x in lhs.replace("-", "+-").split("+"))
        assert int(round(float(rhs) * 100)) == total, t


def test_orbit_records_obey_kepler():
    texts = generate_texts(_small(task="orbits"))
    for t in texts["eval_ood"]:
        ex = extract(t)
        rec = dict(zip(ex.fields, ex.values.astype(np.float64)))
        assert ex.fields == ("M", "a", "e", "q", "P")
        assert math.isclose(rec["P"], math.sqrt(rec["a"] ** 3 / rec["M"]), rel_tol=6e-4)
        assert math.isclose(rec["q"], rec["a"] * (1 - rec["e"]), rel_tol=6e-4)
        assert 0.3 + 0.4 * 4.7 - 1e-6 <= rec["a"] < 0.3 + 0.6 * 4.7 + 1e-6  # held-out band


@pytest.mark.parametrize("encoding", ["xval", "p10"])
@pytest.mark.parametrize("train_on", ["answer", "all"])
def test_arrays_layout(encoding, train_on):
    cfg = _small(task="arithmetic", encoding=encoding, train_on=train_on)
    codec, arrays, texts = make_splits(cfg)
    a = arrays["eval_ood"]
    longest = max(int((x["tokens"] != PAD).sum(1).max()) for x in arrays.values())
    assert a["tokens"].shape == (60, longest) and longest <= 48 and a["tokens"].dtype == np.int32
    assert a["values"].dtype == np.float32 and np.all(a["tokens"][:, 0] == BOS)
    for i in range(60):
        row, pos = a["tokens"][i], int(a["answer_pos"][i])
        end = int(np.flatnonzero(row == EOS)[0])
        assert a["values"].shape == a["loss_mask"].shape == (60, longest)
        assert np.all(row[end + 1 :] == PAD)
        prompt = codec.decode(row[1:], a["values"][i, 1:]).split("=")[0]
        assert prompt == texts["eval_ood"][i].split("=")[0]
        got = codec.read_number(row[pos:], a["values"][i, pos:]) * a["answer_unit"][i]
        # xVal carries the float32 answer exactly; baselines 3 significant figures (plus the
        # float32 rounding of answer_unit * value, ~1e-7 relative)
        tol = 0.0 if encoding == "xval" else 5.01e-3 * abs(a["answer"][i])
        assert abs(got - a["answer"][i]) <= tol
        assert end == pos + codec.tokens_per_number  # the answer is the last thing before EOS
        mask = a["loss_mask"][i]
        first = pos if train_on == "answer" else 1
        assert np.all(mask[first : end + 1] == 1) and mask.sum() == end + 1 - first
    if encoding == "xval":
        assert np.all(a["values"][a["tokens"] != NUM] == 1.0)
        assert np.all(np.abs(arrays["train"]["values"]) <= cfg.bound)


def test_bad_configs_fail_clearly():
    with pytest.raises(ValueError, match="max_len"):
        make_splits(
            NumberTaskConfig(task="orbits", encoding="p10", n_train=10, n_eval=5, max_len=20)
        )
    with pytest.raises(ValueError, match="unknown number task"):
        generate_texts(_small(task="sorting"))
    with pytest.raises(ValueError, match="ood_lo"):
        generate_texts(_small(task="orbits", ood_lo=0.7, ood_hi=0.2))


def test_read_answers_recovers_the_targets_and_flags_garbage():
    for encoding in ("xval", "p1000"):
        codec, arrays, _ = make_splits(_small(task="orbits", encoding=encoding))
        a = arrays["eval_id"]
        got = read_answers(codec, a["tokens"], a["values"], a["answer_pos"], a["answer_unit"])
        # xVal: exact float32; p1000: 3 significant figures (+ float32 rounding)
        rtol = 0.0 if encoding == "xval" else 5.01e-3
        np.testing.assert_allclose(got, a["answer"], rtol=rtol, atol=0)
        garbage = a["tokens"].copy()
        garbage[np.arange(len(garbage)), a["answer_pos"]] = EOS
        assert np.all(
            np.isnan(read_answers(codec, garbage, a["values"], a["answer_pos"], a["answer_unit"]))
        )
