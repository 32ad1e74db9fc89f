"""Tuning tables: lookup order, user table over the shipped one, clear errors, the autotuner.

Every expectation is written out here (tiny tables in ``tmp_path``), never read back from the
table the code reads.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from kernels.flash_attention import autotune, tuning


def _entry(bq, bk=None, warps=4, stages=2):
    bk = bq if bk is None else bk
    return {
        "block_q": bq,
        "block_k": bk,
        "block_q_bwd": bq,
        "block_k_bwd": bk,
        "num_warps": warps,
        "num_stages": stages,
    }


def _bs(bq, bk=None, warps=4, stages=2):
    return tuning.BlockSizes(**_entry(bq, bk, warps, stages))


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A small shipped table standing in for the package's one; no user table from the env."""
    path = tmp_path / "shipped.json"
    path.write_text(
        json.dumps(
            {
                "default": {
                    "pallas": {"default": _entry(64), "d256": _entry(32, warps=8)},
                    "triton": {"default": _entry(64, 32)},
                },
                "GPU X": {"pallas": {"d128": _entry(128, 64, warps=8, stages=3)}},
            }
        )
    )
    monkeypatch.setattr(tuning, "SHIPPED_TABLE_PATH", str(path))
    monkeypatch.delenv(tuning.TABLE_ENV, raising=False)
    return path


def test_lookup_order(shipped):
    get = tuning.get_block_sizes
    assert get("pallas", 128, kind="GPU X") == _bs(128, 64, warps=8, stages=3)  # kind + D
    assert get("pallas", 64, kind="GPU X") == _bs(64)  # kind lacks D: default kind's default
    assert get("pallas", 256, kind="GPU X") == _bs(32, warps=8)  # default kind's D entry
    assert get("pallas", 96, kind="no such device") == _bs(64)
    assert get("triton", 128, kind="GPU X") == _bs(64, 32)  # kind has no triton entries


def test_empty_impl_falls_back_to_block_sizes_defaults(shipped):
    shipped.write_text(json.dumps({"default": {"pallas": {}}}))
    assert tuning.get_block_sizes("triton", 64, kind="any") == tuning.BlockSizes()
    assert tuning.BlockSizes() == _bs(64)


def test_user_table_overrides_shipped_entry_by_entry(shipped, tmp_path, monkeypatch):
    user = tmp_path / "user.json"
    user.write_text(
        json.dumps(
            {
                "GPU X": {"pallas": {"d64": _entry(16)}},
                "default": {"pallas": {"d256": _entry(16, 32)}},
            }
        )
    )
    get = tuning.get_block_sizes
    assert get("pallas", 64, kind="GPU X", table=str(user)) == _bs(16)  # new entry
    assert get("pallas", 128, kind="GPU X", table=str(user)) == _bs(128, 64, warps=8, stages=3)
    assert get("pallas", 256, kind="other", table=str(user)) == _bs(16, 32)  # replaced
    assert get("pallas", 64, kind="GPU X") == _bs(64)  # without the user table: shipped only
    monkeypatch.setenv(tuning.TABLE_ENV, str(user))
    assert get("pallas", 64, kind="GPU X") == _bs(16)
    # A rewritten user table is read again (the cache is keyed on the file's mtime).
    user.write_text(json.dumps({"GPU X": {"pallas": {"d64": _entry(32)}}}))
    st = os.stat(user)
    os.utime(user, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert get("pallas", 64, kind="GPU X") == _bs(32)


@pytest.mark.parametrize(
    "text,match",
    [
        ("{not json", r"not valid JSON \(line 1, column 2"),
        ("[1, 2]", "expected a JSON object of device kinds"),
        ('{"GPU X": {"cuda": {}}}', r"GPU X/cuda: impl must be in"),
        ('{"GPU X": {"pallas": {"d64": {"block_q": 48}}}}', r"bad entry GPU X/pallas/d64: .*48"),
        ('{"GPU X": {"pallas": {"d64": {"tile": 64}}}}', r"bad entry GPU X/pallas/d64: .*tile"),
    ],
)
def test_malformed_user_table_names_the_file(shipped, tmp_path, text, match):
    bad = tmp_path / "bad_table.json"
    bad.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        tuning.get_block_sizes("pallas", 64, kind="GPU X", table=str(bad))
    message = str(info.value)
    assert str(bad) in message and "\n" not in message


def test_missing_user_table_and_shipped_without_default(shipped, tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ValueError, match=f"{missing}: cannot read it"):
        tuning.get_block_sizes("pallas", 64, table=str(missing))
    shipped.write_text(json.dumps({"GPU X": {}}))
    with pytest.raises(ValueError, match=f"{shipped}: expected a 'default' device entry"):
        tuning.get_block_sizes("pallas", 64, kind="GPU X")


def test_shipped_table_is_valid_and_d256_uses_small_tiles(monkeypatch):
    """The real package table: every entry valid, and D 256 gets tiles <= 32 (shared memory)."""
    monkeypatch.delenv(tuning.TABLE_ENV, raising=False)
    tuning.load_table(tuning.SHIPPED_TABLE_PATH, shipped=True)
    for impl in tuning.IMPLS:
        bs = tuning.get_block_sizes(impl, 256, kind="no such device")
        assert max(bs.block_q, bs.block_k, bs.block_q_bwd, bs.block_k_bwd) <= 32, impl


def test_block_sizes_validate():
    with pytest.raises(ValueError, match="power of two >= 16"):
        tuning.BlockSizes(block_q=48)
    with pytest.raises(ValueError, match="positive int"):
        tuning.BlockSizes(num_warps=0)
    with pytest.raises(ValueError, match="unknown impl 'cuda'"):
        tuning.get_block_sizes("cuda", 64)


def test_write_user_table_merges_and_leaves_others(tmp_path):
    path = tmp_path / "sub" / "user.json"
    autotune.write_user_table(str(path), "GPU X", {"pallas": {"d64": _entry(32)}})
    autotune.write_user_table(str(path), "GPU X", {"triton": {"d128": _entry(16)}})
    autotune.write_user_table(str(path), "GPU Y", {"pallas": {"d64": _entry(128)}})
    assert json.loads(path.read_text()) == {
        "GPU X": {"pallas": {"d64": _entry(32)}, "triton": {"d128": _entry(16)}},
        "GPU Y": {"pallas": {"d64": _entry(128)}},
    }


def test_write_flag_defaults_under_runs(monkeypatch):
    seen = {}
    monkeypatch.setattr(autotune, "autotune", lambda *a: seen.setdefault("write", a[-1]))
    autotune.main(["--smoke"])
    assert seen.pop("write") is None  # no --write: print only
    autotune.main(["--smoke", "--write"])
    assert seen.pop("write") == "runs/tuning/tuning_table.json"
    autotune.main(["--smoke", "--write", "elsewhere.json"])
    assert seen.pop("write") == "elsewhere.json"


@pytest.mark.slow
def test_autotune_smoke_writes_a_user_table_not_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.delenv(tuning.TABLE_ENV, raising=False)
    shipped = open(tuning.SHIPPED_TABLE_PATH, "rb").read()
    out = tmp_path / "user.json"
    argv = ["--impl", "pallas", "--head-dims", "32", "--seq-len", "64", "--smoke"]
    autotune.main([*argv, "--write", str(out)])
    assert hashlib.sha256(open(tuning.SHIPPED_TABLE_PATH, "rb").read()).digest() == (
        hashlib.sha256(shipped).digest()
    )
    written = json.loads(out.read_text())
    kind = tuning.device_kind()
    assert list(written) == [kind] and list(written[kind]) == ["pallas"]
    best = tuning.BlockSizes(**written[kind]["pallas"]["d32"])
    assert best in autotune.candidates(32)[:2]
    assert tuning.get_block_sizes("pallas", 32, table=str(out)) == best
